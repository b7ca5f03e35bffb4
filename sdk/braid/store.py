"""The FeatureStore facade: composes the repository, registry, compilers and runtimes.

It holds little logic (STYLE 8): each method delegates to the part that owns the work.

Example:
    >>> store = FeatureStore("feature_repo")
    >>> print(store.plan().render())
    >>> store.apply()
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from braid.config import RepoConfig, load_config
from braid.repo import Repo, load_repo

if TYPE_CHECKING:
    from braid.online import OnlineReader, OnlineResult, OnlineStore
    from braid.registry import PlanDiff, Registry
    from braid_batch.backfill import BackfillReport
    from braid_batch.materialize import MaterializeReport
    from braid_batch.pit import HistoricalResult

Time = int | str | Any  # epoch ms, ISO 8601 with zone, or a zone-aware datetime


class FeatureStore:
    """A feature repository and the stores it writes.

    Args:
        repo_path: folder holding ``braid.yaml`` and the definition files.
        config: an explicit configuration (default: read ``braid.yaml`` + environment).
    """

    def __init__(self, repo_path: str | Path = "feature_repo", config: RepoConfig | None = None):
        self.root = Path(repo_path)
        self.config = config or load_config(self.root)
        self._readers: dict[tuple[tuple[str, ...], bool], OnlineReader] = {}

    @cached_property
    def repo(self) -> Repo:
        """The loaded definitions (imported once per FeatureStore)."""
        return load_repo(self.root, self.config)

    @property
    def project(self) -> str:
        return self.config.project

    @cached_property
    def registry(self) -> Registry:
        from braid.registry import Registry

        return Registry.from_config(self.config)

    # ------------------------------------------------------------------ definitions
    def plan(self) -> PlanDiff:
        """What ``apply`` would change, without changing it."""
        return self.registry.plan(self.repo)

    def apply(self) -> PlanDiff:
        """Store every new definition version, lineage and storage namespace."""
        return self.registry.apply(self.repo)

    def compile(self, target: str = "all", out: str | Path = "build") -> list[Path]:
        """Write runnable SQL per view and target; returns the files written.

        DuckDB: ``<out>/duckdb/<view>.sql`` (tiles per hop and projection rows over the batch
        source). Flink: ``<out>/flink/<project>.sql`` (one statement set for the project).
        """
        from braid.compile.artifacts import write_artifacts

        return write_artifacts(self.repo, target, Path(out))

    def search(self, text: str, **filters: Any) -> list[Any]:
        """Ranked search over names, features, descriptions, tags, owners and columns."""
        return self.registry.search(self.project, text, **filters)

    def describe(self, name: str) -> dict[str, Any]:
        """Everything known about a view (or other object): schema, versions, lineage."""
        return self.registry.describe(self.project, name)

    # ------------------------------------------------------------------ online
    @cached_property
    def online(self) -> OnlineStore:
        """The online store of ``braid.yaml`` (SQLite file, or Redis at its URL)."""
        cfg = self.config.online_store
        if cfg.type == "redis":
            from braid.online import RedisOnlineStore

            if not cfg.url:
                from braid.errors import StoreError

                raise StoreError("online_store.type is redis but no url; set online_store.url "
                                 "in braid.yaml or BRAID_REDIS_URL")
            return RedisOnlineStore(cfg.url)
        from braid.online import SqliteOnlineStore

        path = self.config.resolve(cfg.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteOnlineStore(path)

    def get_online_features(self, entity_rows: list[dict[str, Any]],
                            features: list[str] | None = None, service: str | None = None,
                            now: int | None = None,
                            full_feature_names: bool = False) -> OnlineResult:
        """Feature values at ``now`` (epoch ms; default: the clock) for each entity row.

        One pipelined round trip for all views. The read plan is built once per feature list
        and cached, so the hot path does no resolution.

        Example:
            >>> store.get_online_features([{"user_id": 1}], service="fraud_v1").to_dict()
        """
        key = (tuple(features) if features else (f"@{service}",), full_feature_names)
        reader = self._readers.get(key)
        if reader is None:
            reader = self._build_reader(features, service, full_feature_names)
            self._readers[key] = reader
        if now is None:
            import time

            now = int(time.time() * 1000)
        return reader.read(entity_rows, now)

    def _build_reader(self, features: list[str] | None, service: str | None,
                      full_feature_names: bool) -> OnlineReader:
        from braid.online import OnlineReader

        refs = self.repo.refs(features, service)
        views = {r.split(":", 1)[0] for r in refs}
        plans = {v: self.repo.plan(v) for v in views}
        return OnlineReader.from_refs(self.online, plans, refs, full_feature_names)

    # ------------------------------------------------------------------ batch
    def backfill(self, start: Time | None = None, end: Time | None = None,
                 views: list[str] | None = None, include_late: bool = False,
                 progress: bool = True) -> BackfillReport:
        """Compute tiles and projection rows into the offline store (DESIGN §6).

        Ranges are widened to whole partitions, recorded in the registry (``braid describe``
        shows coverage), and only tiles batch owns (before the view's cutoff) are written.
        """
        from braid_batch.backfill import backfill

        reg, project = self.registry, self.project
        return backfill(
            self.repo, views, _ms(start, "start"), _ms(end, "end"), include_late, progress,
            on_range=lambda ns, lo, hi: reg.add_backfilled_range(project, ns, lo, hi),
            cutoffs=lambda plan: reg.cutoffs(project, plan.namespace),
        )

    def materialize(self, views: list[str] | None = None, now: Time | None = None,
                    incremental: bool = False) -> MaterializeReport:
        """Load the latest rows and live batch-owned tiles into the online store."""
        import time

        from braid_batch.materialize import materialize

        reg, project = self.registry, self.project
        now_ms = _ms(now, "now") or int(time.time() * 1000)
        since = None
        if incremental:
            since = {p.namespace: m for p in self.repo.plans()
                     if (m := reg.get_materialized(project, p.namespace)) is not None}
        report = materialize(self.repo, self.online, views, now_ms, since,
                             cutoffs=lambda plan: reg.cutoffs(project, plan.namespace))
        for v in report.views:
            reg.set_materialized(project, v.namespace, now_ms)
        return report

    def get_historical_features(self, entity_df: Any = None, features: list[str] | None = None,
                                service: str | None = None, as_of_known: bool = False,
                                **options: Any) -> HistoricalResult:
        """Point-in-time correct feature values for each row of ``entity_df``.

        One output row per input row, input order kept, duplicates kept, extra columns carried
        through. ``entity_df``: pandas, Arrow, a Parquet path or a DuckDB query with the entity
        keys and ``event_timestamp`` (zone-aware). Options: ``timestamp_column``,
        ``include_late``, ``full_feature_names``, ``spine`` (a SpineSpec instead of entity_df).

        Example:
            >>> store.get_historical_features(df, service="fraud_v1").to_pandas()
        """
        from braid_batch.pit import get_historical_features

        refs = self.repo.refs(features, service)
        return get_historical_features(self.repo, entity_df, refs, as_of_known, **options)


def _ms(value: Any, what: str) -> int | None:
    if value is None:
        return None
    from braid.timeutil import to_epoch_ms

    return to_epoch_ms(value, what)
