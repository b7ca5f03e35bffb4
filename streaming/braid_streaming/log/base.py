"""The ``Log`` interface (DESIGN §7): a partitioned, append-only log with offsets.

Three implementations share it: :class:`~braid_streaming.log.confluent.ConfluentLog` (the fast
path), :class:`~braid_streaming.log.kafka_python.KafkaPythonLog` (pure-Python fallback) and
:class:`~braid_streaming.log.local.LocalLog` (SQLite files, no broker). Partitions are always
assigned manually; there are no consumer groups (kafka-python 3.0.12 joins a group but gets no
partitions, STACK.md). Readers keep their own offsets and restart from them with ``assign``.

Keyed records go to ``murmur2(key) & 0x7fffffff % partitions``, the partitioner of the Java
client, so per-entity order holds and any Kafka producer using the default partitioner agrees.

Example:
    >>> log = open_log(KafkaConfig(), root="feature_repo")
    >>> log.create_topic("transactions", partitions=2)
    >>> log.produce("transactions", [(b"7", b'{"user_id": 7, "ts": 0}', 0)])
    >>> log.flush()
    >>> log.assign("transactions", [0, 1], start={0: 0, 1: 0})
    >>> log.poll(max_records=100, timeout=1.0)
"""

from __future__ import annotations

import re
import struct
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import NamedTuple

from braid.errors import BraidError

#: (key, value, timestamp_ms) as given to :meth:`Log.produce`.
RecordIn = tuple[bytes | None, bytes, int]

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


class LogError(BraidError):
    """A log operation failed (broker error, bad argument, unreadable local file)."""


class UnknownTopicError(LogError):
    """The topic does not exist; create it first (``Log.create_topic``, ``braid push``)."""


class LogUnavailableError(LogError):
    """The broker did not answer or deliver in time (an outage); retry once it is back."""


class OffsetRangeError(LogError):
    """An offset range asked for is not (or no longer) in the log."""


