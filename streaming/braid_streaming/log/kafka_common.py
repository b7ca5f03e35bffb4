"""What both Kafka clients share: exact end offsets, offsets for times and bounded reads on
brokers that report them loosely.

**The Tansu high-watermark trap** (STACK.md). Tansu reports the end offset (high watermark)
as the *base offset of the last record batch + 1*, not the last record's offset + 1: after
1,000 records it may say 902. A bounded read that trusts it misses the tail. braid never
trusts it: :meth:`KafkaLogBase.end_offsets` fetches from ``high - 1`` (the first record of the
last batch, which always exists) with a private "scanner" consumer and returns the offset of
the last record of that fetch + 1; on a broker that reports the true watermark the fetch
returns one record and the answer is unchanged. Bounded reads (:meth:`read_range`, replays)
stop at explicit offsets, never at the watermark. For engines that do trust the watermark
(Flink ``scan.bounded.mode=latest-offset``), produce with :meth:`Log.produce_sealed`, which
sends each partition's final record alone after a flush so the watermark is exact.

Tansu also answers every ``ListOffsets`` by timestamp with offset 0, so
:meth:`offsets_for_times` treats the broker's answer as a lower bound and scans forward to
the first record with ``timestamp >= t`` (exact on any broker; on Kafka the scan is short).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence

from braid_streaming.log.base import (
    Log,
    LogError,
    LogUnavailableError,
    OffsetRangeError,
    Record,
)

#: Seconds the scanner waits for data that must exist before calling it an outage.
DEFAULT_TIMEOUT = 30.0
#: Records a scanner drains per call.
SCAN_BATCH = 10_000


class KafkaLogBase(Log):
    """A Kafka-protocol log: subclasses supply the client calls, this class the offset logic."""

    def __init__(self, bootstrap: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.timeout = timeout
        #: topic -> partition -> next offset to read (manual assignment, no groups)
        self._assigned: dict[str, dict[int, int]] = {}

    # ---------------------------------------------------------- client primitives
    @abstractmethod
    def _apply_assignment(self) -> None:
        """Point the main consumer at every (topic, partition, offset) in ``_assigned``."""

    @abstractmethod
    def _fetch(self, max_records: int, timeout: float) -> list[Record]:
        """Records from the assigned partitions, waiting up to ``timeout`` for the first."""

    @abstractmethod
    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(low, high) as the broker reports them."""

    @abstractmethod
    def _broker_offsets_for_times(self, topic: str, ts_ms: int) -> dict[int, int]:
        """The broker's ListOffsets answer per partition (-1: no such record)."""

    @abstractmethod
    def _scan_seek(self, topic: str, partition: int, offset: int) -> None:
        """Point the private scanner consumer at one partition and offset."""

    @abstractmethod
    def _scan_poll(self, timeout: float) -> list[Record]:
        """Records the scanner has, waiting up to ``timeout`` for the first one."""

    # ---------------------------------------------------------- shared logic
    def assign(self, topic: str, partitions: Sequence[int],
               start: Mapping[int, int] | None = None) -> None:
        for p in partitions:
            self._check_partition(topic, p)
        start = start or {}
        self._assigned[topic] = {p: int(start.get(p, 0)) for p in partitions}
        self._apply_assignment()

    def position(self, topic: str) -> dict[int, int]:
        return dict(self._assigned.get(topic, {}))

    def poll(self, max_records: int = 10_000, timeout: float = 1.0) -> list[Record]:
        if not self._assigned:
            time.sleep(timeout)
            return []
        out = self._fetch(max_records, timeout)
        for r in out:
            self._assigned[r.topic][r.partition] = r.offset + 1
        return out

    def _check_partition(self, topic: str, partition: int) -> None:
        n = self.partitions(topic)
        if not 0 <= partition < n:
            raise LogError(f"topic {topic!r} has partitions 0..{n - 1}, not {partition}")

    def _scan(self, topic: str, partition: int, start: int, until: int) -> list[Record]:
        """Records of one partition from ``start`` on, until one with offset >= until - 1."""
        self._scan_seek(topic, partition, start)
        out: list[Record] = []
        deadline = time.monotonic() + self.timeout
        while not out or out[-1].offset < until - 1:
            got = self._scan_poll(min(0.5, max(0.0, deadline - time.monotonic())))
            out.extend(got)
            if not got and time.monotonic() >= deadline:
                break
        return out

    def _true_end(self, topic: str, partition: int) -> int:
        low, high = self._watermarks(topic, partition)
        if high <= low:
            return high
        self._scan_seek(topic, partition, high - 1)
        got = self._scan_poll(self.timeout)
        if not got:
            raise LogUnavailableError(
                f"{topic}/{partition}: no record at offset {high - 1} within {self.timeout}s "
                f"from {self.bootstrap}; is the broker up?"
            )
        last = got[-1].offset
        # The rest of the fetched batch is already in the client's queue: drain it.
        while True:
            more = self._scan_poll(0.0)
            if not more:
                return last + 1
            last = more[-1].offset

    def end_offsets(self, topic: str) -> dict[int, int]:
        return {p: self._true_end(topic, p) for p in range(self.partitions(topic))}

    def offsets_for_times(self, topic: str, ts_ms: int) -> dict[int, int]:
        if ts_ms <= 0:  # every record is at or after it (Kafka refuses timestamps below -1,
            # and -1, "no timestamp", is taken as the start of time)
            return {p: self._watermarks(topic, p)[0] for p in range(self.partitions(topic))}
        broker = self._broker_offsets_for_times(topic, ts_ms)
        out: dict[int, int] = {}
        for p in range(self.partitions(topic)):
            end = self._true_end(topic, p)
            start = broker.get(p, -1)
            if start < 0 or start >= end:
                out[p] = end
                continue
            out[p] = end
            self._scan_seek(topic, p, start)
            deadline = time.monotonic() + self.timeout
            pos = start
            while pos < end:
                got = self._scan_poll(min(0.5, max(0.0, deadline - time.monotonic())))
                if not got and time.monotonic() >= deadline:
                    raise LogUnavailableError(f"{topic}/{p}: scan stopped at {pos} of {end}")
                hit = next((r.offset for r in got if r.timestamp_ms >= ts_ms), None)
                if hit is not None:
                    out[p] = min(hit, end)
                    break
                if got:
                    pos = got[-1].offset + 1
        return out

    def read_range(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        self._check_partition(topic, partition)
        if end <= start:
            return []
        have = self._true_end(topic, partition)
        if end > have or start < 0:
            raise OffsetRangeError(
                f"{topic}/{partition}: offsets [{start}, {end}) asked, the log ends at {have}")
        got = [r for r in self._scan(topic, partition, start, end) if r.offset < end]
        if not got or got[0].offset != start or got[-1].offset != end - 1:
            raise LogUnavailableError(
                f"{topic}/{partition}: read [{start}, {end}) got "
                f"{len(got)} records within {self.timeout}s; is the broker up?"
            )
        return got
