"""The registry (DESIGN §6): versioned definitions, lineage, namespaces, state, statistics.

Example:
    >>> from braid.repo import load_repo
    >>> repo = load_repo("feature_repo")
    >>> registry = Registry.from_config(repo.config)
    >>> print(registry.plan(repo).render())   # what apply would do
    >>> registry.apply(repo)                  # one transaction
    >>> registry.serving_namespace(repo.project, "user_txn_stats")
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from braid.config import RepoConfig
from braid.errors import RegistryError, close_matches
from braid.registry.diff import PlanDiff, compute_diff
from braid.registry.engine import create_engine, transaction
from braid.registry.lineage import LineageMixin
from braid.registry.namespaces import NamespaceMixin
from braid.registry.records import (
    KINDS,
    Candidate,
    DefinitionRecord,
    candidates,
    check_kind,
    dumps,
    repo_edges,
)
from braid.registry.search import SearchHit, search
from braid.registry.state import StateMixin
from braid.registry.stats import StatsMixin
from braid.registry.tables import definitions, metadata
from braid.repo import Repo


class Registry(NamespaceMixin, StateMixin, StatsMixin, LineageMixin):
    """The registry database. Creates its tables if missing.

    Args:
        url: ``sqlite:///path/registry.db`` (default of braid.yaml) or
            ``postgresql://user@host/db`` (psycopg 3).
        clock: epoch-ms clock, for tests.

    Raises:
        RegistryError: the URL is invalid or the database unreachable.
    """

    def __init__(self, url: str, *, clock: Callable[[], int] | None = None) -> None:
        engine = create_engine(url)
        super().__init__(engine, clock)
        with transaction(engine) as con:
            metadata.create_all(con)

    @classmethod
    def from_config(cls, config: RepoConfig) -> Registry:
        """The registry named by ``config.registry_url``."""
        return cls(config.registry_url)

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plan and apply -------------------------------------------------------------------

    def plan(self, repo: Repo) -> PlanDiff:
        """What :meth:`apply` would change, without changing anything."""
        cands = candidates(repo)
        with self._tx() as con:
            return self._diff(con, repo.project, cands)

    def apply(self, repo: Repo) -> PlanDiff:
        """Store new versions, tombstones, namespaces and lineage in one transaction.

        Unchanged definitions get no new version. A view whose plan changed gets a pending
        namespace; serving stays on the old one until :meth:`promote`.
        """
        cands = candidates(repo)
        project = repo.project
        with self._tx() as con:
            diff = self._diff(con, project, cands)
            now = self._now()
            by_key = {(c.kind, c.name): c for c in cands}
            for change in diff.changes:
                version = (change.old_version or 0) + 1
                if change.action in ("add", "change"):
                    _insert(con, project, by_key[(change.kind, change.name)], version, now)
                elif change.action == "remove":
                    _insert_tombstone(con, project, change.kind, change.name, version, now)
            for c in cands:
                if c.kind == "view" and c.namespace and c.plan_hash:
                    self._record_namespace(con, project, c.name, c.namespace, c.plan_hash)
            self._sync_edges(con, project, repo_edges(repo))
        return diff

    def _diff(self, con: Connection, project: str, cands: list[Candidate]) -> PlanDiff:
        latest = {(r.kind, r.name): r for r in _latest(con, project, None, live_only=False)}
        return compute_diff(project, cands, latest, self._serving_map(con, project))

    # -- reading definitions --------------------------------------------------------------

    def list_objects(self, project: str, kind: str | None = None) -> list[DefinitionRecord]:
        """Latest live (not removed) version of every definition, by kind then name."""
        if kind is not None:
            check_kind(kind)
        with self._tx() as con:
            return _latest(con, project, kind, live_only=True)

    def get(
        self, project: str, kind: str, name: str, version: int | None = None
    ) -> DefinitionRecord:
        """One version (default: the latest, which is a tombstone if the name was removed).

        Raises:
            RegistryError: no such definition or version.
        """
        history = self.versions(project, kind, name)
        if not history:
            known = [r.name for r in self.list_objects(project, kind)]
            raise RegistryError(
                f"no {kind} '{name}' in project '{project}'.{close_matches(name, known)}"
            )
        if version is None:
            return history[-1]
        for r in history:
            if r.version == version:
                return r
        raise RegistryError(
            f"{kind} '{name}' has no version {version} (versions 1..{history[-1].version})"
        )

    def versions(self, project: str, kind: str, name: str) -> list[DefinitionRecord]:
        """Every stored version of one definition, oldest first (tombstones included)."""
        check_kind(kind)
        t = definitions.c
        query = (sa.select(definitions)
                 .where((t.project == project) & (t.kind == kind) & (t.name == name))
                 .order_by(t.version))
        with self._tx() as con:
            return [_record(row) for row in con.execute(query)]

    def search(
        self,
        project: str,
        text: str,
        tag: str | None = None,
        owner: str | None = None,
        entity: str | None = None,
        limit: int = 20,
    ) -> list[SearchHit]:
        """Ranked hits over views, features, services, sources, entities and label sources.

        Example:
            >>> registry.search("fraud", "amount")[0]
            SearchHit(kind='feature', name='user_txn_stats:amount_sum_1h', field='feature', ...)
        """
        return search(self.list_objects(project), text, tag, owner, entity, limit)

    def describe(self, project: str, name: str) -> dict[str, Any]:
        """Everything known about a view (or another definition) named ``name``."""
        from braid.registry.describe import describe

        return describe(self, project, name)


def _latest(
    con: Connection, project: str, kind: str | None, live_only: bool
) -> list[DefinitionRecord]:
    t = definitions.c
    where = t.project == project
    if kind is not None:
        where = where & (t.kind == kind)
    newest = (sa.select(t.kind, t.name, sa.func.max(t.version).label("v"))
              .where(where).group_by(t.kind, t.name).subquery())
    query = sa.select(definitions).join(
        newest,
        (t.kind == newest.c.kind) & (t.name == newest.c.name) & (t.version == newest.c.v),
    ).where(t.project == project)
    records = [_record(row) for row in con.execute(query)]
    if live_only:
        records = [r for r in records if not r.deleted]
    order = list(KINDS)
    return sorted(records, key=lambda r: (order.index(r.kind), r.name))


def _record(row: Row[Any]) -> DefinitionRecord:
    return DefinitionRecord(
        project=row.project, kind=row.kind, name=row.name, version=row.version,
        content_hash=row.content_hash, body=json.loads(row.body) if row.body else None,
        meta=json.loads(row.meta), plan_hash=row.plan_hash, namespace=row.namespace,
        created_at=row.created_at, deleted=bool(row.deleted),
    )


def _insert(con: Connection, project: str, c: Candidate, version: int, now: int) -> None:
    con.execute(sa.insert(definitions).values(
        project=project, kind=c.kind, name=c.name, version=version,
        content_hash=c.content_hash, body=dumps(c.body), meta=dumps(c.meta),
        plan_hash=c.plan_hash, namespace=c.namespace, deleted=False, created_at=now,
    ))


def _insert_tombstone(
    con: Connection, project: str, kind: str, name: str, version: int, now: int
) -> None:
    con.execute(sa.insert(definitions).values(
        project=project, kind=kind, name=name, version=version, content_hash="",
        body=None, meta="{}", plan_hash=None, namespace=None, deleted=True, created_at=now,
    ))
