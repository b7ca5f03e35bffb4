"""Tile-close statistics of aggregated features in the embedded runner (DESIGN §9).

For every batch the runner builds a :class:`BatchCloser` from the batch's sequence number and
``M(p)`` after decoding (the value it commits with its offsets) and hands it to
:func:`~braid_streaming.runner.apply.apply_view`, which calls it per hop with the batch's
owned tile deltas *before* merging them. For each hop with numeric aggregations it:

1. lists the hop's open tiles: the index (meta string ``tilestats:<project>:<ns>:<hop>``, a
   JSON list of tile starts) plus the starts in the deltas, all owned (``>= C``); the
   entities active in an open tile are the set ``tilestats:<project>:<ns>:<hop>:<start>``
   plus the keys of the deltas for it;
2. closes every active entity of the tiles that are final after this batch
   (``start + h + L <= min_p M(p)`` over every partition,
   :func:`braid.stats.stream_tiles.is_final`), and *early* the entities whose window this
   batch's merge would prune (see below); the values come from the stored tiles plus the
   deltas, and every snapshot row is saved under the batch's guard
   (:func:`braid.stats.stream_tiles.apply_tile_closes`);
3. records the updates of the sets (drop closed tiles, move early-closed entities to the
   tile's ``:early`` set so they are not closed twice, add the delta keys of open tiles) and
   of the index; the runner applies them with :meth:`BatchCloser.commit` after the batch's
   online writes (on SQLite those are one write transaction, which a metadata write on the
   meta connection would wait for), before it commits its offsets.

A replay of the intent after a crash meets the same metadata until step 3 was applied, so
it closes the same (key, tile) pairs into the same snapshot rows, or, after a partial step
3, a subset of them; the rows' (runner, seq) guards make either a no-op. The values it
would compute may differ (the store may hold the batch's merges by then) but are never
saved: each close is counted once.

Early closes. The online store prunes a key's tiles older than its newest tile minus
``max W + h + L`` (DESIGN §4.6). A tile not yet final waits for the slowest partition; if a
key's deltas run more than ``2h + L`` past it (another partition lags, or a backlog is read
in big batches), the merge would prune the head of its window. Such a key's tile is closed
with this batch, before the merge. That is exact when a key's events come from one
partition (its own M(p) already makes the tile final); when they come from several, events
of the tile still to arrive from a lagging partition are left out, as the pruned online
store leaves them out too.

One runner instance only (``instances == 1``): with several, a tile's events come from
partitions other instances apply, so neither ``min_p M(p)`` nor the pre-merge state is
known to one of them; those runners leave aggregated statistics to the batch pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from braid.arrowutil import pylist
from braid.compile.duckdb import TILE_START
from braid.online import OnlineStore
from braid.online.base import tile_starts
from braid.online.encoding import key_array, prune_span
from braid.online.tilecache import TileCache
from braid.plan import ViewPlan
from braid.registry import Registry
from braid.stats.stream_tiles import (
    KEY,
    apply_tile_closes,
    close_stats,
    close_values,
    is_final,
    numeric_aggregations,
)
from braid_streaming.runner.meta import MetaStore, Write


def index_key(plan: ViewPlan, hop: int) -> str:
    """The meta key of a hop's open tile starts."""
    return f"tilestats:{plan.project}:{plan.namespace}:{hop}"


def members_key(plan: ViewPlan, hop: int, start: int, early: bool = False) -> str:
    """The meta key of the entities active in one open tile (or closed early in it)."""
    return f"{index_key(plan, hop)}:{start}" + (":early" if early else "")


def watermark(max_ts: Mapping[int, int], partitions: Sequence[int]) -> int | None:
    """``min_p M(p)`` over ``partitions``; None while one of them has no valid event yet
    (any event there would still be on time, so no tile is final)."""
    if not partitions or any(p not in max_ts for p in partitions):
        return None
    return min(max_ts[p] for p in partitions)


def _by_tile(keys: pa.Array, starts: pa.Array) -> dict[int, set[str]]:
    """The keys of each tile start (column-wise)."""
    if not len(keys):
        return {}
    at = starts.to_numpy(zero_copy_only=False)
    order = np.argsort(at, kind="stable")
    at = at[order]
    flat: list[str] = pylist(keys.take(pa.array(order)))
    bounds = [0, *(np.flatnonzero(np.diff(at)) + 1).tolist(), len(at)]
    return {int(at[lo]): set(flat[lo:hi]) for lo, hi in zip(bounds, bounds[1:], strict=False)}


def _newest(keys: pa.Array, starts: pa.Array) -> dict[str, int]:
    """Each key's newest tile start."""
    top = pa.table({"k": keys, "s": starts}).group_by("k").aggregate([("s", "max")])
    return dict(zip(pylist(top.column("k")), pylist(top.column("s_max")), strict=True))


