"""Storage namespaces of views (DESIGN §6.5): serving, pending and retired.

A view's first namespace serves at once. A later plan change records the new namespace as
``pending``; serving stays on the old one until :meth:`NamespaceMixin.promote`, which makes
the old one ``pending`` again (its data is still there, so promoting it back is a rollback).
``braid gc`` removes the storage of :meth:`NamespaceMixin.gc_candidates` and then calls
:meth:`NamespaceMixin.retire`. A retired namespace that a later apply brings back is
``pending`` again: it must be backfilled anew.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from braid.errors import RegistryError, close_matches
from braid.registry.base import RegistryBase
from braid.registry.tables import namespaces

NamespaceState = Literal["serving", "pending", "retired"]


@dataclass(frozen=True)
class NamespaceRecord:
    """One namespace of a view and its state."""

    project: str
    view: str
    namespace: str
    plan_hash: str
    state: NamespaceState
    created_at: int
    updated_at: int


class NamespaceMixin(RegistryBase):
    """Namespace bookkeeping: record on apply, promote, retire."""

    def namespaces(self, project: str, view: str) -> list[NamespaceRecord]:
        """Every namespace seen for ``view``, oldest first."""
        with self._tx() as con:
            return _rows(con, project, view)

    def serving_namespace(self, project: str, view: str) -> str | None:
        """The namespace reads are served from, or None for a view never applied."""
        return next((n.namespace for n in self.namespaces(project, view)
                     if n.state == "serving"), None)

    def promote(self, project: str, view: str, namespace: str) -> None:
        """Serve ``view`` from ``namespace``; the previous serving namespace becomes pending.

        Raises:
            RegistryError: the namespace is unknown or retired.
        """
        with self._tx() as con:
            rows = {n.namespace: n for n in _rows(con, project, view)}
            target = _known(rows, project, view, namespace)
            if target.state == "retired":
                raise RegistryError(
                    f"namespace {namespace} of view '{view}' is retired (its storage was "
                    "removed); re-apply the definition and backfill it before promoting"
                )
            now = self._now()
            for n in rows.values():
                if n.state == "serving" and n.namespace != namespace:
                    _set_state(con, n, "pending", now)
            if target.state != "serving":
                _set_state(con, target, "serving", now)

    def retire(self, project: str, view: str, namespace: str) -> None:
        """Mark ``namespace`` as removed (after ``gc`` deleted its storage).

        Raises:
            RegistryError: the namespace is unknown or serving.
        """
        with self._tx() as con:
            rows = {n.namespace: n for n in _rows(con, project, view)}
            target = _known(rows, project, view, namespace)
            if target.state == "serving":
                raise RegistryError(
                    f"namespace {namespace} serves view '{view}'; promote another first"
                )
            if target.state != "retired":
                _set_state(con, target, "retired", self._now())

    def gc_candidates(self, project: str, view: str, current: str | None = None) -> list[str]:
        """Pending namespaces other than ``current`` (the repository's plan): safe to remove."""
        return [n.namespace for n in self.namespaces(project, view)
                if n.state == "pending" and n.namespace != current]

    def _record_namespace(
        self, con: Connection, project: str, view: str, namespace: str, plan_hash: str
    ) -> None:
        rows = {n.namespace: n for n in _rows(con, project, view)}
        now = self._now()
        if namespace in rows:
            if rows[namespace].state == "retired":
                _set_state(con, rows[namespace], "pending", now)
            return
        has_serving = any(n.state == "serving" for n in rows.values())
        con.execute(sa.insert(namespaces).values(
            project=project, view=view, namespace=namespace, plan_hash=plan_hash,
            state="pending" if has_serving else "serving", created_at=now, updated_at=now,
        ))

    def _serving_map(self, con: Connection, project: str) -> dict[str, str]:
        query = sa.select(namespaces.c.view, namespaces.c.namespace).where(
            (namespaces.c.project == project) & (namespaces.c.state == "serving"))
        return {v: n for v, n in con.execute(query)}


def _rows(con: Connection, project: str, view: str) -> list[NamespaceRecord]:
    t = namespaces.c
    query = (sa.select(namespaces).where((t.project == project) & (t.view == view))
             .order_by(t.created_at, t.namespace))
    return [NamespaceRecord(**row._asdict()) for row in con.execute(query)]


def _known(rows: dict[str, NamespaceRecord], project: str, view: str,
           namespace: str) -> NamespaceRecord:
    if namespace not in rows:
        if not rows:
            raise RegistryError(f"view '{view}' has no namespaces in project '{project}'; "
                                "run `braid apply` first")
        raise RegistryError(
            f"view '{view}' has no namespace {namespace!r}.{close_matches(namespace, rows)}"
        )
    return rows[namespace]


def _set_state(con: Connection, n: NamespaceRecord, new: NamespaceState, now: int) -> None:
    t = namespaces.c
    con.execute(sa.update(namespaces).where(
        (t.project == n.project) & (t.view == n.view) & (t.namespace == n.namespace)
    ).values(state=new, updated_at=now))
