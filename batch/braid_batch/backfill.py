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
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from braid.compile.algebra_sql import CT, TS, col, lit, missing_created
from braid.compile.dialect import DUCKDB
from braid.compile.duckdb import DuckDBCompiler, relation_for
from braid.duck import connect
from braid.errors import StoreError
from braid.plan import ViewPlan
from braid.repo import Repo
from braid.timeutil import DAY
from braid_batch.offline import (
    TILE_START,
    OfflineStore,
    Staged,
    day_of_name,
    row_schema,
    tile_schema,
)
from braid_batch.sources import SourceInfo, source_info

#: Rows of source events per chunk (memory bound of one DuckDB query result).
CHUNK_ROWS = 4_000_000
#: The temp table holding one chunk's validated events (one per connection).
_EVENTS = "braid_backfill_events"

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
        threads: DuckDB threads (default: all cores). With more than one, a writer thread
            encodes a hop's Parquet files while DuckDB computes the next hop; with one,
            everything runs on one core (so events/s/core is measured honestly).

    Raises:
        StoreError: a view has no batch source to read.
    """
    began = time.perf_counter()
    report = BackfillReport()
    store = OfflineStore.for_repo(repo)
    names = view_names or [n for n, v in repo.views.items() if v.offline]
    cores = threads or os.cpu_count() or 1
    with connect(threads=threads) as con, ThreadPoolExecutor(1) as pool:
        writer = pool if cores > 1 else None
        for name in names:
            plan = repo.plan(name)
            hop_cutoffs = cutoffs(plan) if callable(cutoffs) else (cutoffs or {})
            job = _ViewJob(repo, plan, store, con, include_late, dict(hop_cutoffs), writer)
            report.views.append(job.run(start, end, chunk_rows, progress, on_range))
    report.seconds = time.perf_counter() - began
    return report


class _ViewJob:
    """The backfill of one view: histogram, chunking, one query per chunk and hop."""

    def __init__(self, repo: Repo, plan: ViewPlan, store: OfflineStore,
                 con: duckdb.DuckDBPyConnection, include_late: bool,
                 cutoffs: dict[int, int], writer: ThreadPoolExecutor | None = None) -> None:
        if plan.batch_source is None:
            raise StoreError(f"view '{plan.name}': its stream source has no batch twin to "
                             "backfill from; add batch=BatchSource(...)")
        self.plan, self.store, self.con, self.cutoffs = plan, store, con, cutoffs
        self.compiler = DuckDBCompiler(plan)
        self.relation = relation_for(plan.batch_source, repo.config.resolve("."))
        self.align = math.lcm(DAY, *plan.hops)
        self.include_late = include_late
        self.writer = writer

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
            try:
                out.rows_read += self._chunk(a, b, out)
            finally:
                self.con.execute(f"DROP TABLE IF EXISTS {_EVENTS}")
            if bar is not None:
                bar.update(sum(c for d, c in days.items() if a <= d * DAY < b))
            if on_range is not None:
                on_range(self.plan.namespace, a, b)
        if bar is not None:
            bar.close()
        return out

    def _chunk(self, a: int, b: int, out: ViewBackfill) -> int:
        """Read and validate the chunk's events once (a temp table), compute every hop and
        the rows from it, stage each day's files, then publish them all and the coverage.
        Returns the number of events read."""
        events = self.compiler.events(self.relation, start=a, end=b,
                                      extra_where=self.info.where(a, b))
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {_EVENTS} AS {DUCKDB.render(events)}")
        n = int(self.con.sql(f"SELECT count(*) FROM {_EVENTS}").fetchall()[0][0])
        jobs: list[Future[list[Staged]]] = []
        covered: list[tuple[int | None, int]] = []
        for hop in self.plan.hops:
            cutoff = self.cutoffs.get(hop)
            if cutoff is not None and cutoff <= a:
                continue
            q = exp.select("*").from_(self.compiler.tiles_query(_events(), hop).subquery("t"))
            if cutoff is not None:
                q = q.where(exp.LT(this=col(TILE_START), expression=lit(cutoff)))
            # a written tile is complete, so coverage ends at the end of the last one
            covered_to = b if cutoff is None else min(b, -(-cutoff // hop) * hop)
            jobs.append(self._run(self._stage_tiles, hop, self._fetch(q.order_by(col(TILE_START))),
                                  a, covered_to, out))
            covered.append((hop, covered_to))
        if self.plan.projections:
            jobs.append(self._run(self._stage_rows, self._fetch(self._rows_query()), a, b, out))
            covered.append((None, b))
        staged = [s for job in jobs for s in job.result()]
        self.store.publish(staged)
        for hop, end in covered:
            self.store.add_coverage(self.plan, hop, a, end)
        return n

    def _run(self, fn: Callable[..., list[Staged]], *args: object) -> Future[list[Staged]]:
        """``fn(*args)`` on the writer thread if there is one, else here and now."""
        if self.writer is not None:
            return self.writer.submit(fn, *args)
        done: Future[list[Staged]] = Future()
        done.set_result(fn(*args))
        return done

    def _stage_tiles(self, hop: int, table: pa.Table, a: int, b: int,
                     out: ViewBackfill) -> list[Staged]:
        table = table.cast(tile_schema(self.plan, hop))
        return self._stage(hop, table, _int64(table.column(TILE_START)), a, b, out, set())

    def _stage_rows(self, table: pa.Table, a: int, b: int, out: ViewBackfill) -> list[Staged]:
        table = _rows_table(table, self.plan)
        ms = _int64(table.column(TS))
        dups = _duplicate_days(table, ms, [TS, *self.plan.key_names])
        return self._stage(None, table, ms, a, b, out, dups)

    def _rows_query(self) -> exp.Select:
        """Projection rows by ``_ts`` then keys (so equal (keys, ``_ts``) are adjacent),
        ``_ct`` NULL where missing (both still epoch ms)."""
        rows = self.compiler.rows_query(_events())
        ct = exp.Nullif(this=col(CT), expression=missing_created())
        cols = [col(k) for k in self.plan.key_names] + [col(TS), exp.alias_(ct, CT, quoted=True)]
        cols += [col(p.name) for p in self.plan.projections]
        order = [col(TS), *[col(k) for k in self.plan.key_names]]
        return exp.select(*cols).from_(rows.subquery("r")).order_by(*order)

    def _stage(self, hop: int | None, table: pa.Table, ms: np.ndarray, a: int, b: int,
               out: ViewBackfill, duplicate_days: set[int]) -> list[Staged]:
        """Stage one partition per day of [a, b) that has data (``table`` sorted by ``ms``)
        or already exists (replaced by an empty one); days without either stay absent
        (coverage says they are empty)."""
        day_of = np.floor_divide(ms, DAY)
        first, last = a // DAY, -(-b // DAY)
        days = {int(d) for d in day_of[np.r_[True, day_of[1:] != day_of[:-1]]]} if len(ms) else set()
        base = self.store.kind_dir(self.plan, hop)
        if base.is_dir():
            days |= {day_of_name(d.name.removeprefix("date=")) for d in base.glob("date=*")}
        staged = []
        for day in sorted(d for d in days if first <= d < last):
            lo, hi = np.searchsorted(day_of, [day, day + 1])
            part = table.slice(int(lo), int(hi - lo))
            staged.append(self.store.stage_partition(
                self.plan, hop, day, part, day * DAY, min((day + 1) * DAY, b),
                unique_key_ts=day not in duplicate_days))
            out.partitions += 1
            if hop is None:
                out.rows_written += part.num_rows
            else:
                out.tiles_written += part.num_rows
        return staged

    def _fetch(self, q: exp.Select) -> pa.Table:
        return self.con.sql(DUCKDB.render(q)).to_arrow_table()


def _events() -> exp.Select:
    return exp.select("*").from_(_EVENTS)


def _duplicate_days(table: pa.Table, ms: np.ndarray, columns: list[str]) -> set[int]:
    """Days holding two rows with equal ``columns`` (``table`` sorted by them): their rows
    partitions are marked so that readers break the tie (DESIGN §4.1). Keys are never NULL."""
    n = table.num_rows
    if n < 2:
        return set()
    same = None
    for name in columns:
        c = table.column(name)
        eq = pc.equal(c.slice(0, n - 1), c.slice(1))
        same = eq if same is None else pc.and_(same, eq)
    assert same is not None
    at = np.flatnonzero(same.to_numpy(zero_copy_only=False))
    return {int(d) for d in np.unique(np.floor_divide(ms[at], DAY))}


def _int64(values: pa.ChunkedArray) -> np.ndarray:
    """Epoch ms of an int64 or timestamp[ms] column as one numpy array."""
    return values.cast(pa.int64()).to_numpy() if len(values) else np.empty(0, np.int64)


def _rows_table(table: pa.Table, plan: ViewPlan) -> pa.Table:
    """Epoch-ms ``_ts``/``_ct`` as timestamp[ms, UTC] (a cast that keeps the values)."""
    ts_type = pa.timestamp("ms", tz="UTC")
    for name in (TS, CT):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, table.column(name).cast(pa.int64()).cast(ts_type))
    return table.cast(row_schema(plan), safe=False)


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