class BatchCloser:
    """The tile-close step of one batch (called by ``apply_view`` before each hop's merges).

    Args:
        con: the runner's DuckDB connection (the close values query).
        meta: the runner's metadata store (open tiles and their entities; the runner passes
            a :class:`~braid_streaming.runner.meta_cache.CachedMeta` of it).
        online: the online store (the windows' tiles).
        registry: where the snapshots go.
        runner: the runner instance id; with ``seq``, the snapshot rows' guard.
        seq: the batch's sequence number.
        watermark: ``min_p M(p)`` after the batch (:func:`watermark`).
        cutoffs: the batch's cutoffs, namespace -> hop -> C.
        cache: the runner's tile cache (its stored owned tiles are not read back).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, meta: MetaStore, online: OnlineStore,
                 registry: Registry, runner: str, seq: int, watermark: int | None,
                 cutoffs: Mapping[str, Mapping[int, int]],
                 cache: TileCache | None = None) -> None:
        self.con, self.meta, self.online, self.registry = con, meta, online, registry
        self.cache = cache
        self.runner, self.seq = runner, seq
        self.watermark, self.cutoffs = watermark, cutoffs
        self.closed = 0
        self._writes: list[Write] = []

    def __call__(self, plan: ViewPlan, hop: int, table: pa.Table) -> None:
        aggs = numeric_aggregations(plan, hop)
        cutoff = self.cutoffs.get(plan.namespace, {}).get(hop)
        if not aggs or cutoff is None:
            return
        keys = key_array(plan, table) if table.num_rows else pa.array([], pa.string())
        starts = tile_starts(plan, hop, table) if table.num_rows else pa.array([], pa.int64())
        fresh = _by_tile(keys, starts)
        raw = self.meta.get(index_key(plan, hop))
        listed = {int(x) for x in json.loads(raw)} if raw else set()
        tiles = {s for s in listed | set(fresh) if s >= cutoff}
        for s in listed - tiles:  # handed to batch by `braid handoff`: batch counts them
            self._later("drop", members_key(plan, hop, s))
            self._later("drop", members_key(plan, hop, s, early=True))
        lateness = plan.source.allowed_lateness
        final = sorted(s for s in tiles if is_final(s, hop, lateness, self.watermark))
        reach = prune_span(plan, hop) - max(a.window for a in plan.aggregations
                                            if a.hop == hop) + hop  # 2h + L
        top = int(pc.max(starts).as_py()) if len(starts) else None
        newest: dict[str, int] | None = None  # each key's newest tile, if an early close asks
        closing = [s for s in sorted(tiles)
                   if s in final or (top is not None and top > s + reach)]
        # One round trip for every set read below. The open tiles' own sets are read too
        # although only their early sets are used: a CachedMeta then follows them from
        # when they are small, so closing a tile reads nothing.
        sets = self.meta.members_many(
            [members_key(plan, hop, s, early=e) for s in closing for e in (True, False)]
            + [members_key(plan, hop, s, early=e) for s in tiles - set(closing)
               if fresh.get(s) for e in (True, False)])
        close_keys: list[str] = []  # with close_starts: the (key, tile) pairs closed
        close_starts: list[int] = []
        early: dict[int, list[str]] = {}
        done: dict[int, set[str]] = {}
        for s in closing:
            done[s] = sets[members_key(plan, hop, s, early=True)]
            members = sets[members_key(plan, hop, s)] | fresh.get(s, set())
            if s in final:
                ks = sorted(members - done[s])
            else:
                newest = _newest(keys, starts) if newest is None else newest
                ks = early[s] = sorted(k for k in members - done[s]
                                       if newest.get(k, s) > s + reach)
            close_keys += ks
            close_starts += [s] * len(ks)
        if close_keys:
            names = [c for p in plan.partials_for_hop(hop) for c in p.columns]
            deltas = table.select([TILE_START, *names]).append_column(KEY, keys)
            wanted = pa.table({KEY: pa.array(close_keys, pa.string()),
                               TILE_START: pa.array(close_starts, pa.int64())})
            found = close_values(self.con, self.online, plan, hop, aggs, wanted, deltas,
                                 self.cache, cutoff)
            delta = close_stats(plan, found)
            apply_tile_closes(self.registry, plan, delta, cutoff, self.runner, self.seq)
            self.closed += len(close_keys)
        self._remember(plan, hop, tiles, final, early, fresh, done, raw, sets)

    def _remember(self, plan: ViewPlan, hop: int, tiles: set[int], final: list[int],
                  early: Mapping[int, list[str]], fresh: Mapping[int, set[str]],
                  done: Mapping[int, set[str]], index: str | None,
                  sets: Mapping[str, set[str]]) -> None:
        """Step 3: the sets and the index after this batch's closes were saved."""
        for s in final:
            self._later("drop", members_key(plan, hop, s))
            self._later("drop", members_key(plan, hop, s, early=True))
        for s, ks in early.items():
            if ks:
                self._later("add", members_key(plan, hop, s, early=True), ks)
                self._later("remove", members_key(plan, hop, s), ks)
        still_open = sorted(tiles - set(final))
        for s in still_open:
            if not fresh.get(s):
                continue
            gone = done.get(s)
            if gone is None:
                gone = sets[members_key(plan, hop, s, early=True)]
            add = fresh[s] - gone - set(early.get(s, []))
            if add:
                self._later("add", members_key(plan, hop, s), sorted(add))
        text = json.dumps(still_open) if still_open else None
        if text != index:  # most batches add to open tiles and close none: no write
            self._later("set", index_key(plan, hop), text)

    def _later(self, op: str, key: str, arg: Any = None) -> None:
        self._writes.append((op, key, arg))

    def commit(self) -> None:
        """Apply the batch's metadata writes, in order and at once (call after the batch's
        online writes)."""
        if self._writes:
            self.meta.write_many(self._writes)
        self._writes.clear()
