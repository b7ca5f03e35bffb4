"""One contract for every Log implementation (DESIGN §7): local SQLite, confluent-kafka and
kafka-python against a Tansu broker."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from braid_streaming.log import (
    LocalLog,
    Log,
    LogError,
    OffsetRangeError,
    Record,
    UnknownTopicError,
    partition_for,
)
from tests.kafka_fixtures import Broker, ProxiedBroker, unique_topic

IMPLS = ["local", "confluent", "kafka-python"]
Factory = Callable[[], Log]


def _make(kind: str, where: str) -> Log:
    if kind == "local":
        return LocalLog(where)
    if kind == "confluent":
        from braid_streaming.log.confluent import ConfluentLog

        return ConfluentLog(where, timeout=20.0)
    from braid_streaming.log.kafka_python import KafkaPythonLog

    return KafkaPythonLog(where, timeout=20.0)


@pytest.fixture(params=IMPLS)
def new_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """A factory of fresh Log instances over one log (a directory or the session's broker)."""
    kind = request.param
    where = str(tmp_path / "log") if kind == "local" else request.getfixturevalue(
        "tansu").bootstrap
    opened: list[Log] = []

    def factory() -> Log:
        log = _make(kind, where)
        opened.append(log)
        return log

    yield factory
    for log in opened:
        log.close()


def poll_n(log: Log, n: int, limit: float = 30.0) -> list[Record]:
    """Poll until ``n`` records came (fails the test if they do not within ``limit`` s)."""
    out: list[Record] = []
    deadline = time.monotonic() + limit
    while len(out) < n and time.monotonic() < deadline:
        out += log.poll(max_records=1000, timeout=0.5)
    assert len(out) == n, f"expected {n} records, got {len(out)}"
    return out


def keyed(n: int, keys: int = 10, t0: int = 1_700_000_000_000) -> list[tuple[bytes, bytes, int]]:
    return [(b"user-%d" % (i % keys), b"v%d" % i, t0 + i) for i in range(n)]


def test_produce_poll_order_and_keyed_partitions(new_log: Factory) -> None:
    log = new_log()
    topic = unique_topic()
    log.create_topic(topic, 3)
    assert log.partitions(topic) == 3
    recs = keyed(300)
    log.produce(topic, recs[:150])
    log.produce(topic, recs[150:])
    log.flush()
    log.assign(topic, [0, 1, 2], {0: 0, 1: 0, 2: 0})
    got = poll_n(log, 300)
    assert log.poll(max_records=10, timeout=0.2) == []
    by_part: dict[int, list[Record]] = {}
    for r in got:
        assert r.topic == topic
        assert r.partition == partition_for(r.key, 3)  # type: ignore[arg-type]
        by_part.setdefault(r.partition, []).append(r)
    assert len(by_part) > 1
    for p, rs in by_part.items():
        assert [r.offset for r in rs] == list(range(len(rs)))
        expected = [(k, v, ts) for k, v, ts in recs if partition_for(k, 3) == p]
        assert [(r.key, r.value, r.timestamp_ms) for r in rs] == expected
    assert log.position(topic) == {p: len(rs) for p, rs in by_part.items()} | {
        p: 0 for p in range(3) if p not in by_part}
    assert log.end_offsets(topic) == {p: len(by_part.get(p, [])) for p in range(3)}


def test_explicit_partition_and_unkeyed(new_log: Factory) -> None:
    log = new_log()
    topic = unique_topic()
    log.create_topic(topic, 2)
    log.produce(topic, [(b"a", b"1", 1), (b"b", b"2", 2)], partition=1)
    log.produce(topic, [(None, b"x%d" % i, 3) for i in range(4)])
    log.flush()
    assert log.end_offsets(topic) == {0: 2, 1: 4}
    assert [r.value for r in log.read_range(topic, 1, 0, 2)] == [b"1", b"2"]
    with pytest.raises(LogError, match="partitions 0..1"):
        log.produce(topic, [(None, b"z", 0)], partition=2)


def test_end_offsets_exact_across_batches(new_log: Factory) -> None:
    log = new_log()
    topic = unique_topic()
    log.create_topic(topic, 1)
    for chunk in range(5):
        log.produce(topic, [(None, b"%d" % i, i) for i in range(chunk * 200, chunk * 200 + 200)])
        if chunk % 2:
            log.flush()
    log.flush()
    assert log.end_offsets(topic) == {0: 1000}
    assert [r.offset for r in log.read_range(topic, 0, 990, 1000)] == list(range(990, 1000))


def test_produce_sealed_makes_the_watermark_exact(new_log: Factory) -> None:
    log = new_log()
    topic = unique_topic()
    log.create_topic(topic, 2)
    log.produce_sealed(topic, keyed(500))
    ends = log.end_offsets(topic)
    assert sum(ends.values()) == 500
    if hasattr(log, "_watermarks"):  # the broker's own number now equals the true end
        assert {p: log._watermarks(topic, p)[1] for p in ends} == ends


def test_offsets_for_times(new_log: Factory) -> None:
    log = new_log()
    topic = unique_topic()
    log.create_topic(topic, 2)
    ts = [50, 10, 70, 30, 70, 90, 20, 100, 60, 80]  # out of order, duplicates
    log.produce(topic, [(None, b"%d" % i, t) for i, t in enumerate(ts)], partition=0)
    log.produce(topic, [(None, b"q", 5)], partition=1)
    log.flush()
    for target in (0, 10, 11, 50, 51, 70, 95, 100, 101, 10_000):
        want = next((o for o, t in enumerate(ts) if t >= target), len(ts))
        got = log.offsets_for_times(topic, target)
        assert got[0] == want, f"t={target}"
        assert got[1] == (0 if target <= 5 else 1)


def test_read_range(new_log: Factory) -> None:
    log = new_log()
    topic = unique_topic()
    log.create_topic(topic, 1)
    log.produce(topic, [(b"k", b"%d" % i, 1000 + i) for i in range(100)])
    log.flush()
    rs = log.read_range(topic, 0, 10, 50)
    assert [r.offset for r in rs] == list(range(10, 50))
    assert [r.value for r in rs] == [b"%d" % i for i in range(10, 50)]
    assert [r.timestamp_ms for r in rs] == list(range(1010, 1050))
    assert log.read_range(topic, 0, 5, 5) == []
    with pytest.raises(OffsetRangeError):
        log.read_range(topic, 0, 90, 101)


def test_timestamps_below_one_are_stored_as_one(new_log: Factory) -> None:
    log = new_log()
    topic = unique_topic()
    log.create_topic(topic, 1)
    log.produce(topic, [(None, b"a", 0), (None, b"b", -86_400_000), (None, b"c", 7)])
    log.flush()
    assert [r.timestamp_ms for r in log.read_range(topic, 0, 0, 3)] == [1, 1, 7]


def test_restart_reader_from_stored_offsets(new_log: Factory) -> None:
    writer = new_log()
    topic = unique_topic()
    writer.create_topic(topic, 2)
    recs = keyed(200, keys=7)
    writer.produce(topic, recs[:120])
    writer.flush()
    first = new_log()
    first.assign(topic, [0, 1])
    seen = poll_n(first, 120)
    stored = first.position(topic)
    first.close()
    writer.produce(topic, recs[120:])
    writer.flush()
    second = new_log()
    second.assign(topic, [0, 1], stored)
    rest = poll_n(second, 80)
    assert second.poll(max_records=10, timeout=0.2) == []
    got = sorted((r.partition, r.offset, r.value) for r in seen + rest)
    assert len(set(got)) == 200
    assert sorted(r.value for r in seen + rest) == sorted(v for _, v, _ in recs)


def test_assign_per_topic_keeps_other_topics(new_log: Factory) -> None:
    log = new_log()
    a, b = unique_topic("a"), unique_topic("b")
    for t in (a, b):
        log.create_topic(t, 1)
        log.produce(t, [(None, t.encode(), 1)])
    log.flush()
    log.assign(a, [0])
    log.assign(b, [0])
    got = poll_n(log, 2)
    assert {r.topic for r in got} == {a, b}


def test_topics(new_log: Factory) -> None:
    log = new_log()
    topic = unique_topic()
    assert not log.topic_exists(topic)
    with pytest.raises(UnknownTopicError):
        log.produce(topic, [(None, b"x", 0)])
    log.create_topic(topic, 2)
    log.create_topic(topic, 2)  # idempotent
    with pytest.raises(LogError, match="exists with 2 partitions"):
        log.create_topic(topic, 3)
    assert new_log().partitions(topic) == 2
    with pytest.raises(LogError, match="not valid"):
        log.create_topic("../etc", 1)


# ------------------------------------------------------------------ local log specifics
_WRITER = """
import sys
from braid_streaming.log import LocalLog
log = LocalLog(sys.argv[1])
for b in range(20):
    log.produce("t", [(b"k%d" % (i % 5), b"%d" % (b * 1000 + i), i) for i in range(1000)])
    log.flush()
log.close()
"""


def test_local_log_writer_and_reader_in_two_processes(tmp_path: Path) -> None:
    log = LocalLog(tmp_path)
    log.create_topic("t", 3)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)])
    log.assign("t", [0, 1, 2])
    got = poll_n(log, 20_000, limit=60)
    assert proc.wait(timeout=60) == 0
    for p in range(3):
        rs = [r for r in got if r.partition == p]
        assert [r.offset for r in rs] == list(range(len(rs)))
        assert [int(r.value) for r in rs] == sorted(int(r.value) for r in rs)


