"""Embedded runner throughput and freshness, against the raw consume rate of the same log.

Run: ``python bench/bench_runner.py [--n 200000] [--rate 10000] [--seconds 10]``.
Setups: the local log + SQLite, and confluent-kafka (a private Tansu, or
BRAID_KAFKA_BOOTSTRAP) + a private appendonly redis-server; for each, events/s of
``stream run --once`` over ``n`` pushed JSON events (3 views: two windowed aggregations over
two hops, one projection) vs. the raw poll rate of the same log in the same run. Both clocks
start with the client set up: the runner's construction is timed and printed apart
(``start``), and its fetch process gets ``WARM_S`` to start its interpreter; the runner's
start (state checks, assignment) and every read are on the clock. Each throughput line is
followed by events per CPU-second of the runner's process, and of it and its fetch process
together (what "on one core" would allow). Then freshness (commit
time - event time) p50/p99 at a steady ``rate`` events/s pushed by a producer process (``--inproc-push``: a thread of the runner process). Last, kafka-python +
Redis: runner events/s against raw kafka-python consume (throughput only). The runner keeps
the tile-close statistics of aggregated features, as ``stream run`` does by default;
``--no-tile-stats`` measures it without them, ``--cache-keys 0`` without its tile cache
(every merge then reads the stored tiles back), ``--no-fetch-process`` with Kafka batches
read and decoded in the runner's own process (by default its fetch process does that ahead
of the batch being applied, on a second core), ``--one-core`` with the runner and its fetch
process pinned to one CPU core. Not a test.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from braid.store import FeatureStore  # noqa: E402
from braid.timeutil import HOUR, tile_start  # noqa: E402
from braid_streaming.log import open_log  # noqa: E402
from tests.integration.test_runner_repo import make_stream_repo  # noqa: E402


def gen(n: int, t0: int, users: int = 10_000) -> list[dict[str, Any]]:
    rnd = random.Random(1)
    return [{"user_id": rnd.randrange(users), "merchant_id": rnd.randrange(500),
             "amount": round(rnd.uniform(1, 200), 2), "ts": t0 + i * 3 * HOUR // n}
            for i in range(n)]


#: Runner options of every run (``--no-tile-stats`` sets ``tile_stats=False``).
OPTIONS: dict[str, Any] = {}
#: How the bench runs them (``--one-core`` sets ``one_core``).
OPTIONS_BENCH: dict[str, Any] = {}
#: Seconds the runner's fetch process gets to start its interpreter before the throughput
#: clock starts; the runner's construction is timed and printed apart.
WARM_S = 1.5
#: How long each throughput run's runner took to construct (s).
STARTS: list[float] = []
#: Per throughput run: events per CPU-second of the runner's process, and of it and its
#: fetch process together (None without one).
CPU: list[tuple[float, float | None]] = []


def raw_consume(fs: FeatureStore, n: int) -> float:
    """Records/s of a bare assign + poll loop over the source topic."""
    topic = fs.repo.sources["txns"].topic  # type: ignore[union-attr]
    with open_log(fs.config.kafka, fs.config.root) as log:
        log.assign(topic, list(range(log.partitions(topic))))
        got, t = 0, time.perf_counter()
        while got < n:
            got += len(log.poll(50_000, timeout=1.0))
        return got / (time.perf_counter() - t)


def child_cpu_s(runner: Any) -> float:
    """CPU seconds used so far by the runner's fetch process (0 without one)."""
    fetcher = runner.sources[0].fetcher
    if fetcher is None:
        return 0.0
    fields = Path(f"/proc/{fetcher._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def throughput(root: Path, n: int) -> tuple[float, float]:
    fs = FeatureStore(root)
    t0 = tile_start(int(time.time() * 1000) - 4 * HOUR, HOUR)
    evs = gen(n, t0)
    for lo in range(0, n, 50_000):
        fs.push("txns", evs[lo:lo + 50_000])
    raw = raw_consume(fs, n)
    every = os.sched_getaffinity(0)
    if OPTIONS_BENCH.get("one_core"):  # the runner and its fetch process (which inherits it)
        pin({min(every)})  # share one core; the broker and Redis keep every core
    try:
        return _timed_run(fs, n, raw)
    finally:
        pin(every)


def pin(cores: set[int]) -> None:
    """Every thread of this process (and the processes it starts next) on ``cores``."""
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), cores)


