"""Statistics snapshots (DESIGN §9): a JSON body per feature over a data time range."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from braid.errors import RegistryError
from braid.registry.base import RegistryBase
from braid.registry.records import dumps
from braid.registry.tables import stats


@dataclass(frozen=True)
class StatsSnapshot:
    """Statistics of ``ref`` ("view:feature") over data times ``[start, end)``."""

    id: int
    project: str
    ref: str
    start: int
    end: int
    origin: str
    created_at: int
    body: dict[str, Any]


class StatsMixin(RegistryBase):
    """Save and look up statistics snapshots."""

    def save_stats(
        self, project: str, ref: str, start: int, end: int, origin: str, body: dict[str, Any]
    ) -> int:
        """Store a snapshot; ``origin`` says who computed it (e.g. "backfill", "stream")."""
        if start > end:
            raise RegistryError(f"statistics of {ref}: start {start} is after end {end}")
        with self._tx() as con:
            result = con.execute(sa.insert(stats).values(
                project=project, ref=ref, start_ms=int(start), end_ms=int(end), origin=origin,
                created_at=self._now(), body=dumps(body),
            ))
            key = result.inserted_primary_key
            return int(key[0]) if key else 0

    def save_stats_many(self, project: str,
                        rows: list[tuple[str, int, int, str, dict[str, Any]]]) -> None:
        """:meth:`save_stats` of each ``(ref, start, end, origin, body)``, in one
        transaction (all or none)."""
        for ref, start, end, _, _ in rows:
            if start > end:
                raise RegistryError(f"statistics of {ref}: start {start} is after end {end}")
        if not rows:
            return
        now = self._now()
        with self._tx() as con:
            con.execute(sa.insert(stats), [
                {"project": project, "ref": ref, "start_ms": int(start), "end_ms": int(end),
                 "origin": origin, "created_at": now, "body": dumps(body)}
                for ref, start, end, origin, body in rows])

    def stats_as_of(self, project: str, ref: str, as_of: int | None = None) -> StatsSnapshot | None:
        """The snapshot covering data up to ``as_of`` at most (None: the newest).

        Among snapshots with ``end <= as_of`` the one with the greatest end wins, then the
        most recently created, so a scaler fitted as of a cutoff never sees later data.
        """
        t = stats.c
        query = sa.select(stats).where((t.project == project) & (t.ref == ref))
        if as_of is not None:
            query = query.where(t.end_ms <= int(as_of))
        query = query.order_by(t.end_ms.desc(), t.created_at.desc(), t.id.desc()).limit(1)
        with self._tx() as con:
            row = con.execute(query).first()
        if row is None:
            return None
        return StatsSnapshot(row.id, row.project, row.ref, row.start_ms, row.end_ms, row.origin,
                             row.created_at, json.loads(row.body))
