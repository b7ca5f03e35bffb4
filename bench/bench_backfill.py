"""Backfill throughput: source events read per second, and per core (target >= 1M/s/core).

Not a test. Runs the backfill with one DuckDB thread (events/s/core measured directly) and
with every core, ``--repeat`` times each (fresh offline store every time), and prints
medians, with the process CPU time (a busy machine disturbs it less than wall time). Also
prints the raw DuckDB scan + group-by of the same events as the baseline, so the overhead of
braid (compiled SQL, Parquet partitions, manifests) shows. The machine's load average is
printed before and after: on a shared machine, compare runs at similar load. Last, one more
backfill runs in a fresh process, whose peak resident memory is printed (the issue asks for
the peak memory of a 10M-event backfill: ``--rows 10000000``).

    .venv/bin/python bench/bench_backfill.py --rows 5000000 --repeat 5
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from braid.duck import connect
from braid.repo import load_repo
from braid_batch.backfill import backfill
from braid_batch.testing import make_repo

DAY = 86_400_000
START = 1_700_000_000_000 - 1_700_000_000_000 % DAY

DEFS = """
from braid.definitions import Aggregation, BatchSource, Entity, Feature, FeatureView
user = Entity(name="user", join_keys={"user_id": "int64"})
src = BatchSource(name="tx", path="data/tx.parquet", timestamp_field="ts",
                  schema={"user_id": "int64", "ts": "timestamp", "amount": "float64"})
stats = FeatureView(name="stats", entities=[user], source=src,
                    features=[Feature(name="amount", dtype="float64")],
                    aggregations=[Aggregation(function="count", window="1h"),
                                  Aggregation(column="amount", function="sum", window="1h"),
                                  Aggregation(column="amount", function="var", window="1d")])
"""


def generate(root: Path, rows: int, users: int, days: int) -> None:
    rng = np.random.default_rng(0)
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "user_id": rng.integers(0, users, rows),
        "ts": pa.array(START + rng.integers(0, days * DAY, rows)).cast(pa.timestamp("ms", tz="UTC")),
        "amount": rng.normal(100, 10, rows)}), root / "data" / "tx.parquet")


def raw_groupby(root: Path, threads: int) -> float:
    with connect(threads=threads) as con:
        began = time.perf_counter()
        con.sql(f"""SELECT user_id, epoch_ms(ts) // 300000 AS k, count(*), sum(amount)
                    FROM read_parquet('{root}/data/tx.parquet') GROUP BY ALL""").to_arrow_table()
        return time.perf_counter() - began


def _backfill_in_child(root: str) -> None:
    backfill(load_repo(root), progress=False)


def peak_rss_mb(root: Path) -> float:
    """Peak resident memory (MiB) of a backfill of every view, alone in a fresh process."""
    child = mp.get_context("spawn").Process(target=_backfill_in_child, args=(str(root),))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"the measured backfill failed (exit code {child.exitcode})")
    shutil.rmtree(root / "offline", ignore_errors=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = make_repo(Path(tmp) / "repo", DEFS)
        generate(root, args.rows, args.users, args.days)
        repo = load_repo(root)
        print(f"{args.rows:,} events, {args.users:,} users, {args.days} days, {cores} cores, "
              f"median of {args.repeat}; load average {load()}")
        for threads in sorted({1, cores}):
            runs, cpus, raws = [], [], []
            for _ in range(args.repeat):
                shutil.rmtree(root / "offline", ignore_errors=True)
                cpu = time.process_time()
                report = backfill(repo, progress=False, threads=threads)
                cpus.append(time.process_time() - cpu)
                runs.append(report.seconds)
                raws.append(raw_groupby(root, threads))
            seconds, raw = statistics.median(runs), statistics.median(raws)
            eps = report.rows_read / seconds
            print(f"threads={threads:<3} backfill {seconds:6.2f}s (min {min(runs):.2f}, max "
                  f"{max(runs):.2f}; CPU {statistics.median(cpus):.2f}s)  {eps:12,.0f} events/s  "
                  f"{eps / threads:12,.0f} "
                  f"events/s/core  (tiles {report.tiles_written:,}, rows "
                  f"{report.rows_written:,}); raw 1-hop group-by {raw:5.2f}s, ratio "
                  f"{seconds / raw:5.1f}x")
        shutil.rmtree(root / "offline", ignore_errors=True)
        source_mb = (root / "data" / "tx.parquet").stat().st_size / 2**20
        print(f"peak memory of one backfill in a fresh process: {peak_rss_mb(root):,.0f} MiB "
              f"(source Parquet {source_mb:,.0f} MiB)")
        print(f"load average {load()}")


if __name__ == "__main__":
    main()