def _timed_run(fs: FeatureStore, n: int, raw: float) -> tuple[float, float]:
    t = time.perf_counter()
    with fs.stream_runner(max_batch=50_000, max_wait_ms=200, **OPTIONS) as runner:
        started = time.perf_counter() - t
        # as raw_consume's, the clock starts with the client set up: the fetch process has
        # started its interpreter and imported its modules (it reads nothing before run()
        # starts the runner and tells it where to read)
        time.sleep(WARM_S)
        t, cpu, child = time.perf_counter(), time.process_time(), child_cpu_s(runner)
        done = runner.run(once=True, install_signals=False)
        rate = done / (time.perf_counter() - t)
        cpu, child = time.process_time() - cpu, child_cpu_s(runner) - child
    STARTS.append(started)
    CPU.append((done / cpu, done / (cpu + child) if child else None))
    return rate, raw


def _push_steady(root: str, rate: int, seconds: float, out: Any) -> None:
    """Push events stamped with the current time at ``rate`` events/s through one producer;
    puts (pushed, achieved rate) on ``out``."""
    from braid_streaming.push import push
    from braid_streaming.runner import source_key_fields

    fs = FeatureStore(Path(root))
    rnd = random.Random(2)
    source, keys = fs.repo.sources["txns"], source_key_fields(fs.repo, "txns")
    log = open_log(fs.config.kafka, fs.config.root)  # one producer for the whole run
    chunk, pushed, start = rate // 100, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        now = int(time.time() * 1000)
        push(log, source, [{"user_id": rnd.randrange(10_000), "merchant_id": rnd.randrange(500),
                          "amount": 1.0, "ts": now} for _ in range(chunk)], keys)
        pushed += chunk
        sleep = start + pushed / rate - time.perf_counter()
        if sleep > 0:
            time.sleep(sleep)
    achieved = pushed / (time.perf_counter() - start)
    log.close()
    out.put((pushed, achieved))


def print_cpu() -> None:
    own, both = CPU[-1]
    print(f"{'':28} per CPU-second: {own:,.0f} events in the runner's process" + (
        f", {both:,.0f} counting its fetch process" if both else ""))