def test_local_log_durable_across_reopen(tmp_path: Path) -> None:
    log = LocalLog(tmp_path)
    log.create_topic("t", 1, compacted=True)
    log.produce("t", [(b"k", b"1", 5), (b"k", b"2", 6)])
    log.close()  # close flushes
    again = LocalLog(tmp_path)
    assert [(r.offset, r.value) for r in again.read_range("t", 0, 0, 2)] == [(0, b"1"), (1, b"2")]
    assert again.end_offsets("t") == {0: 2}


def test_local_log_two_writers_never_share_an_offset(tmp_path: Path) -> None:
    a, b = LocalLog(tmp_path), LocalLog(tmp_path)
    a.create_topic("t", 1)
    for i in range(10):
        (a if i % 2 else b).produce("t", [(None, b"%d" % i, i)] * 3)
        (a if i % 2 else b).flush()
    rs = a.read_range("t", 0, 0, 30)
    assert sorted(int(r.value) for r in rs) == sorted([i for i in range(10)] * 3)


# ------------------------------------------------------------------ outages
@pytest.mark.parametrize("kind", ["confluent", "kafka-python"])
def test_outage_loses_nothing(kind: str, kafka_behind_proxy: ProxiedBroker) -> None:
    log = _make(kind, kafka_behind_proxy.bootstrap)
    try:
        topic = unique_topic()
        log.create_topic(topic, 1)
        log.produce(topic, [(None, b"%d" % i, i) for i in range(100)])
        log.flush()
        kafka_behind_proxy.proxy.cut()
        log.produce(topic, [(None, b"%d" % i, i) for i in range(100, 200)])
        timer = threading.Timer(2.0, kafka_behind_proxy.proxy.restore)
        timer.start()
        log.flush()  # retries with backoff until the broker is reachable again
        timer.join()
        assert log.end_offsets(topic) == {0: 200}
        assert [int(r.value) for r in log.read_range(topic, 0, 0, 200)] == list(range(200))
    finally:
        log.close()


def test_proxy_cut_refuses_connections(tansu: Broker) -> None:
    import socket

    from tests.kafka_fixtures import TcpProxy

    host, port = tansu.bootstrap.split(":")
    proxy = TcpProxy(host, int(port))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2):
        pass
    proxy.cut()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    proxy.restore()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2):
        pass
    proxy.cut()


def test_partition_for_matches_the_java_default_partitioner() -> None:
    from kafka.partitioner.default import murmur2 as kafka_murmur2

    from braid_streaming.log import murmur2

    keys = [b"", b"a", b"ab", b"abc", b"abcd", b"user-17", b"\xff\x00\x80" * 7]
    keys += [str(i).encode() for i in range(200)]
    for key in keys:
        assert murmur2(key) & 0x7FFFFFFF == kafka_murmur2(bytearray(key)) & 0x7FFFFFFF
    # Kafka's own test vector: "21" -> -973932308 as a Java int
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert [partition_for(str(i).encode(), 3) for i in range(5)] == [
        (murmur2(str(i).encode()) & 0x7FFFFFFF) % 3 for i in range(5)]
