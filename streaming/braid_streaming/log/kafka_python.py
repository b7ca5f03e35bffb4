"""The pure-Python fallback: a Kafka log over kafka-python (no C library to install).

kafka-python 3.0.12 against Tansu: a consumer group joins but receives no partitions, so
consumers are created with ``group_id=None`` and ``assign`` only (STACK.md). Throughput is
~27k records/s produce, ~50-65k records/s consume per CPU; use :class:`ConfluentLog` where
speed matters. Produce errors are read from the send futures at :meth:`flush`.

Example:
    >>> log = KafkaPythonLog("127.0.0.1:9092")
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as TP
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from braid_streaming.log.base import (
    LogError,
    LogUnavailableError,
    Record,
    UnknownTopicError,
    check_topic,
)
from braid_streaming.log.kafka_common import DEFAULT_TIMEOUT, SCAN_BATCH, KafkaLogBase


class KafkaPythonLog(KafkaLogBase):
    """A :class:`~braid_streaming.log.base.Log` over kafka-python.

    Args:
        bootstrap: ``host:port[,host:port]`` of the brokers.
        timeout: seconds to wait for metadata and for records that must exist.
        config: extra kafka-python settings for every client (e.g. security).
    """

    def __init__(self, bootstrap: str, timeout: float = DEFAULT_TIMEOUT,
                 config: Mapping[str, Any] | None = None) -> None:
        super().__init__(bootstrap, timeout)
        self._base: dict[str, Any] = {"bootstrap_servers": bootstrap.split(","),
                                      **(config or {})}
        self._producer: KafkaProducer | None = None
        self._consumer: KafkaConsumer | None = None
        self._scanner: KafkaConsumer | None = None
        self._admin: KafkaAdminClient | None = None
        self._futures: list[Any] = []

    # ------------------------------------------------------------------ clients
    def _new_consumer(self, fetch_wait_ms: int = 100) -> KafkaConsumer:
        try:
            return KafkaConsumer(**self._base, group_id=None, enable_auto_commit=False,
                                 auto_offset_reset="earliest", fetch_max_wait_ms=fetch_wait_ms)
        except KafkaError as e:
            raise LogUnavailableError(f"cannot reach {self.bootstrap}: {e}") from e

    def _cons(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = self._new_consumer()
        return self._consumer

    def _scan_cons(self) -> KafkaConsumer:
        if self._scanner is None:
            self._scanner = self._new_consumer(fetch_wait_ms=10)  # it re-seeks often
        return self._scanner

    def _prod(self) -> KafkaProducer:
        if self._producer is None:
            try:
                self._producer = KafkaProducer(**self._base, acks="all", linger_ms=5,
                                               batch_size=256 * 1024)
            except KafkaError as e:
                raise LogUnavailableError(f"cannot reach {self.bootstrap}: {e}") from e
        return self._producer

    # ------------------------------------------------------------------ topics
    def create_topic(self, topic: str, partitions: int, compacted: bool = False) -> None:
        check_topic(topic)
        if self._check_exists(topic, partitions):
            return
        if self._admin is None:
            self._admin = KafkaAdminClient(**self._base)
        conf = {"cleanup.policy": "compact"} if compacted else {}
        try:
            self._admin.create_topics(
                [NewTopic(topic, num_partitions=partitions, replication_factor=1,
                          topic_configs=conf)], timeout_ms=int(self.timeout * 1000))
        except TopicAlreadyExistsError:
            pass
        except KafkaError as e:
            raise LogError(f"cannot create topic {topic!r}: {e}") from e
        self._nparts.pop(topic, None)
        deadline = time.monotonic() + self.timeout
        while not self.topic_exists(topic):  # metadata catches up after creation
            if time.monotonic() > deadline:
                raise LogUnavailableError(f"topic {topic!r} created but not visible")
            time.sleep(0.05)

    def _fetch_partitions(self, topic: str) -> int:
        cons = self._scan_cons()
        try:
            # topics() fetches metadata of all topics (naming a missing one would make Tansu
            # create it); partitions_for_topic then answers from that fresh metadata.
            if topic not in cons.topics():
                raise UnknownTopicError(
                    f"topic {topic!r} does not exist on {self.bootstrap}; create it first")
            parts = cons.partitions_for_topic(topic)
        except KafkaError as e:
            raise LogUnavailableError(f"no metadata from {self.bootstrap}: {e}") from e
        if not parts:
            raise UnknownTopicError(
                f"topic {topic!r} does not exist on {self.bootstrap}; create it first")
        return len(parts)

    # ------------------------------------------------------------------ writing
    def _append(self, topic: str, routed: list[tuple[int, bytes | None, bytes, int]]) -> None:
        send = self._prod().send
        futures = self._futures
        try:
            for p, k, v, ts in routed:
                futures.append(send(topic, v, k, None, p, ts))
        except KafkaTimeoutError as e:
            raise LogUnavailableError(f"producer buffer full, {self.bootstrap} down? {e}") from e

    def flush(self, timeout: float | None = None) -> None:
        if self._producer is None:
            return
        try:
            self._producer.flush(timeout)
        except KafkaTimeoutError as e:
            raise LogUnavailableError(
                f"records not delivered to {self.bootstrap} within {timeout}s") from e
        futures, self._futures = self._futures, []
        failed = [f for f in futures if f.failed()]
        if failed:
            raise LogUnavailableError(
                f"{len(failed)} records failed delivery, first: {failed[0].exception}")

    # ------------------------------------------------------------------ reading
    def _apply_assignment(self) -> None:
        cons = self._cons()
        cons.assign([TP(t, p) for t, parts in self._assigned.items() for p in parts])
        for t, parts in self._assigned.items():
            for p, off in parts.items():
                cons.seek(TP(t, p), off)

    def _fetch(self, max_records: int, timeout: float) -> list[Record]:
        return _poll(self._cons(), max_records, timeout)

    # ------------------------------------------------------------------ primitives
    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        tp = TP(topic, partition)
        cons = self._scan_cons()
        ms = int(self.timeout * 1000)
        try:
            low = cons.beginning_offsets([tp], timeout_ms=ms)[tp]
            high = cons.end_offsets([tp], timeout_ms=ms)[tp]
        except KafkaError as e:
            raise LogUnavailableError(f"{topic}/{partition}: no watermarks: {e}") from e
        return int(low), int(high)

    def _broker_offsets_for_times(self, topic: str, ts_ms: int) -> dict[int, int]:
        tps = {TP(topic, p): ts_ms for p in range(self.partitions(topic))}
        try:
            got = self._scan_cons().offsets_for_times(tps, timeout_ms=int(self.timeout * 1000))
        except KafkaError as e:
            raise LogUnavailableError(f"{topic}: offsets for times failed: {e}") from e
        return {tp.partition: (-1 if v is None else int(v.offset)) for tp, v in got.items()}

    def _scan_seek(self, topic: str, partition: int, offset: int) -> None:
        cons = self._scan_cons()
        tp = TP(topic, partition)
        cons.assign([tp])
        cons.seek(tp, offset)

    def _scan_poll(self, timeout: float) -> list[Record]:
        return _poll(self._scan_cons(), SCAN_BATCH, timeout)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            for c in (self._consumer, self._scanner):
                if c is not None:
                    c.close()
            if self._producer is not None:
                self._producer.close()
            if self._admin is not None:
                self._admin.close()
            self._consumer = self._scanner = self._producer = self._admin = None


def _poll(consumer: KafkaConsumer, max_records: int, timeout: float) -> list[Record]:
    try:
        got = consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
    except KafkaError as e:
        raise LogUnavailableError(f"poll failed: {e}") from e
    out: list[Record] = []
    for tp, msgs in got.items():
        topic, p = tp.topic, tp.partition
        out.extend(Record(topic, p, m.offset, m.timestamp, m.key, m.value) for m in msgs)
    return out
