"""The runner on Redis (private, appendonly) + Kafka (Tansu): same values as the reference; a
Redis restart mid-batch and a broker cut neither lose nor double count (DESIGN §7, §12)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from braid.store import FeatureStore
from braid.timeutil import MINUTE
from braid_streaming.log import open_log
from tests.conftest import RedisServer
from tests.integration.test_runner_repo import (
    MERCHANTS,
    USERS,
    assert_close,
    bad_records,
    base_time,
    events,
    expected,
    late_event,
    make_stream_repo,
    online,
    produce_bad,
)
from tests.kafka_fixtures import Broker, ProxiedBroker, unique_topic

pytest.importorskip("confluent_kafka")


def repo_on(tmp_path: Path, redis_url: str, bootstrap: str) -> Path:
    return make_stream_repo(tmp_path / "repo", {"type": "redis", "url": redis_url},
                            bootstrap=bootstrap, topic=unique_topic("txns"))


def pushed(tmp_path: Path, redis_url: str, bootstrap: str
           ) -> tuple[Path, FeatureStore, int, list[dict[str, Any]]]:
    """A repository on Redis + the broker with the shared event set pushed: (root, store,
    t0, events)."""
    root = repo_on(tmp_path, redis_url, bootstrap)
    t0 = base_time()
    evs = events(t0)
    fs = FeatureStore(root)
    fs.push("txns", evs)
    return root, fs, t0, evs


def check(fs: FeatureStore, evs: list[dict[str, Any]], t: int) -> None:
    assert_close(online(fs, "user_txn", "user_id", USERS, t),
                 expected(fs, "user_txn", evs, USERS, t))
    assert_close(online(fs, "merchant_big", "merchant_id", MERCHANTS, t),
                 expected(fs, "merchant_big", evs, MERCHANTS, t))
    assert_close(online(fs, "user_last", "user_id", USERS, t),
                 expected(fs, "user_last", evs, USERS, t))


@pytest.mark.parametrize("fetch_process", [True, False])
def test_redis_and_kafka_give_reference_values(tmp_path: Path, redis_url: str,
                                               tansu: Broker, fetch_process: bool) -> None:
    """Batches cut and decoded by the fetch process, or in the runner's own process, give
    the reference values and the same dead letters."""
    root, fs, t0, evs = pushed(tmp_path, redis_url, tansu.bootstrap)
    fs.push("txns", [late_event(t0)])
    produce_bad(fs, bad_records(t0))
    with fs.stream_runner(max_batch=150, max_wait_ms=50,
                          fetch_process=fetch_process) as runner:
        source = runner.sources[0]
        assert (source.fetcher is not None) == fetch_process
        runner.run(once=True, install_signals=False)
        assert source.metrics.dlq == {r: 1 for r in ["late", *(r for _, r in bad_records(t0))]}
        assert source.metrics.events == len(evs) + 1 + len(bad_records(t0))
        assert source.metrics.batches > 1  # cut into several batches, each committed
    check(FeatureStore(root), evs, t0 + 95 * MINUTE)


def test_redis_restart_mid_batch_does_not_double_count(tmp_path: Path, redis_url: str,
                                                       redis_server: RedisServer,
                                                       tansu: Broker) -> None:
    root, fs, t0, evs = pushed(tmp_path, redis_url, tansu.bootstrap)
    chunks = {"n": 0}

    def restart_redis(view: str, hop: int | None, chunk: int) -> None:
        chunks["n"] += 1
        if chunks["n"] == 5:  # Redis goes down for a second: writes fail, the batch retries
            redis_server.stop()
            threading.Timer(1.0, redis_server.start).start()

    with fs.stream_runner(chunk_keys=3, hook=restart_redis) as runner:
        runner.run(once=True, install_signals=False)
        assert runner.sources[0].metrics.retries >= 1
    check(FeatureStore(root), evs, t0 + 95 * MINUTE)


def test_broker_cut_resumes_without_loss(tmp_path: Path, redis_url: str,
                                         kafka_behind_proxy: ProxiedBroker) -> None:
    root = repo_on(tmp_path, redis_url, kafka_behind_proxy.bootstrap)
    t0 = base_time()
    evs = events(t0)
    fs = FeatureStore(root)
    fs.push("txns", evs[:300])
    topic = fs.repo.sources["txns"].topic  # type: ignore[union-attr]
    with open_log(fs.config.kafka, root) as log:
        half = log.end_offsets(topic)
    runner = fs.stream_runner(max_batch=40, max_wait_ms=20)
    runner.start()
    done = threading.Thread(target=runner.run, kwargs={"install_signals": False}, daemon=True)
    done.start()
    source = runner.sources[0]
    _wait(lambda: source.caught_up(half), 60)
    kafka_behind_proxy.proxy.cut()
    # The second half is pushed during the outage: the producer retries until it is back.
    pusher = threading.Thread(target=fs.push, args=("txns", evs[300:]), daemon=True)
    pusher.start()
    time.sleep(2.0)
    kafka_behind_proxy.proxy.restore()
    pusher.join(120)
    with open_log(fs.config.kafka, root) as log:
        target = log.end_offsets(topic)
    assert sum(target.values()) == len(evs)
    _wait(lambda: source.caught_up(target), 120)
    runner.stop()
    done.join(60)
    runner.close()
    assert source.state.offsets == target
    check(FeatureStore(root), evs, t0 + 95 * MINUTE)


def _wait(cond: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)
