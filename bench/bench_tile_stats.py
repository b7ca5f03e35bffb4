"""Cost of the stream's tile-close statistics: embedded runner throughput with them on vs off.

Run: ``python bench/bench_tile_stats.py [--n 100000] [--rounds 2]``.
Local log + SQLite, the runner tests' repository (three views; ``user_txn`` has six numeric
aggregations over a 10-minute hop and one over 1 hour). Each round streams the same ``n``
pushed events into a fresh repository twice, interleaved (statistics off, then on), and
prints events/s of each, their ratio, and how many tile closes were counted. The baseline is
the same runner without the statistics, in the same process. Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_runner import gen  # noqa: E402
from braid.store import FeatureStore  # noqa: E402
from braid.timeutil import HOUR, tile_start  # noqa: E402
from tests.integration.test_runner_repo import make_stream_repo  # noqa: E402


def stream(root: Path, n: int, tile_stats: bool) -> tuple[float, int]:
    """Events/s of ``stream run --once`` over ``n`` events, and the closes counted."""
    fs = FeatureStore(root)
    t0 = tile_start(int(time.time() * 1000) - 4 * HOUR, HOUR)
    evs = gen(n, t0)
    for lo in range(0, n, 50_000):
        fs.push("txns", evs[lo:lo + 50_000])
    t = time.perf_counter()
    with fs.stream_runner(max_wait_ms=20, tile_stats=tile_stats) as runner:
        runner.run(once=True, install_signals=False)
    rate = n / (time.perf_counter() - t)
    got = FeatureStore(root).stats("user_txn:count_1h")
    return rate, 0 if got is None else got.stats.n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            off, _ = stream(make_stream_repo(Path(tmp) / f"off{r}"), args.n, False)
            on, closes = stream(make_stream_repo(Path(tmp) / f"on{r}"), args.n, True)
            print(f"round {r}: runner {off:,.0f} ev/s without tile stats, {on:,.0f} ev/s with "
                  f"them (ratio {on / off:.2f}); {closes:,} closes of count_1h counted; "
                  f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
