"""The fast path: a Kafka log over confluent-kafka (librdkafka). ~700k records/s produce and
~240k/s consume against the local Tansu broker (STACK.md).

Consumers use ``assign`` only; librdkafka still wants a ``group.id``, which is never joined
(no subscribe, no commits). ``auto.offset.reset=error`` keeps a bad stored offset from being
silently rewound. Produce errors are collected by a delivery callback that librdkafka only
calls on failure (``delivery.report.only.error``) and raised by :meth:`flush`; during an
outage librdkafka retries with backoff until ``message.timeout.ms``.

Example:
    >>> log = ConfluentLog("127.0.0.1:9092")
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from braid_streaming.log.base import (
    LogError,
    LogUnavailableError,
    Record,
    UnknownTopicError,
    check_topic,
)
from braid_streaming.log.kafka_common import DEFAULT_TIMEOUT, SCAN_BATCH, KafkaLogBase

_PRODUCER = {"linger.ms": 5, "acks": "all", "queue.buffering.max.messages": 1_000_000,
             "delivery.report.only.error": True}
_CONSUMER = {"group.id": "braid-assign-only", "enable.auto.commit": False,
             "enable.auto.offset.store": False, "auto.offset.reset": "error",
             "enable.partition.eof": False, "fetch.wait.max.ms": 100}


class ConfluentLog(KafkaLogBase):
    """A :class:`~braid_streaming.log.base.Log` over confluent-kafka.

    Args:
        bootstrap: ``host:port[,host:port]`` of the brokers.
        timeout: seconds to wait for metadata and for records that must exist.
        config: extra librdkafka settings for every client (e.g. security).
    """

    def __init__(self, bootstrap: str, timeout: float = DEFAULT_TIMEOUT,
                 config: Mapping[str, Any] | None = None) -> None:
        super().__init__(bootstrap, timeout)
        self._base = {"bootstrap.servers": bootstrap, **(config or {})}
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._scanner: Consumer | None = None
        self._admin = AdminClient(dict(self._base))
        self._errors: list[str] = []

    # ------------------------------------------------------------------ clients
    def _prod(self) -> Producer:
        if self._producer is None:
            self._producer = Producer({**self._base, **_PRODUCER,
                                       "on_delivery": self._on_delivery})
        return self._producer

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}/{msg.partition()}: {err.str()}")

    def _cons(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer({**self._base, **_CONSUMER})
        return self._consumer

    def _scan_cons(self) -> Consumer:
        if self._scanner is None:
            # A short broker-side fetch wait: the scanner re-seeks often, and each seek waits
            # for the outstanding long-poll fetch to return.
            self._scanner = Consumer({**self._base, **_CONSUMER, "fetch.wait.max.ms": 10})
        return self._scanner

    # ------------------------------------------------------------------ topics
    def create_topic(self, topic: str, partitions: int, compacted: bool = False) -> None:
        check_topic(topic)
        if self._check_exists(topic, partitions):
            return
        conf = {"cleanup.policy": "compact"} if compacted else {}
        fut = self._admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=conf)],
            request_timeout=self.timeout)[topic]
        try:
            fut.result(timeout=self.timeout)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise LogError(f"cannot create topic {topic!r}: {e.args[0].str()}") from e
        self._nparts.pop(topic, None)
        deadline = time.monotonic() + self.timeout
        while not self.topic_exists(topic):  # metadata catches up after creation
            if time.monotonic() > deadline:
                raise LogUnavailableError(f"topic {topic!r} created but not visible")
            time.sleep(0.05)

    def _fetch_partitions(self, topic: str) -> int:
        try:
            # Ask for all topics: a metadata request naming a missing topic makes Tansu
            # (and brokers with auto.create.topics.enable) create it with default settings.
            md = self._admin.list_topics(timeout=self.timeout)
        except KafkaException as e:
            raise LogUnavailableError(
                f"no metadata from {self.bootstrap} within {self.timeout}s: {e}") from e
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            raise UnknownTopicError(
                f"topic {topic!r} does not exist on {self.bootstrap}; create it first")
        return len(t.partitions)

    # ------------------------------------------------------------------ writing
    def _append(self, topic: str, routed: list[tuple[int, bytes | None, bytes, int]]) -> None:
        prod = self._prod()
        produce = prod.produce
        for p, k, v, ts in routed:
            while True:
                try:
                    produce(topic, v, k, p, timestamp=ts)
                    break
                except BufferError:  # local queue full: let librdkafka send, then retry
                    prod.poll(0.05)
        prod.poll(0)

    def flush(self, timeout: float | None = None) -> None:
        if self._producer is not None:
            left = self._producer.flush(-1 if timeout is None else timeout)
            if left:
                raise LogUnavailableError(
                    f"{left} records not delivered to {self.bootstrap} within {timeout}s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise LogUnavailableError(
                f"{len(errors)} records failed delivery, first: {errors[0]}")

    # ------------------------------------------------------------------ reading
    def _apply_assignment(self) -> None:
        self._cons().assign([TopicPartition(t, p, off) for t, parts in self._assigned.items()
                             for p, off in parts.items()])

    def _fetch(self, max_records: int, timeout: float) -> list[Record]:
        return _drain(self._cons(), max_records, timeout)

    # ------------------------------------------------------------------ primitives
    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        try:
            low, high = self._scan_cons().get_watermark_offsets(
                TopicPartition(topic, partition), timeout=self.timeout)
        except KafkaException as e:
            raise LogUnavailableError(f"{topic}/{partition}: no watermarks: {e}") from e
        return int(low), int(high)

    def _broker_offsets_for_times(self, topic: str, ts_ms: int) -> dict[int, int]:
        tps = [TopicPartition(topic, p, ts_ms) for p in range(self.partitions(topic))]
        try:
            got = self._scan_cons().offsets_for_times(tps, timeout=self.timeout)
        except KafkaException as e:
            raise LogUnavailableError(f"{topic}: offsets for times failed: {e}") from e
        return {tp.partition: int(tp.offset) for tp in got}

    def _scan_seek(self, topic: str, partition: int, offset: int) -> None:
        self._scan_cons().assign([TopicPartition(topic, partition, offset)])

    def _scan_poll(self, timeout: float) -> list[Record]:
        return _drain(self._scan_cons(), SCAN_BATCH, timeout)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            for c in (self._consumer, self._scanner):
                if c is not None:
                    c.close()
            self._consumer = self._scanner = None


def _drain(consumer: Consumer, max_records: int, timeout: float) -> list[Record]:
    """What the consumer has: wait up to ``timeout`` for one message, then take the queue.

    ``consume(n, timeout)`` waits until it has n messages or the timeout passes, so waiting
    is done by ``poll`` and the rest is taken without waiting.
    """
    msgs = consumer.consume(max_records, 0)
    if not msgs and timeout > 0:
        first = consumer.poll(timeout)
        if first is None:
            return []
        msgs = [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
    out = []
    for m in msgs:
        err = m.error()
        if err is not None:
            if err.code() in (KafkaError._PARTITION_EOF, KafkaError._TRANSPORT,
                              KafkaError._ALL_BROKERS_DOWN):
                continue  # transient: librdkafka reconnects by itself
            raise LogError(f"{m.topic()}/{m.partition()}: {err.str()}")
        out.append(Record(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(),
                          m.value()))
    return out
