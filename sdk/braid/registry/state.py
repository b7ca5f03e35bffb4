"""Operational state outside the definition records: a key/value table and typed helpers.

Keys used by the helpers (all per project):
``backfilled:<namespace>`` -> merged ``[[start, end], ...]`` half-open epoch-ms intervals;
``cutoff:<namespace>:<hop_ms>`` -> the tile ownership cutoff C (DESIGN §6.4);
``materialized:<namespace>`` -> the last materialized point in epoch ms.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from braid.errors import RegistryError
from braid.registry.base import RegistryBase
from braid.registry.records import dumps
from braid.registry.tables import state

Interval = tuple[int, int]


def merge_intervals(intervals: list[Interval]) -> list[Interval]:
    """Merge half-open intervals; touching ones join: [0,10) + [10,20) -> [0,20)."""
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


class StateMixin(RegistryBase):
    """Key/value state, backfilled ranges, cutoffs and materialization points."""

    def get_state(self, project: str, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        with self._tx() as con:
            return _read(con, project, key, default)

    def set_state(self, project: str, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``key`` (insert or replace)."""
        with self._tx() as con:
            self._write(con, project, key, value)

    def state_items(self, project: str, prefix: str = "") -> dict[str, Any]:
        """Every key starting with ``prefix`` and its value."""
        query = sa.select(state.c.key, state.c.value).where(state.c.project == project)
        if prefix:
            query = query.where(state.c.key.startswith(prefix, autoescape=True))
        with self._tx() as con:
            return {k: json.loads(v) for k, v in con.execute(query.order_by(state.c.key))}

    def add_backfilled_range(self, project: str, namespace: str, start: int, end: int) -> None:
        """Record that ``[start, end)`` (epoch ms) of ``namespace`` is backfilled."""
        if start >= end:
            raise RegistryError(f"backfilled range [{start}, {end}) of {namespace} is empty")
        key = f"backfilled:{namespace}"
        with self._tx() as con:
            current = [tuple(r) for r in _read(con, project, key, [], lock=True)]
            merged = merge_intervals([*current, (int(start), int(end))])  # type: ignore[list-item]
            self._write(con, project, key, [list(r) for r in merged])

    def backfilled_ranges(self, project: str, namespace: str) -> list[Interval]:
        """Merged, sorted ``(start, end)`` intervals backfilled in ``namespace``."""
        return [(int(s), int(e)) for s, e in self.get_state(project, f"backfilled:{namespace}", [])]

    def get_cutoff(self, project: str, namespace: str, hop: int) -> int | None:
        """The ownership cutoff C of (namespace, hop): batch writes tiles < C, stream >= C."""
        value = self.get_state(project, f"cutoff:{namespace}:{int(hop)}")
        return None if value is None else int(value)

    def set_cutoff(
        self, project: str, namespace: str, hop: int, cutoff: int, *, allow_backwards: bool = False
    ) -> None:
        """Set C for (namespace, hop). Moving C back is refused unless ``allow_backwards``.

        Lowering C would hand tiles the stream already wrote back to batch (DESIGN §6.4).
        """
        key = f"cutoff:{namespace}:{int(hop)}"
        with self._tx() as con:
            old = _read(con, project, key, None, lock=True)
            if old is not None and int(cutoff) < int(old) and not allow_backwards:
                raise RegistryError(
                    f"cutoff of {namespace} hop {hop} would move back from {old} to {cutoff}; "
                    "the stream may already own those tiles (pass allow_backwards=True to force)"
                )
            self._write(con, project, key, int(cutoff))

    def cutoffs(self, project: str, namespace: str) -> dict[int, int]:
        """Cutoff per hop (ms) of ``namespace``."""
        prefix = f"cutoff:{namespace}:"
        return {int(k[len(prefix):]): int(v) for k, v in self.state_items(project, prefix).items()}

    def get_materialized(self, project: str, namespace: str) -> int | None:
        """The last point (epoch ms) materialized online for ``namespace``."""
        value = self.get_state(project, f"materialized:{namespace}")
        return None if value is None else int(value)

    def set_materialized(self, project: str, namespace: str, until: int) -> None:
        """Record that ``namespace`` is materialized up to ``until`` (epoch ms)."""
        self.set_state(project, f"materialized:{namespace}", int(until))

    def _write(self, con: Connection, project: str, key: str, value: Any) -> None:
        text, now = dumps(value), self._now()
        where = (state.c.project == project) & (state.c.key == key)
        done = con.execute(sa.update(state).where(where).values(value=text, updated_at=now))
        if done.rowcount == 0:
            con.execute(sa.insert(state).values(project=project, key=key, value=text,
                                                updated_at=now))


def _read(con: Connection, project: str, key: str, default: Any, lock: bool = False) -> Any:
    query = sa.select(state.c.value).where((state.c.project == project) & (state.c.key == key))
    if lock:
        query = query.with_for_update()  # PostgreSQL row lock; SQLite locks the file anyway
    text = con.execute(query).scalar_one_or_none()
    return default if text is None else json.loads(text)
