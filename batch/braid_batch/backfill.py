"""Backfill: run each view's compiled DuckDB SQL over its batch source into the offline store.

The time range is widened to whole date partitions (and whole hops: the alignment is the
least common multiple of a day and every hop), then cut into chunks of whole partitions
sized by row count, so memory stays bounded and a re-run replaces exactly the partitions it
covers (DESIGN §6, §6.4). Late events of braid's stream archive (``_late``) are excluded
unless ``include_late=True`` (DESIGN §4.7).

Example:
    >>> report = backfill(load_repo("feature_repo"), start=None, end=None)
    >>> print(report.events_per_second)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from braid.algebra import MISSING_CREATED
from braid.compile.algebra_sql import CT, TS, col, lit
from braid.compile.dialect import DUCKDB
from braid.compile.duckdb import DuckDBCompiler, relation_for
from braid.duck import connect
from braid.errors import StoreError
from braid.plan import ViewPlan
from braid.repo import Repo
from braid.timeutil import DAY
from braid_batch.offline import TILE_START, OfflineStore, day_of_name, row_schema, tile_schema
from braid_batch.sources import SourceInfo, source_info

#: Rows of source events per chunk (memory bound of one DuckDB query result).
CHUNK_ROWS = 4_000_000

OnRange = Callable[[str, int, int], None]
Cutoffs = Mapping[int, int] | Callable[[ViewPlan], Mapping[int, int]] | None


@dataclass
class ViewBackfill:
    """What one view's backfill did."""

    view: str
    namespace: str
    start: int
    end: int
    rows_read: int = 0
    tiles_written: int = 0
    rows_written: int = 0
    partitions: int = 0


@dataclass
class BackfillReport:
    """Totals of a backfill run; ``events_per_second`` counts source events read."""

    views: list[ViewBackfill] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows_read(self) -> int:
        return sum(v.rows_read for v in self.views)

    @property
    def tiles_written(self) -> int:
        return sum(v.tiles_written for v in self.views)

    @property
    def rows_written(self) -> int:
        return sum(v.rows_written for v in self.views)

    @property
    def events_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


def backfill(repo: Repo, view_names: list[str] | None = None, start: int | None = None,
             end: int | None = None, include_late: bool = False, progress: bool = True,
             on_range: OnRange | None = None, cutoffs: Cutoffs = None,
             chunk_rows: int = CHUNK_ROWS, threads: int | None = None) -> BackfillReport:
    """Compute tiles and projection rows of views into the offline store.

    Args:
        repo: the loaded repository.
        view_names: views to backfill (default: every view with ``offline=True``).
        start, end: epoch-ms range, widened to whole partitions (default: the source's
            min and max event time).
        include_late: also count events flagged ``_late`` in the source.
        progress: show a tqdm bar with rows/s.
        on_range: called ``(namespace, start, end)`` for each finished chunk.
        cutoffs: ``{hop: C}`` (or a function of the plan giving it): only tiles with
            ``tile_start < C`` are written (DESIGN §6.4).
        chunk_rows: target source rows per chunk.
        threads: DuckDB threads (default: all cores).

    Raises:
        StoreError: a view has no batch source to read.
    """
    began = time.perf_counter()
    report = BackfillReport()
    store = OfflineStore.for_repo(repo)
    names = view_names or [n for n, v in repo.views.items() if v.offline]
    with connect(threads=threads) as con:
        for name in names:
            plan = repo.plan(name)
            hop_cutoffs = cutoffs(plan) if callable(cutoffs) else (cutoffs or {})
            job = _ViewJob(repo, plan, store, con, include_late, dict(hop_cutoffs))
            report.views.append(job.run(start, end, chunk_rows, progress, on_range))
    report.seconds = time.perf_counter() - began
    return report


