"""How the embedded runner cuts micro-batches (DESIGN §7): it waits for the first records
only, then takes what the log has and stops when the log is drained, up to ``max_batch``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from braid.store import FeatureStore
from braid_streaming.fetcher import LINGER_S
from braid_streaming.log import open_log
from braid_streaming.log.base import Record
from tests.integration.test_runner_repo import base_time, events, make_stream_repo


def test_a_drained_log_cuts_the_batch_without_waiting_for_max_wait(tmp_path: Path) -> None:
    root = make_stream_repo(tmp_path / "repo")
    fs = FeatureStore(root)
    fs.push("txns", events(base_time(), n=30))
    with open_log(fs.config.kafka, fs.config.root) as log:
        total = sum(log.end_offsets("txns").values())
    assert 20 < total < 40
    # a long max_wait: a runner that waited it out would poll long again and again
    with fs.stream_runner(max_wait_ms=30_000, max_batch=20) as runner:
        runner.start()
        source = runner.sources[0]
        polls: list[tuple[float, int]] = []
        real_poll = source.log.poll

        def poll(max_records: int = 10_000, timeout: float = 1.0) -> list[Record]:
            got = real_poll(max_records, timeout)
            polls.append((timeout, len(got)))
            return got

        source.log.poll = poll  # type: ignore[method-assign]
        sizes = [runner.step(), runner.step()]
    assert sizes == [20, total - 20]  # max_batch, then what was left
    first_wait, first_got = polls[0]
    assert first_wait > LINGER_S and first_got > 0
    later: list[Any] = [w for w, _ in polls[1:] if w > LINGER_S]
    # each batch waits long only for its first records; the second batch's first poll
    # waits long, every other poll lingers at most LINGER_S
    assert len(later) == 1
    assert polls[-1][1] == 0  # the last batch ended on an empty poll (drained log)
