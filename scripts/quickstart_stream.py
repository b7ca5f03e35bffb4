"""Quickstart, streaming part: hand the recent tiles to the stream, run the embedded runner on
the local log (no broker), push one transaction and watch the online feature change.

Then log-and-wait: serve lookups with logging, let chargeback labels arrive, and build a
training set from exactly what serving saw.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from braid.store import FeatureStore
from braid.timeutil import DAY, HOUR


def stream_demo(store: FeatureStore) -> None:
    from braid_streaming.runner import handoff

    now = int(time.time() * 1000)
    for view in ("user_txn_stats", "merchant_risk"):
        handoff(store, view, at=now)
    runner = store.stream_runner(max_wait_ms=20, say=lambda line: None)
    runner.start()
    thread = threading.Thread(target=runner.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    ref = ["user_txn_stats:amount_count_10m", "user_txn_stats:amount_sum_10m"]

    def read() -> dict[str, list[object]]:
        return store.get_online_features([{"user_id": 1}], features=ref).to_dict()

    before = read()
    print(f"before push: {before}")
    pushed = time.perf_counter()
    store.push("transactions", [{"txn_id": "quickstart-1", "user_id": 1, "merchant_id": 3,
                                 "amount": 125.0, "country": "US", "is_online": True,
                                 "ts": int(time.time() * 1000)}])
    while read()["amount_count_10m"] == before["amount_count_10m"]:
        if time.perf_counter() - pushed > 30:
            sys.exit("the pushed event did not reach the online store within 30 s")
        time.sleep(0.005)
    latency_ms = (time.perf_counter() - pushed) * 1000
    print(f"after push:  {read()}  ({latency_ms:.0f} ms from push to online)")
    runner.stop()
    thread.join(30)
    runner.close()


def log_and_wait_demo(store: FeatureStore, root: Path) -> None:
    now = int(time.time() * 1000)
    users = [{"user_id": u, "merchant_id": 3} for u in range(1, 9)]
    result = store.get_online_features(users, service="fraud_v1", log=True)
    store.flush_logs("fraud_v1")
    print(f"logged {len(result.request_ids)} lookups (request ids {result.request_ids[0][:8]}..)")
    # Fast-forward: chargebacks for users 2 and 5 arrive within the 7-day maturity window.
    labels = pa.table({
        "user_id": pa.array([2, 5], pa.int64()),
        "is_chargeback": pa.array([1, 1], pa.int64()),
        "reported_at": pa.array([now + 2 * DAY, now + 3 * DAY]).cast(pa.timestamp("ms", tz="UTC")),
    })
    pq.write_table(labels, root / "data/chargebacks/part-quickstart.parquet")
    training = store.get_training_set_from_logs("fraud_v1", cutoff=now + 7 * DAY + HOUR)
    frame = training.to_pandas()
    cols = ["user_id", "amount_sum_1h", "credit_limit", "is_chargeback", "origin"]
    print(f"training set from logs as of cutoff now+7d1h: {len(frame)} rows")
    print(frame[cols].to_string(index=False))


if __name__ == "__main__":
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else "feature_repo")
    fs = FeatureStore(repo)
    part = sys.argv[2] if len(sys.argv) > 2 else "stream"
    if part == "stream":
        stream_demo(fs)
    else:
        log_and_wait_demo(fs, repo)
