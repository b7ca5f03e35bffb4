"""Materialize: offline store -> online store (DESIGN §6, §6.4).

Loads, per view, the latest projection row of every entity and the live tiles (those a read
at ``now`` can still need) owned by batch, i.e. with ``tile_start`` before the view's
ownership cutoff. Record batches stream from DuckDB into the online store's pipelined writes,
so memory stays bounded; re-running is idempotent (rows are last-write-wins, tiles absolute).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from braid.duck import connect
from braid.online import OnlineStore
from braid.plan import ViewPlan
from braid.repo import Repo
from braid_batch.offline import OfflineStore

BATCH_ROWS = 50_000


@dataclass
class ViewMaterialized:
    """What one view wrote."""

    view: str
    namespace: str
    rows: int = 0
    tiles: int = 0
    seconds: float = 0.0


@dataclass
class MaterializeReport:
    """Totals of one materialize run."""

    now: int
    views: list[ViewMaterialized] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(v.rows for v in self.views)

    @property
    def tiles(self) -> int:
        return sum(v.tiles for v in self.views)

    @property
    def seconds(self) -> float:
        return sum(v.seconds for v in self.views)

    def render(self) -> str:
        lines = [f"  {v.view:24} {v.rows:>10,} rows {v.tiles:>10,} tiles  {v.seconds:6.2f}s"
                 for v in self.views]
        rate = (self.rows + self.tiles) / self.seconds if self.seconds else 0.0
        lines.append(f"materialized {self.rows:,} rows and {self.tiles:,} tiles "
                     f"in {self.seconds:.2f}s ({rate:,.0f}/s)")
        return "\n".join(lines)


def _batches(reader: pa.RecordBatchReader) -> Iterator[pa.Table]:
    """One table per record batch, pulled as it is written (memory bounded by a batch)."""
    for batch in reader:
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


def materialize(repo: Repo, online: OnlineStore, view_names: list[str] | None = None,
                now: int | None = None, since: Mapping[str, int] | None = None,
                cutoffs: Callable[[ViewPlan], Mapping[int, int]] | None = None,
                progress: Callable[[str, int], None] | None = None) -> MaterializeReport:
    """Copy the latest rows and live tiles of views from the offline to the online store.

    Args:
        repo: the repository.
        online: the online store to write.
        view_names: views to load (default: every view with ``online=True``).
        now: the time reads will happen around (epoch ms; default: the clock). Tiles older
            than the widest window of their hop before ``now`` are not loaded.
        since: per namespace, only rows with ``_ts >= since`` (incremental mode).
        cutoffs: per view, hop -> ownership cutoff C; tiles with ``tile_start >= C`` belong
            to the streaming engine and are not written.
        progress: called with (view, written) after each batch.
    """
    now = int(time.time() * 1000) if now is None else now
    offline = OfflineStore.for_repo(repo)
    report = MaterializeReport(now=now)
    names = view_names or [n for n, v in repo.views.items() if v.online]
    con = connect()
    for name in names:
        plan = repo.plan(name)
        done = ViewMaterialized(view=name, namespace=plan.namespace)
        t0 = time.perf_counter()
        if plan.projections:
            rel = offline.latest_rows(con, plan)
            lo = (since or {}).get(plan.namespace)
            if lo is not None:
                rel = rel.filter(f'"_ts" >= {int(lo)}')
            for table in _batches(rel.to_arrow_reader(BATCH_ROWS)):
                online.write_rows(plan, table)  # last-write-wins: re-runs change nothing
                done.rows += table.num_rows
                if progress:
                    progress(name, done.rows + done.tiles)
        owned = cutoffs(plan) if cutoffs else {}
        for hop in plan.hops:
            rel = offline.live_tiles(con, plan, hop, now, owned.get(hop))
            for table in _batches(rel.to_arrow_reader(BATCH_ROWS)):
                online.write_tiles(plan, hop, table)
                done.tiles += table.num_rows
                if progress:
                    progress(name, done.rows + done.tiles)
        done.seconds = time.perf_counter() - t0
        report.views.append(done)
    con.close()
    return report
