"""Statistics of aggregated features from the streaming side (DESIGN §6.4, §9).

The population of an aggregated feature is its value at each tile close for each entity
active in that tile: for tile ``k`` of hop ``h`` (start ``s = k*h``), the finalized merge of
the window's tiles ``s-W+h .. s`` at time ``s+h-1``, exactly as the batch pass
(:func:`braid_batch.stats.tile_close_query`) computes it from offline tiles. The stream counts
the closes of the tiles it owns (``s >= C``, the hop's cutoff); batch counts the rest.

A tile is *final* once no event of it can still be accepted: DESIGN §4.4 calls an event late
iff ``ts < M(p) - L``, so tile ``[s, s+h)`` is final when ``s + h + L <= min_p M(p)`` over
every partition of the source (the caller supplies that watermark). Its window's tiles are
read from the online store (stream-owned tiles and the batch-materialized ones before the
cutoff) and folded with :mod:`braid.algebra` (``merge``, ``merge_all``, ``finalize``) after
decoding with :class:`~braid.online.encoding.TileCodec`; nothing here restates the algebra.
The caller may pass tile *deltas* not merged into the store yet (the runner closes tiles
before merging the batch that makes them final, so pruning cannot have removed a window's
head; DESIGN §4.6 prunes relative to a key's newest tile with a span that includes ``L``).

Snapshots: closes are cut into chunks of tile start (UTC days) and merged into the stream's
chunk snapshots of origin ``"stream"``, population ``tile_close``. A chunk holding the cutoff
starts at the cutoff, like :mod:`braid.stats.stream` does for projections. Each snapshot
body carries ``counted = {"runner": id, "seq": n}``, the writer's batch that last merged into
it; a delta of a batch not after it was counted already (a replay of that batch after a
crash) and is skipped. A writer saves every row of one batch's delta before it changes any
state that decides what the batch closes, so a replay closes nothing a row does not hold.

Example:
    >>> values = close_values(online, plan, hop, aggs, [(key, s)], deltas={})
    >>> delta = close_stats(plan, aggs, [s], values)
    >>> apply_tile_closes(registry, plan, delta, cutoff=c, runner="ab12cd34.0of1", seq=42)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from braid.algebra import Partial, finalize, merge, merge_all
from braid.online.encoding import TileCodec
from braid.stats.bundle import FeatureStats
from braid.stats.snapshots import TILE_CLOSE, chunk_body
from braid.timeutil import DAY

if TYPE_CHECKING:
    from braid.online import OnlineStore
    from braid.plan import AggregationPlan, ViewPlan
    from braid.registry import Registry

#: Keys per online fetch when reading the windows of closing tiles.
FETCH_KEYS = 1000

#: ``{ref: {chunk_start: statistics of the closes of tiles starting in that chunk}}``
CloseDelta = dict[str, dict[int, FeatureStats]]


def numeric_aggregations(plan: ViewPlan, hop: int) -> list[AggregationPlan]:
    """The aggregations of ``hop`` whose values are numeric (the ones with statistics)."""
    return [a for a in plan.aggregations if a.hop == hop and a.dtype.is_numeric]


def is_final(start: int, hop: int, lateness: int, watermark: int | None) -> bool:
    """Whether tile ``[start, start+hop)`` can no longer change: ``start + hop + L <= M``."""
    return watermark is not None and start + hop + lateness <= watermark


def close_values(online: OnlineStore, plan: ViewPlan, hop: int,
                 aggs: Sequence[AggregationPlan], closes: Sequence[tuple[str, int]],
                 deltas: Mapping[tuple[str, int], bytes] | None = None) -> dict[str, list[Any]]:
    """The value of every aggregation in ``aggs`` at the close of each ``(key, tile_start)``.

    Args:
        online: the online store holding the windows' tiles.
        plan: the view.
        hop: the hop of ``aggs`` (ms).
        aggs: aggregations of that hop.
        closes: store keys (:func:`braid.online.encoding.encode_keys`) and tile starts.
        deltas: tile values (the store's text) not yet merged into the store, by
            ``(key, tile_start)``; each is merged after the stored value.

    Returns:
        ``{aggregation name: [value per close]}`` in the order of ``closes``.
    """
    codec = TileCodec(plan, hop)
    widest = max(a.window for a in aggs)
    wanted: dict[str, set[int]] = {}
    for key, s in closes:
        wanted.setdefault(key, set()).update(range(s - widest + hop, s + hop, hop))
    stored: dict[tuple[str, int], bytes] = {}
    keys = list(wanted)
    for lo in range(0, len(keys), FETCH_KEYS):
        requests = [(k, [f"{hop}:{t}" for t in sorted(wanted[k])]) for k in keys[lo:lo + FETCH_KEYS]]
        for (key, fields), row in zip(requests, online.fetch(requests), strict=True):
            for f, raw in zip(fields, row, strict=True):
                if raw is not None:
                    stored[(key, int(f.split(":", 1)[1]))] = raw
    specs = [p.spec for p in codec.partials]
    cache: dict[tuple[str, int], list[Partial]] = {}

    def tile(key: str, t: int) -> list[Partial]:
        hit = cache.get((key, t))
        if hit is None:
            hit = codec.decode(stored.get((key, t)))
            extra = (deltas or {}).get((key, t))
            if extra is not None:
                hit = [merge(sp, a, d) for sp, a, d in zip(specs, hit, codec.decode(extra),
                                                           strict=True)]
            cache[(key, t)] = hit
        return hit

    index = {p: i for i, p in enumerate(codec.partials)}
    out: dict[str, list[Any]] = {a.name: [] for a in aggs}
    for key, s in closes:
        for a in aggs:
            i, spec = index[a.partial], a.partial.spec
            parts = [tile(key, t)[i] for t in range(s - a.window + hop, s + hop, hop)]
            out[a.name].append(finalize(spec, merge_all(spec, parts), a.partial.input_type))
    return out


def close_stats(plan: ViewPlan, aggs: Sequence[AggregationPlan], starts: Sequence[int],
                values: Mapping[str, Sequence[Any]], chunk: int = DAY) -> CloseDelta:
    """Statistics of the close values, per feature and chunk of tile start."""
    at = np.asarray(starts, dtype=np.int64)
    chunks = at - np.mod(at, chunk)
    out: CloseDelta = {}
    for c in np.unique(chunks):
        idx = np.flatnonzero(chunks == c)
        for a in aggs:
            column = pa.array([values[a.name][i] for i in idx])
            fs = FeatureStats().update(column)
            out.setdefault(f"{plan.name}:{a.name}", {})[int(c)] = fs
    return out


def apply_tile_closes(registry: Registry, plan: ViewPlan, delta: CloseDelta, cutoff: int,
                      runner: str, seq: int, origin: str = "stream", chunk: int = DAY) -> int:
    """Merge ``delta`` (batch ``seq`` of writer ``runner``) into the stream's tile-close
    snapshots, skipping the rows that batch was already counted in.

    Returns:
        The number of chunk snapshots written (skipped replays excluded).
    """
    written = 0
    for ref, chunks in delta.items():
        for start, fs in sorted(chunks.items()):
            lo, hi = max(start, cutoff), start + chunk
            snap = registry.stats_as_of(plan.project, ref, hi)
            mine = (snap is not None and snap.start == lo and snap.end == hi
                    and snap.origin == origin and snap.body.get("namespace") == plan.namespace
                    and snap.body.get("population") == TILE_CLOSE)
            counted = (snap.body.get("counted") or {}) if mine and snap is not None else {}
            if counted.get("runner") == runner and int(counted.get("seq", -1)) >= seq:
                continue  # this batch was counted here before a crash: a replay
            total = FeatureStats.from_dict(snap.body["stats"]) if mine and snap else FeatureStats()
            total.merge(fs)
            registry.save_stats(plan.project, ref, lo, hi, origin, chunk_body(
                plan.namespace, TILE_CLOSE, total, counted={"runner": runner, "seq": seq}))
            written += 1
    return written
