"""The FeatureStore facade: composes the repository, registry, compilers and runtimes.

It holds little logic (STYLE 8): each method delegates to the part that owns the work.

Example:
    >>> store = FeatureStore("feature_repo")
    >>> print(store.plan().render())
    >>> store.apply()
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from braid.config import RepoConfig, load_config
from braid.repo import Repo, load_repo

if TYPE_CHECKING:
    from braid.logging import ServingLogger
    from braid.online import OnlineReader, OnlineResult, OnlineStore
    from braid.registry import PlanDiff, Registry
    from braid.stats.scalers import FittedScaler, ScaledHistoricalResult, ScaledOnlineResult
    from braid.stats.snapshots import MergedStats
    from braid_batch.backfill import BackfillReport
    from braid_batch.logjoin import TrainingSet
    from braid_batch.materialize import MaterializeReport
    from braid_batch.pit import HistoricalResult
    from braid_streaming.push import PushReport
    from braid_streaming.runner import StreamRunner

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
        # current scaler versions per feature list (cleared when training fits new ones)
        self._scalers: dict[tuple[tuple[str, ...], bool], dict[str, FittedScaler]] = {}
        self._loggers: dict[str, ServingLogger] = {}

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
                            full_feature_names: bool = False, log: bool = False,
                            request_id: str | Sequence[str] | None = None,
                            scale: bool = False) -> OnlineResult | ScaledOnlineResult:
        """Feature values at ``now`` (epoch ms; default: the clock) for each entity row.

        One pipelined round trip for all views. The read plan is built once per feature list
        and cached, so the hot path does no resolution.

        With ``log=True`` (needs ``service=``) each entity row is also logged for
        log-and-wait (DESIGN §8) with ``served_at = now``; the result then carries
        ``request_ids`` (``request_id``: one id for the call, or one per row; default: a new
        uuid). Logging is queued, never blocks and never fails the lookup.

        ``scale=True`` applies the current scaler versions (those training last fitted with
        ``get_historical_features(..., scale=True, stats_as_of=C)``); logs stay unscaled.

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
        result = reader.read(entity_rows, now)
        if log:
            from braid.logging.serving import log_lookup

            result = log_lookup(self.serving_logger(service), result, now, request_id)
        if not scale:
            return result
        from braid.stats.scalers import ScaledOnlineResult, resolve_scalers, scaler_kinds

        if key not in self._scalers:
            kinds = scaler_kinds(self, self.repo.refs(features, service), service)
            self._scalers[key] = resolve_scalers(self, kinds, None)
        return ScaledOnlineResult(result, self._scalers[key])

    def _has_registry(self) -> bool:
        url = self.config.registry_url
        return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()

    def promote(self, view: str, namespace: str | None = None,
                force: bool = False) -> tuple[str | None, str]:
        """Serve ``view`` from ``namespace`` (default: its current plan's); returns (old, new)."""
        from braid.lifecycle import promote

        self._readers.clear()
        return promote(self.repo, self.registry, view, namespace, force)

    def gc(self, dry_run: bool = False) -> list[Any]:
        """Delete offline files and online keys of namespaces no longer serving or current."""
        from braid.lifecycle import gc

        offline = self.config.resolve(self.config.offline_store.path)
        return gc(self.repo, self.registry, self.online, offline, dry_run)

    def log_metrics(self) -> str:
        """Prometheus text of every active serving logger (accepted, delivered, dropped)."""
        return "".join(logger.prometheus() for logger in list(self._loggers.values()))

    def serving_logger(self, service: str | None) -> ServingLogger:
        """The serving logger of ``service`` (built once): ``.stats()``, ``.prometheus()``."""
        logger = self._loggers.get(service or "")
        if logger is None:
            from braid.logging.serving import make_logger

            logger = self._loggers[service or ""] = make_logger(self.repo, service)
        return logger

    def flush_logs(self, service: str | None = None, timeout: float = 30.0) -> int:
        """Deliver buffered log records and copy the log topics to the Parquet sink under
        ``<offline>/<project>/_logs/``; returns the records copied."""
        from braid.logging.serving import compact_service_logs

        names = [service] if service else [s for s in self.repo.services
                                           if self.repo.services[s].logging is not None]
        for name in names:
            if name in self._loggers:
                self._loggers[name].flush(timeout)
        return sum(compact_service_logs(self.repo, name) for name in names)

    def _build_reader(self, features: list[str] | None, service: str | None,
                      full_feature_names: bool) -> OnlineReader:
        from braid.lifecycle import serving_plan
        from braid.online import OnlineReader

        refs = self.repo.refs(features, service)
        views = {r.split(":", 1)[0] for r in refs}
        registry = self.registry if self._has_registry() else None
        plans = {v: serving_plan(self.repo, registry, v) for v in views}
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
                                scale: bool = False, stats_as_of: Time | None = None,
                                **options: Any) -> HistoricalResult | ScaledHistoricalResult:
        """Point-in-time correct feature values for each row of ``entity_df``.

        One output row per input row, input order kept, duplicates kept, extra columns carried
        through. ``entity_df``: pandas, Arrow, a Parquet path or a DuckDB query with the entity
        keys and ``event_timestamp`` (zone-aware). Options: ``timestamp_column``,
        ``include_late``, ``full_feature_names``, ``spine`` (a SpineSpec instead of entity_df),
        ``require_backfill`` (refuse times no backfill covered instead of computing them from
        the batch source; raises CoverageError naming the covered ranges).
        ``scale=True`` scales the service's ``scalers`` (else every numeric feature, standard)
        with scalers fitted from statistics of data up to ``stats_as_of`` (made the current
        version, which serving applies); without ``stats_as_of`` the current versions.

        Example:
            >>> store.get_historical_features(df, service="fraud_v1").to_pandas()
        """
        from braid_batch.pit import get_historical_features

        refs = self.repo.refs(features, service)
        result = get_historical_features(self.repo, entity_df, refs, as_of_known, **options)
        if not scale:
            return result
        from braid.stats.scalers import ScaledHistoricalResult, resolve_scalers, scaler_kinds

        fitted = resolve_scalers(self, scaler_kinds(self, refs, service),
                                 _ms(stats_as_of, "stats_as_of"))
        self._scalers.clear()
        return ScaledHistoricalResult(result, fitted)

    # ------------------------------------------------------------------ statistics
    def stats(self, ref: str, as_of: Time | None = None) -> MergedStats | None:
        """Statistics of "view:feature" over all data with event time <= ``as_of`` (DESIGN §9):
        count, nulls, mean, std, min, max, quantiles; None before ``braid stats compute``.

        Example:
            >>> store.stats("user_txn_stats:amount_sum_1h").summary()["mean"]
        """
        from braid.definitions.service import resolve_reference
        from braid.stats.snapshots import merged_as_of

        view, _ = resolve_reference(ref, self.repo.views)
        return merged_as_of(self.registry, self.project, ref, _ms(as_of, "as_of"),
                            self.repo.plan(view.name).namespace)

    def get_training_set_from_logs(self, service: str, labels: str | None = None,
                                   start: Time | None = None, end: Time | None = None,
                                   cutoff: Time | None = None, backfill: Any = None,
                                   ) -> TrainingSet:
        """Serving logs joined with late labels as of ``cutoff`` (DESIGN §8; default: now).

        One row per logged (request, entity row) whose maturity passed by the cutoff, with the
        values as served and ``origin="logged"``; ``backfill`` (an entity_df) fills the time
        before logging started from point-in-time features (``origin="backfilled"``).
        Records lineage ``service -> training_set`` in the registry.

        Example:
            >>> store.get_training_set_from_logs("fraud_v1", cutoff="2026-01-20T00:00:00Z")
        """
        from braid_batch.logjoin import build_training_set

        self.flush_logs(service)
        result = build_training_set(self.repo, service, labels, _ms(start, "start"),
                                    _ms(end, "end"), _ms(cutoff, "cutoff"), backfill)
        self.registry.add_edge(self.project, ("service", service),
                               ("training_set", result.name))
        return result

    # ------------------------------------------------------------------ streaming
    def push(self, source_name: str, rows: Any) -> PushReport:
        """Validate ``rows`` and append them to a StreamSource's log (Kafka or the local log).

        Records are keyed by the join keys of the views reading the source, so one entity's
        events stay in one partition. All or nothing: a bad row raises ``PushError``.

        Example:
            >>> store.push("transactions", [{"txn_id": "t1", "user_id": 7, "amount": 9.5,
            ...             "ts": "2026-01-01T00:00:00Z"}])
        """
        from braid.definitions.sources import StreamSource
        from braid.errors import UnknownFeatureError, close_matches
        from braid_streaming.log import open_log
        from braid_streaming.push import push
        from braid_streaming.runner.views import source_key_fields

        source = self.repo.sources.get(source_name)
        if not isinstance(source, StreamSource):
            streams = [n for n, s in self.repo.sources.items() if isinstance(s, StreamSource)]
            raise UnknownFeatureError(f"'{source_name}' is not a stream source."
                                      f"{close_matches(source_name, streams)}")
        with open_log(self.config.kafka, self.config.root) as log:
            return push(log, source, rows, source_key_fields(self.repo, source_name))

    def stream_runner(self, views: list[str] | None = None, **options: Any) -> StreamRunner:
        """The embedded runner of ``views`` (default: every online stream view).

        Options are those of ``RunnerOptions`` (max_batch, max_wait_ms, instance, instances,
        chunk_keys, tile_stats, cache_keys, fetch_process) plus ``hook``, ``say`` and
        ``status_every_s``.

        Example:
            >>> with store.stream_runner() as runner:
            ...     runner.run(once=True)
        """
        from braid_streaming.runner import RunnerOptions, StreamRunner

        extra = {k: options.pop(k) for k in ("hook", "say", "status_every_s") if k in options}
        return StreamRunner(self, views, RunnerOptions(**options), **extra)


def _ms(value: Any, what: str) -> int | None:
    if value is None:
        return None
    from braid.timeutil import to_epoch_ms

    return to_epoch_ms(value, what)
