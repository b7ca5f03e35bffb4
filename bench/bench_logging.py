"""Serving-log benchmark: online lookup latency with and without ``log=True``.

Builds a temporary copy of the example repository (SQLite online store, local log), then
times interleaved lookups of the ``fraud_v1`` service (15 features, 3 views) without logging
and with logging, and prints p50/p99 and their ratio, plus the logger's delivery counters and
the worker's sustained delivery rate. Not a test: nothing here asserts on time.

    .venv/bin/python bench/bench_logging.py --iters 3000 --rows 1
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from braid.examples.fraud import FraudDataSpec, generate
from braid.store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]
END = 1_767_225_600_000
NOW = END + 7 * 3_600_000


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--rows", type=int, default=1, help="entity rows per lookup")
    ap.add_argument("--events", type=int, default=20_000)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="braid-bench-log-"))
    try:
        for f in (ROOT / "feature_repo").glob("*.py"):
            shutil.copy(f, root / f.name)
        shutil.copy(ROOT / "feature_repo" / "braid.yaml", root / "braid.yaml")
        generate(FraudDataSpec(events=args.events, days=9, end_ms=END, seed=3), root / "data")
        store = FeatureStore(root)
        store.apply()
        store.backfill(progress=False)
        store.materialize(now=NOW)
        users = max(10, args.events // 40)
        rows = [[{"user_id": (i * args.rows + j) % users + 1, "merchant_id": j % 50 + 1}
                 for j in range(args.rows)] for i in range(args.iters)]
        for r in rows[:200]:  # warm both paths (read plan, logger thread, sink topic)
            store.get_online_features(r, service="fraud_v1", now=NOW)
            store.get_online_features(r, service="fraud_v1", now=NOW, log=True)
        store.serving_logger("fraud_v1").flush(60)
        plain: list[float] = []
        logged: list[float] = []
        for r in rows:  # interleaved, so both see the same machine state
            t0 = time.perf_counter()
            store.get_online_features(r, service="fraud_v1", now=NOW)
            t1 = time.perf_counter()
            store.get_online_features(r, service="fraud_v1", now=NOW, log=True)
            t2 = time.perf_counter()
            plain.append((t1 - t0) * 1e6)
            logged.append((t2 - t1) * 1e6)
        t3 = time.perf_counter()
        logger = store.serving_logger("fraud_v1")
        logger.flush(120)
        drain = time.perf_counter() - t3
        s = logger.stats()
        print(f"lookups: {args.iters} x {args.rows} entity row(s), service fraud_v1 "
              f"(15 features), SQLite online store, local log sink")
        for name, xs in (("log=False", plain), ("log=True", logged)):
            print(f"  {name:<10} p50 {statistics.median(xs):8.1f} us   p99 {pct(xs, 0.99):8.1f} us")
        print(f"  ratio      p50 {statistics.median(logged) / statistics.median(plain):.2f}x   "
              f"p99 {pct(logged, 0.99) / pct(plain, 0.99):.2f}x")
        print(f"logger: accepted {s['accepted']}, delivered {s['delivered']}, dropped "
              f"{s['dropped']}, sink errors {s['sink_errors']}; "
              f"tail drained in {drain * 1000:.0f} ms after the loop")
        t4 = time.perf_counter()
        n = store.flush_logs("fraud_v1")
        print(f"compaction to Parquet: {n} records in {time.perf_counter() - t4:.2f} s")
        logger.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
