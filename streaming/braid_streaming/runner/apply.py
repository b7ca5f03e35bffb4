"""Apply one micro-batch to one view: the compiled DuckDB SQL of batch, run over the batch's
on-time events, then tile deltas merged in chunks of keys under a per-key sequence guard and
projection rows written last-write-wins (DESIGN §6.4, §7).

The tiles query is the one :class:`~braid.compile.duckdb.DuckDBCompiler` renders for
backfill; this module only wraps it to keep the tiles the stream owns (``tile_start >= C``)
and to number chunks of keys (``dense_rank`` over the keys), so every chunk is a whole set of
keys and a replay cuts exactly the same chunks.

Guard fields are per hop: one hash holds every hop of a view, and a key's first hop merge
must not make its second hop look already applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from braid.compile.algebra_sql import CT, TS, col, lit
from braid.compile.dialect import DUCKDB
from braid.compile.duckdb import TILE_START, DuckDBCompiler
from braid.online import OnlineStore, SeqGuard
from braid.online.tilecache import TileCache
from braid.plan import ViewPlan

BATCH_RELATION = "braid_batch_events"

#: Called after each chunk is applied with (view, hop or None for rows, chunk index).
ChunkHook = Callable[[str, int | None, int], None]
#: Called with (plan, hop, the batch's owned tile deltas) before they are merged.
TilesHook = Callable[[ViewPlan, int, pa.Table], None]


@dataclass
class ViewApplied:
    """What one batch did to one view."""

    events: int = 0
    tiles: int = 0
    keys: int = 0
    rows: int = 0
    newest_ts: int | None = None
    #: Every projection row of the batch (not only each key's latest): ``_ts`` and the
    #: projections, for stream statistics (:func:`braid.stats.stream.stats_delta`). None when
    #: the view has no hop or no numeric projection (no stream statistics to keep).
    projection_rows: pa.Table | None = None


def guard_runner(runner_id: str, hop: int) -> str:
    """The guard name of one runner instance and hop: ``_seq:<runner_id>.<hop>``."""
    return f"{runner_id}.{hop}"


def _owned_tiles(compiler: DuckDBCompiler, events: exp.Select, hop: int,
                 cutoff: int) -> exp.Select:
    """Tiles of ``hop`` with ``tile_start >= cutoff``, ordered by key and tile (a key's rows
    adjacent: :func:`_split` cuts chunks of whole keys, the cached merge wants them so)."""
    keys = [col(k) for k in compiler.plan.key_names]
    tiles = compiler.tiles_query(events, hop).subquery("t")
    return (exp.select(exp.Star()).from_(tiles)
            .where(exp.GTE(this=col(TILE_START), expression=lit(cutoff)))
            .order_by(*keys, col(TILE_START)))


def _latest_rows(compiler: DuckDBCompiler, events: exp.Select) -> exp.Select:
    """Projection rows, only those tied for the greatest (``_ts``, ``_ct``) per key: the
    store breaks the remaining ties by canonical value (DESIGN §4.1), so no winner is lost."""
    keys = [col(k) for k in compiler.plan.key_names]
    rank = exp.Window(this=exp.Anonymous(this="rank"), partition_by=keys, order=exp.Order(
        expressions=[exp.Ordered(this=col(TS), desc=True), exp.Ordered(this=col(CT), desc=True)]))
    rows = compiler.rows_query(events).subquery("r")
    return exp.select(exp.Star()).from_(rows).qualify(exp.EQ(this=rank, expression=lit(1)))


def _split(table: pa.Table, keys: list[str], chunk_keys: int) -> list[pa.Table]:
    """Slices of ``chunk_keys`` whole keys each, of a table ordered by ``keys``."""
    n = table.num_rows
    if n == 0:
        return []
    first = np.zeros(n, dtype=bool)  # the first row of each key
    first[0] = True
    for k in keys:
        column = table.column(k).combine_chunks()
        changed = pc.not_equal(column.slice(1), column.slice(0, n - 1))
        first[1:] |= pc.fill_null(changed, True).to_numpy(zero_copy_only=False)
    bounds = [*np.flatnonzero(first)[::chunk_keys].tolist(), n]
    return [table.slice(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:], strict=False)]


@dataclass(frozen=True)
class _ViewSql:
    """The rendered queries of one view over the batch relation."""

    stats: str
    tiles: dict[int, str]
    rows: str
    all_rows: str


_SQL_CACHE: dict[tuple[object, ...], _ViewSql] = {}


def _compiled(plan: ViewPlan, cutoffs: dict[int, int]) -> _ViewSql:
    """Render (once per view and cutoffs) the batch's stats, tiles and rows
    queries: building and rendering the sqlglot trees costs more than running them on a
    small batch. The namespace is a hash of the compiled plan, so it identifies the SQL."""
    cache_key = (plan.project, plan.namespace, plan.name,
                 tuple(sorted((h, cutoffs[h]) for h in plan.hops)))
    hit = _SQL_CACHE.get(cache_key)
    if hit is not None:
        return hit
    compiler = DuckDBCompiler(plan)
    events = compiler.events(exp.to_table(BATCH_RELATION), source=plan.source)
    out = _ViewSql(
        stats=DUCKDB.render(exp.select(exp.Count(this=exp.Star()), exp.Max(this=col(TS)))
                            .from_(events.subquery("s"))),
        tiles={h: DUCKDB.render(_owned_tiles(compiler, events, h, cutoffs[h]))
               for h in plan.hops},
        rows=DUCKDB.render(_latest_rows(compiler, events)) if plan.projections else "",
        all_rows=(DUCKDB.render(compiler.rows_query(events)) if plan.hops and any(
            p.dtype.is_numeric for p in plan.projections) else ""))
    if len(_SQL_CACHE) >= 256:
        _SQL_CACHE.clear()
    _SQL_CACHE[cache_key] = out
    return out


def apply_view(con: duckdb.DuckDBPyConnection, store: OnlineStore, plan: ViewPlan,
               events_table: pa.Table, cutoffs: dict[int, int], runner_id: str, seq: int,
               chunk_keys: int = 5000, hook: ChunkHook | None = None,
               before_merge: TilesHook | None = None,
               cache: TileCache | None = None) -> ViewApplied:
    """Merge one batch's tile deltas and projection rows of ``plan`` into ``store``.

    Args:
        con: a DuckDB connection from :func:`braid.duck.connect` (UTC).
        store: the online store.
        plan: the view.
        events_table: the decoder's on-time events (source columns, declared types).
        cutoffs: hop -> C; only tiles with ``tile_start >= C`` are merged (DESIGN §6.4).
        runner_id: the runner instance id (guard field prefix).
        seq: the batch's sequence number.
        chunk_keys: keys per guarded merge call.
        hook: called after every chunk (tests inject crashes here).
        before_merge: called per hop with all its deltas before the first chunk is merged
            (tile-close statistics, :mod:`~braid_streaming.runner.tile_stats`).
        cache: the runner's knowledge of its keys' stored tiles
            (:mod:`braid.online.tilecache`), when it is the namespace's only tile writer.
    """
    done = ViewApplied()
    if events_table.num_rows == 0:
        return done
    sql = _compiled(plan, cutoffs)
    con.register(BATCH_RELATION, events_table)
    try:
        stats = con.sql(sql.stats).fetchall()[0]
        done.events, done.newest_ts = int(stats[0]), stats[1]
        for hop in plan.hops:
            guard = SeqGuard(guard_runner(runner_id, hop), seq)
            deltas = con.sql(sql.tiles[hop]).to_arrow_table()
            if before_merge:
                before_merge(plan, hop, deltas)
            for i, chunk in enumerate(_split(deltas, plan.key_names, chunk_keys)):
                done.keys += store.merge_tiles(plan, hop, chunk, guard=guard, cache=cache)
                done.tiles += chunk.num_rows
                if hook:
                    hook(plan.name, hop, i)
        if plan.projections:
            rows = con.sql(sql.rows).to_arrow_table()
            for i, lo in enumerate(range(0, rows.num_rows, chunk_keys)):
                done.rows += store.write_rows(plan, rows.slice(lo, chunk_keys))
                if hook:
                    hook(plan.name, None, i)
        if sql.all_rows:
            done.projection_rows = con.sql(sql.all_rows).to_arrow_table()
    finally:
        con.unregister(BATCH_RELATION)
    return done

