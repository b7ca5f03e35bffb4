"""Lineage edges: source -> view, entity -> view, view -> service, source -> label source,
and edges added by later stages (service -> training set) through :meth:`add_edge`."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from braid.registry.base import RegistryBase
from braid.registry.records import DERIVED_EDGE_KINDS, KINDS, Edge
from braid.registry.tables import edges


@dataclass(frozen=True)
class Node:
    """A lineage node: kind ("source", "view", "training_set", ...) and name."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


class LineageMixin(RegistryBase):
    """Store and walk lineage edges."""

    def add_edge(self, project: str, src: tuple[str, str], dst: tuple[str, str]) -> None:
        """Add an edge ``src -> dst``, each a (kind, name) pair; adding it twice is a no-op.

        Example:
            >>> registry.add_edge("fraud", ("service", "fraud_v1"), ("training_set", "ts_0312"))
        """
        with self._tx() as con:
            if (*src, *dst) not in _all(con, project):
                con.execute(sa.insert(edges).values(
                    project=project, src_kind=src[0], src_name=src[1], dst_kind=dst[0],
                    dst_name=dst[1], created_at=self._now(),
                ))

    def edges(self, project: str) -> list[tuple[Node, Node]]:
        """Every edge of the project, sorted."""
        with self._tx() as con:
            found = _all(con, project)
        return [(Node(a, b), Node(c, d)) for a, b, c, d in sorted(found)]

    def lineage(self, project: str, kind: str, name: str) -> dict[str, list[Node]]:
        """Everything upstream and downstream of (kind, name), transitively, nearest first."""
        found = [(Node(a, b), Node(c, d)) for a, b, c, d in self._edges_raw(project)]
        start = Node(kind, name)
        return {"upstream": _walk(start, [(d, s) for s, d in found]),
                "downstream": _walk(start, found)}

    def _edges_raw(self, project: str) -> set[Edge]:
        with self._tx() as con:
            return _all(con, project)

    def _sync_edges(self, con: Connection, project: str, wanted: set[Edge]) -> None:
        """Make the definition-derived edges equal ``wanted``; other edges stay."""
        derived = {e for e in _all(con, project)
                   if e[0] in KINDS and e[2] in DERIVED_EDGE_KINDS}
        t = edges.c
        for a, b, c, d in derived - wanted:
            con.execute(sa.delete(edges).where(
                (t.project == project) & (t.src_kind == a) & (t.src_name == b)
                & (t.dst_kind == c) & (t.dst_name == d)))
        now = self._now()
        for a, b, c, d in sorted(wanted - derived):
            con.execute(sa.insert(edges).values(project=project, src_kind=a, src_name=b,
                                                dst_kind=c, dst_name=d, created_at=now))


def _all(con: Connection, project: str) -> set[Edge]:
    t = edges.c
    query = sa.select(t.src_kind, t.src_name, t.dst_kind, t.dst_name).where(t.project == project)
    return {(a, b, c, d) for a, b, c, d in con.execute(query)}


def _walk(start: Node, pairs: list[tuple[Node, Node]]) -> list[Node]:
    out: list[Node] = []
    queue, seen = deque([start]), {start}
    while queue:
        node = queue.popleft()
        for src, dst in sorted(pairs, key=lambda p: (str(p[0]), str(p[1]))):
            if src == node and dst not in seen:
                seen.add(dst)
                out.append(dst)
                queue.append(dst)
    return out