class _ViewJob:
    """The backfill of one view: histogram, chunking, one query per chunk and hop."""

    def __init__(self, repo: Repo, plan: ViewPlan, store: OfflineStore,
                 con: duckdb.DuckDBPyConnection, include_late: bool,
                 cutoffs: dict[int, int]) -> None:
        if plan.batch_source is None:
            raise StoreError(f"view '{plan.name}': its stream source has no batch twin to "
                             "backfill from; add batch=BatchSource(...)")
        self.plan, self.store, self.con, self.cutoffs = plan, store, con, cutoffs
        self.compiler = DuckDBCompiler(plan)
        self.relation = relation_for(plan.batch_source, repo.config.resolve("."))
        self.align = math.lcm(DAY, *plan.hops)
        self.include_late = include_late

    def _widen(self, start: int | None, end: int | None) -> tuple[int | None, int | None]:
        lo = None if start is None else start - start % self.align
        hi = None if end is None else -(-end // self.align) * self.align
        return lo, hi

    def run(self, start: int | None, end: int | None, chunk_rows: int, progress: bool,
            on_range: OnRange | None) -> ViewBackfill:
        self.info: SourceInfo = source_info(self.con, self.plan, self.relation,
                                            self.include_late, *self._widen(start, end))
        lo, hi = self._widen(*self.info.bounds(start, end))
        out = ViewBackfill(self.plan.name, self.plan.namespace, lo or 0, hi or 0)
        if lo is None or hi is None:
            return out
        days = self.info.day_counts(lo, hi)
        bar = _bar(progress, sum(days.values()), self.plan.name)
        for a, b in _chunks(lo, hi, self.align, days, chunk_rows):
            n = sum(c for d, c in days.items() if a <= d * DAY < b)
            self._chunk(a, b, out)
            out.rows_read += n
            if bar is not None:
                bar.update(n)
            if on_range is not None:
                on_range(self.plan.namespace, a, b)
        if bar is not None:
            bar.close()
        return out

    def _chunk(self, a: int, b: int, out: ViewBackfill) -> None:
        events = self.compiler.events(self.relation, start=a, end=b,
                                      extra_where=self.info.where(a, b))
        for hop in self.plan.hops:
            cutoff = self.cutoffs.get(hop)
            if cutoff is not None and cutoff <= a:
                continue
            q = self.compiler.tiles_query(events.copy(), hop)
            if cutoff is not None:
                q = exp.select("*").from_(q.subquery("t")).where(
                    exp.LT(this=col(TILE_START), expression=lit(cutoff)))
            table = self._fetch(q).cast(tile_schema(self.plan, hop))
            ts = table.column(TILE_START)
            covered_to = b if cutoff is None else min(b, -(-cutoff // hop) * hop)
            for day in self._days(hop, ts, a, covered_to):
                # a written tile is complete, so coverage ends at the end of the last one
                self._write(hop, day, _slice(table, ts, day), min((day + 1) * DAY, covered_to), out)
            self.store.add_coverage(self.plan, hop, a, covered_to)
        if self.plan.projections:
            table = _rows_table(self._fetch(self.compiler.rows_query(events)), self.plan)
            ts = pc.cast(table.column(TS), pa.int64())
            for day in self._days(None, ts, a, b):
                self._write(None, day, _slice(table, ts, day), (day + 1) * DAY, out)
            self.store.add_coverage(self.plan, None, a, b)

    def _days(self, hop: int | None, ms: pa.ChunkedArray, a: int, b: int) -> list[int]:
        """Days in [a, b) with data in ``ms`` or with a partition to replace."""
        first, last = a // DAY, -(-b // DAY)
        days = {int(d) for d in np.unique(np.floor_divide(ms.to_numpy(), DAY))}
        base = self.store.kind_dir(self.plan, hop)
        if base.is_dir():
            days |= {day_of_name(d.name.removeprefix("date=")) for d in base.glob("date=*")}
        return sorted(d for d in days if first <= d < last)

    def _write(self, hop: int | None, day: int, part: pa.Table, end: int,
               out: ViewBackfill) -> None:
        """Publish a partition with data, or replace an existing one with an empty manifest;
        days without data and without a partition stay absent (coverage says they are empty)."""
        if part.num_rows == 0 and not self.store.partition_dir(self.plan, hop, day).is_dir():
            return
        self.store.write_partition(self.plan, hop, day, part, day * DAY, end)
        out.partitions += 1
        if hop is None:
            out.rows_written += part.num_rows
        else:
            out.tiles_written += part.num_rows

    def _fetch(self, q: exp.Select) -> pa.Table:
        return self.con.sql(DUCKDB.render(q)).to_arrow_table()


def _rows_table(table: pa.Table, plan: ViewPlan) -> pa.Table:
    """Epoch-ms ``_ts``/``_ct`` as timestamp[ms, UTC]; the missing-created sentinel as NULL."""
    ts_type = pa.timestamp("ms", tz="UTC")
    ct = table.column(CT)
    ct = pc.if_else(pc.equal(ct, MISSING_CREATED), pa.scalar(None, pa.int64()), ct)
    table = table.set_column(table.schema.get_field_index(TS), TS,
                             pc.cast(table.column(TS), pa.int64()).cast(ts_type))
    table = table.set_column(table.schema.get_field_index(CT), CT, ct.cast(ts_type))
    return table.cast(row_schema(plan), safe=False)


def _slice(table: pa.Table, ms: pa.ChunkedArray, day: int) -> pa.Table:
    """Rows of ``table`` whose time ``ms`` falls in UTC day ``day``."""
    if table.num_rows == 0:
        return table
    lo, hi = day * DAY, (day + 1) * DAY
    mask = pc.and_(pc.greater_equal(ms, lo), pc.less(ms, hi))
    return table.filter(mask)


def _chunks(lo: int, hi: int, align: int, days: dict[int, int],
            target: int) -> list[tuple[int, int]]:
    """Split ``[lo, hi)`` at multiples of ``align`` into pieces of about ``target`` rows."""
    out: list[tuple[int, int]] = []
    a, rows = lo, 0
    for b in range(lo + align, hi + 1, align):
        rows += sum(c for d, c in days.items() if b - align <= d * DAY < b)
        if rows >= target or b == hi:
            out.append((a, b))
            a, rows = b, 0
    return out


def _bar(progress: bool, total: int, name: str):  # type: ignore[no-untyped-def]
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="rows", unit_scale=True, desc=f"backfill {name}")
