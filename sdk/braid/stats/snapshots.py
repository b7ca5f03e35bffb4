"""Statistics snapshots in the registry: one per feature and chunk, merged on read (DESIGN §9).

Writers (batch ``compute_view_stats``, the streaming side) save one snapshot per feature and
*chunk* of data time ``[start, end)`` (a UTC day by default, the offline partition), body::

    {"namespace": <view namespace>, "population": "rows" | "tile_close",
     "stats": FeatureStats.to_dict(), ...writer extras (stream: "offsets")}

A chunk re-computed later replaces the older one (the newest snapshot of an equal ``end``
wins). Readers merge a chain of chunks: the snapshot with the greatest ``end <= as_of + 1``,
then the one ending at or before its ``start``, and so on. Only chunks of the view's current
namespace count, so statistics of a changed definition never mix with the old ones.

Example:
    >>> merged = merged_as_of(registry, "fraud", "user_txn_stats:amount_sum_1h", as_of=t)
    >>> merged.stats.summary()["mean"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from braid.stats.bundle import FeatureStats

if TYPE_CHECKING:
    from braid.registry import Registry, StatsSnapshot

#: Population of a projection feature: every accepted row's value.
ROWS = "rows"
#: Population of an aggregated feature: its value at each tile close per active entity.
TILE_CLOSE = "tile_close"


@dataclass
class MergedStats:
    """Statistics of one feature merged over the chunks covering ``[start, end)``."""

    ref: str
    stats: FeatureStats
    start: int | None = None
    end: int | None = None
    population: str | None = None
    snapshot_ids: list[int] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The statistics' summary plus the coverage and provenance of the merge."""
        return {"ref": self.ref, "start": self.start, "end": self.end,
                "population": self.population, "chunks": len(self.snapshot_ids),
                "origins": sorted(set(self.origins)), **self.stats.summary()}


def chunk_body(namespace: str, population: str, stats: FeatureStats,
               **extra: Any) -> dict[str, Any]:
    """The JSON body of one chunk snapshot."""
    return {"namespace": namespace, "population": population, "stats": stats.to_dict(), **extra}


def save_chunk(registry: Registry, project: str, ref: str, start: int, end: int, origin: str,
               namespace: str, population: str, stats: FeatureStats, **extra: Any) -> int:
    """Store one chunk snapshot; returns its id."""
    return registry.save_stats(project, ref, start, end, origin,
                               chunk_body(namespace, population, stats, **extra))


def chunks_as_of(registry: Registry, project: str, ref: str, as_of: int | None = None,
                 namespace: str | None = None) -> list[StatsSnapshot]:
    """The chain of chunk snapshots with data times ``<= as_of``, newest first."""
    out: list[StatsSnapshot] = []
    seen: set[int] = set()
    bound = None if as_of is None else as_of + 1  # chunk ends are exclusive
    snap = registry.stats_as_of(project, ref, bound)
    while snap is not None and snap.id not in seen:
        seen.add(snap.id)
        if namespace is None or snap.body.get("namespace") == namespace:
            out.append(snap)
        if snap.start >= snap.end:
            # an empty chunk cannot move the chain back; look strictly before it
            nxt = registry.stats_as_of(project, ref, snap.start - 1)
        else:
            nxt = registry.stats_as_of(project, ref, snap.start)
        snap = nxt
    return out


def merged_as_of(registry: Registry, project: str, ref: str, as_of: int | None = None,
                 namespace: str | None = None) -> MergedStats | None:
    """All chunks of ``ref`` with data times ``<= as_of`` merged into one; None if none.

    A chunk ending after ``as_of`` is left out whole, so the result never sees later data
    (its ``end`` says how far it reaches).
    """
    chain = chunks_as_of(registry, project, ref, as_of, namespace)
    if not chain:
        return None
    total = FeatureStats()
    for snap in reversed(chain):
        total.merge(FeatureStats.from_dict(snap.body["stats"]))
    return MergedStats(
        ref, total, start=min(s.start for s in chain), end=max(s.end for s in chain),
        population=chain[0].body.get("population"), snapshot_ids=[s.id for s in chain],
        origins=[s.origin for s in chain],
    )


def merged_between(registry: Registry, project: str, ref: str, after: int, as_of: int,
                   namespace: str | None = None) -> MergedStats | None:
    """Chunks of ``ref`` with data in ``(after, as_of]``: those of the chain as of ``as_of``
    that start after the chain as of ``after`` ends (for drift between two times)."""
    before = chunks_as_of(registry, project, ref, after, namespace)
    edge = max((s.end for s in before), default=None)
    chain = [s for s in chunks_as_of(registry, project, ref, as_of, namespace)
             if edge is None or s.start >= edge]
    if not chain:
        return None
    total = FeatureStats()
    for snap in chain:
        total.merge(FeatureStats.from_dict(snap.body["stats"]))
    return MergedStats(ref, total, min(s.start for s in chain), max(s.end for s in chain),
                       chain[0].body.get("population"), [s.id for s in chain],
                       [s.origin for s in chain])
