"""Flink path freshness: event produced -> its tile in the online store, at a steady rate.

Run: ``python bench/bench_flink.py [--rate 100] [--seconds 20]``. Uses BRAID_KAFKA_BOOTSTRAP if
set, else a private Tansu broker. Starts the managed local Flink run (``flink run --local``'s
API) and the online writer (``stream sink``'s TileSink, SQLite) in this process; every event
has a new entity, so its tile's first write marks its arrival. Prints p50/p99 freshness and,
as the raw baseline measured in the same run, the broker's produce -> consume latency (the
difference is Flink's mini-batch (1 s) + sink buffer flush (1 s) + the writer). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from braid.online import SqliteOnlineStore  # noqa: E402
from braid.repo import load_repo  # noqa: E402
from braid_streaming.flink.manage import (  # noqa: E402
    FlinkPaths,
    compile_job,
    ensure_topics,
    start_local,
    stop,
)
from braid_streaming.flink.udafs import build_udaf_jar  # noqa: E402
from braid_streaming.log import ConfluentLog  # noqa: E402
from braid_streaming.sink import MemoryOffsets, TileSink  # noqa: E402

FEATURES = '''
from braid import Aggregation, Entity, FeatureView, StreamSource

user = Entity(name="user", join_keys={"user_id": "int64"})
txn = StreamSource(name="txn", topic="bench.txn", timestamp_field="ts", allowed_lateness="10m",
                   schema={"user_id": "int64", "ts": "int64", "amount": "float64"})
user_txn = FeatureView(name="user_txn", entities=[user], source=txn, aggregations=[
    Aggregation(function="count", window="1h"),
    Aggregation(column="amount", function="sum", window="1h"),
])
'''


class Timed(SqliteOnlineStore):
    """Records when each entity's first tile was written."""

    seen: dict[int, float]

    def write_tiles_monotonic(self, plan: Any, hop: int, table: Any) -> int:
        out = super().write_tiles_monotonic(plan, hop, table)
        now = time.monotonic()
        for u in table.column("user_id").to_pylist():
            self.seen.setdefault(u, now)
        return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


def raw_latency(bootstrap: str, n: int = 200) -> list[float]:
    """Produce -> consume latency of single records on the same broker (the raw limit)."""
    topic = f"bench.raw.{os.getpid()}"
    out: list[float] = []
    with ConfluentLog(bootstrap) as log:
        log.create_topic(topic, partitions=1)
        log.assign(topic, [0], {0: 0})
        for i in range(n):
            t = time.monotonic()
            log.produce(topic, [(None, b"x", 1 + i)])
            log.flush()
            while not log.poll(max_records=1, timeout=1.0):
                pass
            out.append(time.monotonic() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=100.0, help="events per second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0,
                    help="seconds after the job starts whose events are left out of the "
                         "steady-state percentiles (JVM and operator warm-up)")
    args = ap.parse_args()
    broker = None
    bootstrap = os.environ.get("BRAID_KAFKA_BOOTSTRAP")
    if not bootstrap:
        from tests.conftest import free_port
        from tests.kafka_fixtures import start_tansu

        broker = start_tansu(free_port())
        bootstrap = broker.bootstrap
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "braid.yaml").write_text("project: bench\n")
        (root / "features.py").write_text(FEATURES)
        plan = load_repo(root).plan("user_txn")
        paths = FlinkPaths(root / "data" / "flink")
        log = ConfluentLog(bootstrap)
        log.create_topic("bench.txn", partitions=2)
        ensure_topics(log, "bench", [plan])
        job = compile_job("bench", [plan], bootstrap, cutoffs={}, paths=paths)
        t = time.monotonic()
        start_local(paths, job, build_udaf_jar())
        print(f"flink run --local: job running after {time.monotonic() - t:.1f} s")
        store = Timed(root / "online.db")
        store.seen = {}
        sink = TileSink(store, [plan], ConfluentLog(bootstrap), MemoryOffsets())
        done = threading.Event()
        worker = threading.Thread(target=sink.run, args=(done.is_set, 10_000, 0.05))
        worker.start()
        sent: dict[int, float] = {}
        try:
            n = int(args.rate * args.seconds)
            start = time.monotonic()
            for i in range(n):
                while time.monotonic() < start + i / args.rate:
                    time.sleep(0.0005)
                now_ms = int(time.time() * 1000)
                row = {"user_id": i, "ts": now_ms, "amount": 1.0}
                log.produce("bench.txn", [(str(i).encode(), json.dumps(row).encode(), now_ms)])
                log.flush()
                sent[i] = time.monotonic()
            deadline = time.monotonic() + 30
            while len(store.seen) < n and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            done.set()
            worker.join()
            stop(paths)
        fresh = [store.seen[u] - sent[u] for u in sent if u in store.seen]
        first = int(args.rate * args.warmup)
        steady = [store.seen[u] - sent[u] for u in sent if u in store.seen and u >= first]
        raw = raw_latency(bootstrap)
        log.close()
        print(f"events {len(sent)} at {args.rate:.0f}/s; tiles seen {len(fresh)}")
        print(f"freshness (produce -> online tile): p50 {pct(fresh, 0.5):.0f} ms, "
              f"p99 {pct(fresh, 0.99):.0f} ms, max {max(fresh, default=0) * 1000:.0f} ms")
        print(f"steady state (after {args.warmup:.0f} s):  p50 {pct(steady, 0.5):.0f} ms, "
              f"p99 {pct(steady, 0.99):.0f} ms")
        print(f"raw broker produce -> consume:      p50 {pct(raw, 0.5):.1f} ms, "
              f"p99 {pct(raw, 0.99):.1f} ms")
        print(f"ratio p50 flink path / raw: {pct(fresh, 0.5) / pct(raw, 0.5):.0f}x")
    if broker is not None:
        broker.stop()


if __name__ == "__main__":
    main()
