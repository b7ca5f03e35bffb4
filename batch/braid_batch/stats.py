"""Batch statistics of a view's numeric features from the offline store (DESIGN §9).

Populations, so batch and stream agree:

* a projection feature: every accepted row's value (the offline ``rows/``), by event time;
* an aggregated feature: its value at each tile close, for each entity active in that tile.
  The value at the close of tile k (time ``(k+1)*h - 1``) is the finalized merge of the
  window's tiles ``k-W/h+1 .. k`` (DESIGN §4.2 with a complete head), computed in DuckDB with
  the algebra renderers of :mod:`braid.compile.algebra_sql`, then fed to the statistics in
  Arrow record batches.

Both are cut into chunks of data time (UTC days, the offline partitions) and each chunk is
saved as one snapshot per feature (origin ``"batch"``); :mod:`braid.stats.snapshots` merges
them on read. Only tiles batch owns exist offline (``tile_start < C``); projection rows are
clipped at the same cutoff (the least of the view's hops), leaving the rest to the stream.

Example:
    >>> report = compute_view_stats(repo, "user_txn_stats", registry=registry)
    >>> report.stats["user_txn_stats:amount_sum_1h"].summary()
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import duckdb
from sqlglot import exp

from braid.compile import algebra_sql as A
from braid.compile.dialect import DUCKDB
from braid.compile.tile_close import CLOSE as CLOSE  # re-exported: the close column
from braid.compile.tile_close import tile_close_select
from braid.duck import connect
from braid.plan import AggregationPlan, ViewPlan
from braid.repo import Repo
from braid.stats.bundle import FeatureStats
from braid.stats.snapshots import ROWS, TILE_CLOSE, save_chunk
from braid.timeutil import DAY
from braid_batch.offline import TILE_START, OfflineStore

if TYPE_CHECKING:
    from braid.registry import Registry

#: Rows per Arrow record batch fed to the statistics.
BATCH_ROWS = 65_536
Cutoffs = Mapping[int, int] | Callable[[ViewPlan], Mapping[int, int]] | None


@dataclass
class ViewStatsReport:
    """Statistics computed for one view: merged over the run, and the snapshots saved."""

    view: str
    namespace: str
    start: int | None
    end: int | None
    stats: dict[str, FeatureStats] = field(default_factory=dict)
    snapshot_ids: list[int] = field(default_factory=list)
    chunks: int = 0


def numeric_features(plan: ViewPlan) -> tuple[list[str], list[AggregationPlan]]:
    """Names of the numeric projections and the numeric aggregations of a view."""
    projections = [p.name for p in plan.projections if p.dtype.is_numeric]
    aggregations = [a for a in plan.aggregations if a.dtype.is_numeric]
    return projections, aggregations


def compute_view_stats(repo: Repo, view: str, start: int | None = None, end: int | None = None,
                       registry: Registry | None = None, origin: str = "batch",
                       cutoffs: Cutoffs = None, chunk: int = DAY,
                       threads: int | None = None) -> ViewStatsReport:
    """Compute (and, with a registry, snapshot) the statistics of ``view``'s numeric features.

    Args:
        repo: the loaded repository.
        view: the view name.
        start, end: data-time range, widened to whole chunks (default: what the offline
            store covers).
        registry: where to save one snapshot per feature and chunk (None: compute only).
        origin: the snapshots' origin.
        cutoffs: ``{hop: C}`` or a function of the plan (default: the registry's cutoffs).
        chunk: chunk length in ms (must divide a day, and be a multiple of every hop).
        threads: DuckDB threads.
    """
    plan = repo.plan(view)
    store = OfflineStore.for_repo(repo)
    if cutoffs is None and registry is not None:
        hop_cutoffs: Mapping[int, int] = registry.cutoffs(plan.project, plan.namespace)
    else:
        hop_cutoffs = cutoffs(plan) if callable(cutoffs) else (cutoffs or {})
    lo, hi = _range(store, plan, start, end, chunk)
    report = ViewStatsReport(plan.name, plan.namespace, lo, hi)
    if lo is None or hi is None:
        return report
    projections, aggregations = numeric_features(plan)
    # batch owns data before the cutoff (DESIGN §6.4); the streaming side saves the rest
    cutoff = min(hop_cutoffs.values()) if hop_cutoffs else None
    with connect(threads=threads) as con:
        for a in range(lo, hi, chunk):
            top = a + chunk if cutoff is None else min(a + chunk, cutoff)
            if top <= a:
                break
            found: dict[str, tuple[str, FeatureStats]] = {}
            if projections:
                for name, fs in _projection_stats(con, store, plan, projections, a, top).items():
                    found[name] = (ROWS, fs)
            for name, fs in _aggregation_stats(con, store, plan, aggregations, a, top).items():
                found[name] = (TILE_CLOSE, fs)
            report.chunks += 1
            for name, (population, fs) in found.items():
                ref = f"{plan.name}:{name}"
                report.stats.setdefault(ref, FeatureStats()).merge(fs.copy())
                if registry is not None:
                    report.snapshot_ids.append(save_chunk(
                        registry, plan.project, ref, a, top, origin, plan.namespace, population,
                        fs))
    return report


def compute_stats(repo: Repo, registry: Registry, views: list[str] | None = None,
                  start: int | None = None, end: int | None = None) -> list[ViewStatsReport]:
    """:func:`compute_view_stats` for ``views`` (default: every offline view), snapshotted."""
    names = views or [n for n, v in repo.views.items() if v.offline]
    return [compute_view_stats(repo, n, start, end, registry=registry) for n in names]


def _range(store: OfflineStore, plan: ViewPlan, start: int | None, end: int | None,
           chunk: int) -> tuple[int | None, int | None]:
    kinds: list[int | None] = [*plan.hops, *([None] if plan.projections else [])]
    manifests = [m for k in kinds for m in store.manifests(plan, k)]
    lo = start if start is not None else min((m.start for m in manifests), default=None)
    hi = end if end is not None else max((m.end for m in manifests), default=None)
    if lo is None or hi is None or hi <= lo:
        return None, None
    return lo - lo % chunk, -(-hi // chunk) * chunk


def _feed(reader_of: duckdb.DuckDBPyRelation, names: list[str]) -> dict[str, FeatureStats]:
    out = {n: FeatureStats() for n in names}
    for batch in reader_of.to_arrow_reader(BATCH_ROWS):
        for n in names:
            out[n].update(batch.column(n))
    return {n: fs for n, fs in out.items() if fs.count.total}


def _projection_stats(con: duckdb.DuckDBPyConnection, store: OfflineStore, plan: ViewPlan,
                      names: list[str], a: int, b: int) -> dict[str, FeatureStats]:
    rows = store.rows_from(plan, a, b)
    sel = exp.select(*[A.col(n) for n in names]).from_(rows.subquery("r"))
    return _feed(con.sql(DUCKDB.render(sel)), names)


def _aggregation_stats(con: duckdb.DuckDBPyConnection, store: OfflineStore, plan: ViewPlan,
                       aggregations: list[AggregationPlan], a: int,
                       b: int) -> dict[str, FeatureStats]:
    groups: dict[tuple[int, int], list[AggregationPlan]] = defaultdict(list)
    for agg in aggregations:
        groups[(agg.hop, agg.window)].append(agg)
    out: dict[str, FeatureStats] = {}
    for (hop, window), group in sorted(groups.items()):
        sql = DUCKDB.render(tile_close_query(store, plan, hop, window, group, a, b))
        out.update(_feed(con.sql(sql), [g.name for g in group]))
    return out


def tile_close_query(store: OfflineStore, plan: ViewPlan, hop: int, window: int,
                     group: list[AggregationPlan], a: int, b: int) -> exp.Select:
    """Each group feature's value at the close of every tile with ``a <= tile_start < b``.

    Rows: entity keys, ``__close`` (the tile_start of the closing tile), one column per
    feature. Every active (entity, tile) of the hop gets a row
    (:func:`braid.compile.tile_close.tile_close_select` over the offline tiles).
    """
    keys = plan.key_names
    tiles = store.tiles_from(plan, hop, a - window + hop, b)
    closes = exp.select(*[A.col(k) for k in keys], A.col(TILE_START)).distinct().from_(
        store.tiles_from(plan, hop, a, b).subquery("k"))
    return tile_close_select(hop, window, group, tiles, closes, keys)