class Record(NamedTuple):
    """One record read back from a log."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 (seed 0x9747b28c) of ``data``, as an unsigned int."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    n4 = length // 4
    for k in struct.unpack_from(f"<{n4}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    base = n4 * 4
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a keyed record: Java's default partitioner, so every client agrees."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def check_topic(topic: str) -> str:
    """Refuse topic names Kafka refuses (they also become file names in the local log)."""
    if not isinstance(topic, str) or not _TOPIC.match(topic) or topic in (".", ".."):
        raise LogError(
            f"topic name {topic!r} is not valid; use 1-249 letters, digits, '.', '_' or '-'"
        )
    return topic


class Log(ABC):
    """A partitioned append-only log: produce, manual assign + poll, offsets, bounded reads.

    Offsets are per partition, dense from 0 for braid's own topics. ``end_offsets`` is the true
    next offset (see the Kafka implementations for the Tansu high-watermark trap).
    """

    def __init__(self) -> None:
        self._nparts: dict[str, int] = {}
        self._rr: dict[str, int] = {}
        self._key_part: dict[tuple[bytes, int], int] = {}

    # ------------------------------------------------------------------ writing
    def produce(self, topic: str, records: Sequence[RecordIn],
                partition: int | None = None) -> None:
        """Append records; keyed ones by ``partition_for(key)``, unkeyed round-robin.

        Delivery is asynchronous: call :meth:`flush` before relying on them. Record
        timestamps below 1 are stored as 1 by every implementation: Kafka has no negative
        record timestamps and librdkafka reads 0 as "now". (braid's decoder takes event
        time from the payload, so pre-epoch events keep their time.)

        Args:
            topic: an existing topic.
            records: ``(key, value, timestamp_ms)`` tuples, in the order to append.
            partition: put every record in this partition instead.

        Raises:
            UnknownTopicError: the topic does not exist.
            LogError: ``partition`` is out of range.
        """
        if not records:
            return
        n = self.partitions(topic)
        if partition is not None:
            if not 0 <= partition < n:
                raise LogError(f"topic {topic!r} has partitions 0..{n - 1}, not {partition}")
            self._append(topic, [(partition, k, v, ts if ts > 0 else 1)
                                 for k, v, ts in records])
            return
        self._append(topic, self._route(topic, n, records))

    def _route(self, topic: str, n: int,
               records: Sequence[RecordIn]) -> list[tuple[int, bytes | None, bytes, int]]:
        cache = self._key_part
        if len(cache) > 1_000_000:
            cache.clear()
        rr = self._rr.get(topic, 0)
        out: list[tuple[int, bytes | None, bytes, int]] = []
        for k, v, ts in records:
            if k is None:
                p = rr % n
                rr += 1
            else:
                p = cache.get((k, n), -1)
                if p < 0:
                    p = cache[(k, n)] = partition_for(k, n)
            out.append((p, k, v, ts if ts > 0 else 1))
        self._rr[topic] = rr
        return out

    def produce_sealed(self, topic: str, records: Sequence[RecordIn],
                       partition: int | None = None) -> None:
        """Produce and flush so that ``end_offsets`` is exact even for a naive reader.

        Each partition's final record is sent alone after a flush: Tansu reports the base
        offset of the last record batch + 1 as the high watermark (STACK.md), so a bounded
        reader that trusts it (Flink ``scan.bounded.mode=latest-offset``) would miss the tail
        of the last batch. With a one-record last batch, that number is the true end.
        """
        if not records:
            return
        n = self.partitions(topic)
        routed = ([(partition, k, v, ts if ts > 0 else 1) for k, v, ts in records]
                  if partition is not None
                  else self._route(topic, n, records))
        last: dict[int, int] = {}
        for i, r in enumerate(routed):
            last[r[0]] = i
        finals = set(last.values())
        self._append(topic, [r for i, r in enumerate(routed) if i not in finals])
        self.flush()
        self._append(topic, [routed[i] for i in sorted(finals)])
        self.flush()

    @abstractmethod
    def _append(self, topic: str, routed: list[tuple[int, bytes | None, bytes, int]]) -> None:
        """Append ``(partition, key, value, timestamp_ms)`` tuples (partitions already valid)."""

    @abstractmethod
    def flush(self, timeout: float | None = None) -> None:
        """Block until every produced record is durably appended.

        Raises:
            LogUnavailableError: not delivered within ``timeout`` seconds (None: the client's
                own delivery timeout, retrying with backoff meanwhile).
        """

    # ------------------------------------------------------------------ topics
    @abstractmethod
    def create_topic(self, topic: str, partitions: int, compacted: bool = False) -> None:
        """Create a topic; a no-op if it exists with the same partition count.

        Raises:
            LogError: it exists with another partition count.
        """

    def partitions(self, topic: str) -> int:
        """The partition count of ``topic`` (cached).

        Raises:
            UnknownTopicError: the topic does not exist.
        """
        n = self._nparts.get(topic)
        if n is None:
            n = self._nparts[topic] = self._fetch_partitions(check_topic(topic))
        return n

    def topic_exists(self, topic: str) -> bool:
        """Whether ``topic`` exists."""
        try:
            self.partitions(topic)
        except UnknownTopicError:
            return False
        return True

    @abstractmethod
    def _fetch_partitions(self, topic: str) -> int:
        """Ask the log for the partition count; raise UnknownTopicError if missing."""

    def _check_exists(self, topic: str, partitions: int) -> bool:
        """Helper for create_topic: True if the topic already exists with that count."""
        try:
            have = self._fetch_partitions(topic)
        except UnknownTopicError:
            return False
        if have != partitions:
            raise LogError(
                f"topic {topic!r} exists with {have} partitions, not {partitions}; "
                "delete it or keep the partition count"
            )
        self._nparts[topic] = have
        return True

    # ------------------------------------------------------------------ reading
    @abstractmethod
    def assign(self, topic: str, partitions: Sequence[int],
               start: Mapping[int, int] | None = None) -> None:
        """Read ``partitions`` of ``topic`` from the given offsets (0 where not given).

        Replaces this topic's earlier assignment; other topics' assignments stay.
        """

    @abstractmethod
    def poll(self, max_records: int = 10_000, timeout: float = 1.0) -> list[Record]:
        """Up to ``max_records`` next records of the assigned partitions, in offset order per
        partition; waits up to ``timeout`` seconds for the first one, then returns what is
        there (possibly nothing)."""

    @abstractmethod
    def position(self, topic: str) -> dict[int, int]:
        """Next offset :meth:`poll` returns, per assigned partition of ``topic``."""

    @abstractmethod
    def offsets_for_times(self, topic: str, ts_ms: int) -> dict[int, int]:
        """Per partition, the first offset whose timestamp is ``>= ts_ms``; the end offset if
        none is (so a reader starting there sees only newer records)."""

    @abstractmethod
    def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the true next offset (last record's offset + 1; 0 when empty)."""

    @abstractmethod
    def read_range(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        """Records with ``start <= offset < end`` of one partition (replays rebuild a
        micro-batch from its ranges). Independent of the assign/poll position.

        Raises:
            OffsetRangeError: part of the range is not in the log.
        """

    @abstractmethod
    def close(self) -> None:
        """Flush and release connections."""

    def __enter__(self) -> Log:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
