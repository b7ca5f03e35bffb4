"""A pushed event changes an online feature within about a second: a running runner (thread)
applies it and ``get_online_features`` sees the new count. The latency is measured and
printed; only a generous timeout is asserted (no timed assertion), plus graceful stop and
the Prometheus text."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from braid.store import FeatureStore
from braid_streaming.runner import runner_metrics
from tests.integration.test_runner_repo import make_stream_repo


def test_pushed_event_reaches_online_features(tmp_path: Path) -> None:
    root = make_stream_repo(tmp_path / "repo")
    fs = FeatureStore(root)
    now = int(time.time() * 1000)
    fs.push("txns", [{"user_id": 7, "merchant_id": 100, "amount": 5.0, "ts": now - 1000}])
    lines: list[str] = []
    runner = fs.stream_runner(max_wait_ms=50, say=lines.append, status_every_s=0.2)
    runner.start()
    thread = threading.Thread(target=runner.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()

    def count() -> int:
        res = fs.get_online_features([{"user_id": 7}], ["user_txn:count_1h"])
        return int(res.to_dict()["count_1h"][0])

    deadline = time.monotonic() + 30
    while count() != 1:
        assert time.monotonic() < deadline, "the first event never reached the online store"
        time.sleep(0.01)
    pushed = time.perf_counter()
    fs.push("txns", [{"user_id": 7, "merchant_id": 100, "amount": 6.0,
                      "ts": int(time.time() * 1000)}])
    while count() != 2:
        assert time.perf_counter() - pushed < 30, "the pushed event never reached online"
        time.sleep(0.005)
    latency = time.perf_counter() - pushed
    print(f"push -> online latency {latency * 1000:.0f} ms")
    text = runner_metrics()
    runner.stop()
    thread.join(30)
    assert not thread.is_alive()
    runner.close()
    assert fs.get_online_features([{"user_id": 7}], ["user_txn:amount_sum_1h"]
                                  ).to_dict()["amount_sum_1h"] == [11.0]
    assert 'braid_runner_events_total{runner="' in text
    assert "braid_runner_freshness_seconds" in text
    assert any("ev/s" in line and "freshness" in line for line in lines)
