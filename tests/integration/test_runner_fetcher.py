"""The runner's fetch process (braid_streaming/fetcher.py) on Kafka (Tansu) + Redis: a
killed fetch process is replaced without loss or double counting, and it never outlives its
runner. (That it decides like in-process cutting: test_runner_kafka_redis.py, run both ways.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from braid.store import FeatureStore
from braid.timeutil import MINUTE
from tests.integration.test_runner_kafka_redis import check, pushed
from tests.kafka_fixtures import Broker

pytest.importorskip("confluent_kafka")


def _fetchers(pid: int) -> list[int]:
    """The fetch processes among ``pid``'s children."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True, check=False).stdout
    found = []
    for child in (int(x) for x in out.split()):
        try:
            if b"braid_streaming.fetcher" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except FileNotFoundError:
            pass  # exited meanwhile (the ps itself)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_killed_fetch_process_is_replaced_without_loss(tmp_path: Path, redis_url: str,
                                                       tansu: Broker) -> None:
    root, fs, t0, evs = pushed(tmp_path, redis_url, tansu.bootstrap)
    killed: list[int] = []

    def kill_fetcher(view: str, hop: int | None, chunk: int) -> None:
        if not killed:  # after the first applied chunk: batches are cut ahead of it
            fetchers = _fetchers(os.getpid())
            assert len(fetchers) == 1
            os.kill(fetchers[0], signal.SIGKILL)
            killed.append(fetchers[0])

    with fs.stream_runner(max_batch=100, max_wait_ms=50, hook=kill_fetcher) as runner:
        runner.run(once=True, install_signals=False)
        assert killed and runner.sources[0].metrics.retries >= 1
        assert runner.sources[0].metrics.events == len(evs)
    check(FeatureStore(root), evs, t0 + 95 * MINUTE)


def test_fetch_process_exits_when_its_runner_is_killed(tmp_path: Path, redis_url: str,
                                                        tansu: Broker) -> None:
    root = pushed(tmp_path, redis_url, tansu.bootstrap)[0]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from braid.cli.main import main; main()", "--repo", str(root),
         "stream", "run", "--max-wait-ms", "50"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        fetchers: list[int] = []
        while not fetchers and time.monotonic() < deadline:
            time.sleep(0.2)
            fetchers = _fetchers(proc.pid)
        assert fetchers, "the runner started no fetch process"
        proc.kill()  # kill -9: no cleanup runs in the runner
        proc.wait(10)
        deadline = time.monotonic() + 10
        while _alive(fetchers[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(fetchers[0]), "the fetch process outlived its runner"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_fetch_process_closed_before_it_started_exits_quietly() -> None:
    """A runner that fails its start checks closes its fetch process before sending where
    to read: the child ends cleanly, without a trace on stderr."""
    from braid_streaming.fetcher import Fetcher

    fetcher = Fetcher("confluent")
    proc = fetcher._proc
    fetcher.close()
    assert proc.wait(30) == 0
