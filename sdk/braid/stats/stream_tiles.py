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
cutoff), decoded to partial columns (:func:`braid.online.tilemerge.decode_columns`) and
folded by the very query batch runs (:func:`braid.compile.tile_close.tile_close_select`, the
algebra's SQL renderers) in DuckDB; nothing here restates the algebra. The caller may pass
tile *deltas* not merged into the store yet (the runner closes tiles before merging the
batch that makes them final); the query merges them like more tiles.

Snapshots: closes are cut into chunks of tile start (UTC days) and merged into the stream's
chunk snapshots of origin ``"stream"``, population ``tile_close``. A chunk holding the cutoff
starts at the cutoff, like :mod:`braid.stats.stream` does for projections. Each snapshot
body carries ``counted = {"runner": id, "seq": n}``, the writer's batch that last merged into
it; a delta of a batch not after it was counted already (a replay of that batch after a
crash) and is skipped. A writer saves every row of one batch's delta before it changes any
state that decides what the batch closes, so a replay closes nothing a row does not hold.

Example:
    >>> closes = pa.table({KEY: [key], "tile_start": [s]})
    >>> delta = close_stats(plan, close_values(con, online, plan, hop, aggs, closes))
    >>> apply_tile_closes(registry, plan, delta, cutoff=c, runner="ab12cd34.0of1", seq=42)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from braid.arrowutil import pylist
from braid.compile.dialect import DUCKDB
from braid.compile.duckdb import TILE_START
from braid.compile.tile_close import CLOSE, tile_close_select
from braid.online.encoding import TileCodec
from braid.online.tilecache import TileCache
from braid.online.tilemerge import decode_columns
from braid.stats.bundle import FeatureStats
from braid.stats.snapshots import TILE_CLOSE, chunk_body
from braid.timeutil import DAY

if TYPE_CHECKING:
    from braid.online import OnlineStore
    from braid.plan import AggregationPlan, ViewPlan
    from braid.registry import Registry

#: Keys per online fetch when reading the windows of closing tiles.
FETCH_KEYS = 1000
#: The column of store keys in the closes and deltas tables.
KEY = "__key"
_TILES = "braid_close_tiles"
_CLOSES = "braid_closes"

#: ``{ref: {chunk_start: statistics of the closes of tiles starting in that chunk}}``
CloseDelta = dict[str, dict[int, FeatureStats]]


def numeric_aggregations(plan: ViewPlan, hop: int) -> list[AggregationPlan]:
    """The aggregations of ``hop`` whose values are numeric (the ones with statistics)."""
    return [a for a in plan.aggregations if a.hop == hop and a.dtype.is_numeric]


def is_final(start: int, hop: int, lateness: int, watermark: int | None) -> bool:
    """Whether tile ``[start, start+hop)`` can no longer change: ``start + hop + L <= M``."""
    return watermark is not None and start + hop + lateness <= watermark


def close_values(con: duckdb.DuckDBPyConnection, online: OnlineStore, plan: ViewPlan,
                 hop: int, aggs: Sequence[AggregationPlan], closes: pa.Table,
                 deltas: pa.Table | None = None, cache: TileCache | None = None,
                 cutoff: int | None = None) -> dict[str, tuple[np.ndarray, pa.Array]]:
    """The value of every aggregation in ``aggs`` at each close.

    Args:
        con: a DuckDB connection (:func:`braid.duck.connect`).
        online: the online store holding the windows' tiles.
        plan: the view.
        hop: the hop of ``aggs`` (ms).
        aggs: aggregations of that hop.
        closes: distinct ``__key`` (store keys, :func:`braid.online.encoding.encode_keys`)
            and ``tile_start`` of the closing tiles.
        deltas: ``__key``, ``tile_start`` and the hop's partial columns of tiles not yet
            merged into the store; merged with the stored ones.
        cache: the writer's tile cache (:mod:`braid.online.tilecache`): stored tiles at or
            above ``cutoff`` of the keys it holds are taken from it, the rest read.
        cutoff: the hop's cutoff C (required with ``cache``).

    Returns:
        ``{aggregation name: (tile start per close, value per close)}``.
    """
    codec = TileCodec(plan, hop)
    stored = _stored_tiles(online, codec, closes, max(a.window for a in aggs), plan.namespace,
                           cache if cutoff is not None else None, cutoff)
    names = stored.column_names
    parts = [stored]
    if deltas is not None and deltas.num_rows:
        parts.append(pa.table([pc.cast(deltas.column(n), stored.schema.field(n).type)
                               for n in names], schema=stored.schema))
    tiles = pa.concat_tables(parts)
    groups: dict[int, list[AggregationPlan]] = {}
    for a in aggs:
        groups.setdefault(a.window, []).append(a)
    out: dict[str, tuple[np.ndarray, pa.Array]] = {}
    con.register(_TILES, tiles)
    con.register(_CLOSES, closes.select([KEY, TILE_START]))
    try:
        for window, group in sorted(groups.items()):
            result = con.sql(_close_sql(plan, hop, window, group)).to_arrow_table()
            at = np.asarray(result.column(CLOSE).to_numpy(), dtype=np.int64)
            for a in group:
                out[a.name] = (at, result.column(a.name).combine_chunks())
    finally:
        con.unregister(_TILES)
        con.unregister(_CLOSES)
    return out


_CLOSE_SQL: dict[tuple[str, int, int, tuple[str, ...]], str] = {}


def _close_sql(plan: ViewPlan, hop: int, window: int, group: Sequence[AggregationPlan]) -> str:
    """The close query of one window group over the registered relations, rendered once per
    view version (the namespace hashes the compiled plan): building and rendering the
    sqlglot tree costs as much as running it."""
    key = (plan.namespace, hop, window, tuple(a.name for a in group))
    sql = _CLOSE_SQL.get(key)
    if sql is None:
        every = exp.select(exp.Star())
        sql = DUCKDB.render(tile_close_select(hop, window, group, every.copy().from_(_TILES),
                                              every.copy().from_(_CLOSES), [KEY]))
        if len(_CLOSE_SQL) >= 256:
            _CLOSE_SQL.clear()
        _CLOSE_SQL[key] = sql
    return sql


def _stored_tiles(online: OnlineStore, codec: TileCodec, closes: pa.Table, widest: int,
                  namespace: str, cache: TileCache | None = None,
                  cutoff: int | None = None) -> pa.Table:
    """The stored tiles of every close's window: ``__key``, ``tile_start``, partials."""
    hop = codec.hop
    # per key the span of its closes' windows: tiles outside a close's window are left out
    # by the close query's range join, so one span per key serves all of its closes
    per_key = closes.group_by(KEY).aggregate([(TILE_START, "min"), (TILE_START, "max")])
    span = dict(zip(pylist(per_key.column(KEY)),
                    zip(pylist(per_key.column(f"{TILE_START}_min")),
                        pylist(per_key.column(f"{TILE_START}_max")), strict=True), strict=True))
    keys: list[str] = []
    starts: list[int] = []
    raws: list[bytes | None] = []
    unknown: dict[str, list[int]] = {}
    for key, (first, last) in span.items():
        low = first - widest + hop
        entry = cache.peek(namespace, key) if cache is not None else None
        if entry is None or cutoff is None:
            unknown[key] = list(range(low, last + hop, hop))
            continue
        tiles = entry.hops.get(hop) or {}
        if low < cutoff:  # batch's tiles may have changed since the cache read them
            unknown[key] = list(range(low, min(cutoff, last + hop), hop))
            tiles = {t: v for t, v in tiles.items() if t >= cutoff}
        # cached tiles below the cutoff lie outside every window here (low >= cutoff)
        keys += [key] * len(tiles)
        starts += tiles
        raws += tiles.values()
    listed = list(unknown)
    for lo in range(0, len(listed), FETCH_KEYS):
        chunk = listed[lo:lo + FETCH_KEYS]
        requests = [(k, [f"{hop}:{t}" for t in unknown[k]]) for k in chunk]
        for key, row in zip(chunk, online.fetch(requests), strict=True):
            keys += [key] * len(unknown[key])
            starts += unknown[key]
            raws += row
    values = pa.array(raws, pa.binary())  # an absent tile is NULL
    found = values.is_valid()
    body = decode_columns(codec, values.filter(found))
    head = pa.table({KEY: pa.array(keys, pa.string()), TILE_START: pa.array(starts, pa.int64())}
                    ).filter(found)
    for name in body.column_names:
        head = head.append_column(name, body.column(name))
    return head


def close_stats(plan: ViewPlan, values: Mapping[str, tuple[np.ndarray, pa.Array]],
                chunk: int = DAY) -> CloseDelta:
    """Statistics of the close values, per feature and chunk of tile start."""
    out: CloseDelta = {}
    for name, (at, column) in values.items():
        chunks = at - np.mod(at, chunk)
        for c in np.unique(chunks):
            part = column.filter(pa.array(chunks == c))
            out.setdefault(f"{plan.name}:{name}", {})[int(c)] = FeatureStats().update(part)
    return out


def apply_tile_closes(registry: Registry, plan: ViewPlan, delta: CloseDelta, cutoff: int,
                      runner: str, seq: int, origin: str = "stream", chunk: int = DAY) -> int:
    """Merge ``delta`` (batch ``seq`` of writer ``runner``) into the stream's tile-close
    snapshots, skipping the rows that batch was already counted in.

    Returns:
        The number of chunk snapshots written (skipped replays excluded).
    """
    rows = []
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
            rows.append((ref, lo, hi, origin, chunk_body(
                plan.namespace, TILE_CLOSE, total, counted={"runner": runner, "seq": seq})))
    registry.save_stats_many(plan.project, rows)  # one transaction: all rows or none
    return len(rows)