def freshness(root: Path, rate: int, seconds: float, inproc: bool = False
              ) -> tuple[float, float, float]:
    """p50, p99 of commit - event time (ms) at a steady push rate, and the achieved rate.

    The producer runs in its own process (as producers do), so it does not share the
    runner's GIL; ``inproc`` pushes from a thread of the runner's process instead."""
    fs = FeatureStore(root)
    runner = fs.stream_runner(max_batch=50_000, max_wait_ms=50, **OPTIONS)
    runner.start()
    thread = threading.Thread(target=runner.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    if inproc:
        box: queue.Queue[tuple[int, float]] = queue.Queue()
        _push_steady(str(root), rate, seconds, box)
    else:
        ctx = mp.get_context("spawn")
        box = ctx.Queue()  # type: ignore[assignment]
        proc = ctx.Process(target=_push_steady, args=(str(root), rate, seconds, box))
        proc.start()
    pushed, achieved = box.get(timeout=seconds + 120)
    if not inproc:
        proc.join(60)
    time.sleep(1.0)
    runner.stop()
    thread.join(60)
    runner.close()
    delays = np.array(runner.sources[0].metrics.delays_ms[-pushed:])
    return float(np.percentile(delays, 50)), float(np.percentile(delays, 99)), achieved


def report(name: str, rate: float, raw: float, fresh: tuple[float, float, float]) -> None:
    print(f"{name:28} runner {rate:>10,.0f} ev/s   raw consume {raw:>10,.0f} rec/s   "
          f"ratio {rate / raw:5.2f}   (start {STARTS[-1]:.2f} s)")
    print_cpu()
    print(f"{'':28} freshness at {fresh[2]:,.0f} ev/s: p50 {fresh[0]:.0f} ms  "
          f"p99 {fresh[1]:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--skip-kafka", action="store_true")
    ap.add_argument("--inproc-push", action="store_true",
                    help="push from a thread of the runner's process (shares its GIL)")
    ap.add_argument("--no-tile-stats", action="store_true",
                    help="runner without the stream's tile-close statistics (on by default)")
    ap.add_argument("--no-fetch-process", action="store_true",
                    help="read and decode Kafka batches in the runner's process (default: in "
                    "its fetch process, ahead of the batch being applied)")
    ap.add_argument("--cache-keys", type=int, default=None,
                    help="the runner's tile cache size (default: stream run's; 0: no cache, "
                    "every merge reads the stored tiles back)")
    ap.add_argument("--one-core", action="store_true",
                    help="pin the throughput runs' runner and fetch process to one CPU core "
                    "(the broker and Redis started before keep every core)")
    args = ap.parse_args()
    OPTIONS_BENCH["one_core"] = args.one_core
    OPTIONS["tile_stats"] = not args.no_tile_stats
    OPTIONS["fetch_process"] = not args.no_fetch_process
    if args.cache_keys is not None:
        OPTIONS["cache_keys"] = args.cache_keys
    cache = "default" if args.cache_keys is None else f"{args.cache_keys:,} keys"
    print(f"tile cache {cache}; "
          f"tile-close statistics {'on' if OPTIONS['tile_stats'] else 'off'}; Kafka fetch "
          f"process {'on' if OPTIONS['fetch_process'] else 'off'}; "
          f"{'runner pinned to one core; ' if args.one_core else ''}load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        local = make_stream_repo(Path(tmp) / "local")
        rate, raw = throughput(local, args.n)
        fresh_root = make_stream_repo(Path(tmp) / "local_fresh")
        report("local log + SQLite", rate, raw,
               freshness(fresh_root, args.rate, args.seconds, args.inproc_push))
        if not args.skip_kafka:
            kafka_redis(Path(tmp), args)


def kafka_redis(tmp: Path, args: argparse.Namespace) -> None:
    from bench.servers import kafka_bootstrap, private_redis
    from tests.kafka_fixtures import unique_topic

    with private_redis(tmp / "redis") as redis, kafka_bootstrap() as bootstrap:
        root = make_stream_repo(tmp / "kafka", {"type": "redis", "url": redis.url},
                                bootstrap=bootstrap, topic=unique_topic("bench"))
        rate, raw = throughput(root, args.n)
        fresh_root = make_stream_repo(tmp / "kafka_fresh",
                                      {"type": "redis", "url": redis.url[:-1] + "1"},
                                      bootstrap=bootstrap, topic=unique_topic("bench"))
        report("confluent (Tansu) + Redis", rate, raw,
               freshness(fresh_root, args.rate, args.seconds, args.inproc_push))
        py_root = make_stream_repo(tmp / "kafka_python",
                                   {"type": "redis", "url": redis.url[:-1] + "2"},
                                   bootstrap=bootstrap, topic=unique_topic("bench"))
        config = py_root / "braid.yaml"
        config.write_text(config.read_text().replace(f"bootstrap: {bootstrap}\n",
                                                     f"bootstrap: {bootstrap}\n"
                                                     "  client: kafka-python\n"))
        rate, raw = throughput(py_root, args.n)
        print(f"{'kafka-python (Tansu) + Redis':28} runner {rate:>10,.0f} ev/s   raw consume "
              f"{raw:>10,.0f} rec/s   ratio {rate / raw:5.2f}   (start {STARTS[-1]:.2f} s)")
        print_cpu()


if __name__ == "__main__":
    main()
