"""The serving-time logger (DESIGN §8): a bounded buffer and one worker thread per service.

A lookup only appends a reference to its result to the buffer (O(1), no encoding, no I/O);
the worker encodes records and writes them to the sink (the service's log topic). Logging
never blocks or fails a lookup:

* the buffer holds at most ``max_buffered`` records (entity rows); a lookup that does not
  fit is dropped whole and counted (``dropped``), never waited for;
* on a sink error the worker keeps the records, backs off (up to ``max_backoff`` seconds) and
  retries, reopening the sink; records already accepted are dropped only by ``close``
  without a flush, and then counted too.

Counters always satisfy ``accepted == delivered + buffered + dropped_on_close`` and
``offered == accepted + dropped + sampled_out`` (records). Delivery is at least once: a
Kafka flush that times out may still deliver, and the retry then writes the record again;
readers de-duplicate by ``(request_id, row)``.

Example:
    >>> logger = store.serving_logger("fraud_v1")
    >>> logger.stats()["delivered"]
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from braid.logging.schema import LoggingError, LogSchema

if TYPE_CHECKING:
    from braid.online.result import OnlineResult
    from braid_streaming.log.base import Log

SinkFactory = Callable[[], "Log"]
_SCALE = float(2**64)


def sampled(request_id: str, rate: float) -> bool:
    """Deterministic sampling: ``hash(request_id) < rate`` (the same id always decides the
    same way, in every process)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    h = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big")
    return h / _SCALE < rate


def new_request_id() -> str:
    """A fresh request id (uuid4, hex)."""
    return uuid.uuid4().hex


@dataclass
class _Item:
    ids: list[str]
    rows: list[int]  # entity-row indices kept by sampling
    served_at: int
    result: OnlineResult
    encoded: list[tuple[bytes | None, bytes, int]] | None = None


@dataclass
class _Stats:
    offered: int = 0
    sampled_out: int = 0
    accepted: int = 0
    dropped: int = 0
    dropped_requests: int = 0
    delivered: int = 0
    sink_errors: int = 0
    dropped_on_close: int = 0
    last_error: str | None = None
    extra: dict[str, int] = field(default_factory=dict)


class ServingLogger:
    """Logs served values of one feature service to its log topic.

    Args:
        schema: the service's log schema (keys, feature references, version).
        topic: the log topic (``braid.<project>.log.<service>``).
        sink: builds the sink ``Log`` (called by the worker, again after a failure).
        sample_rate: fraction of request ids logged (LoggingConfig.sample_rate).
        max_buffered: records buffered at most (while the sink is slow or down).
        batch: records written per sink call.
        max_backoff: longest wait between retries, in seconds.
    """

    def __init__(self, schema: LogSchema, topic: str, sink: SinkFactory,
                 sample_rate: float = 1.0, max_buffered: int = 100_000, batch: int = 5_000,
                 max_backoff: float = 5.0, partitions: int = 1) -> None:
        self.schema, self.topic, self.sample_rate = schema, topic, sample_rate
        self.max_buffered, self.batch, self.max_backoff = max_buffered, batch, max_backoff
        self._factory, self._partitions = sink, partitions
        self._sink: Log | None = None
        self._items: deque[_Item] = deque()
        self._buffered = 0
        self._stats = _Stats()
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name=f"braid-log-{schema.service}",
                                        daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ hot path
    def submit(self, result: OnlineResult, served_at: int,
               request_id: str | Sequence[str] | None = None) -> list[str]:
        """Queue the rows of one lookup; returns the request id of every entity row.

        Never raises for sink problems and never waits for the sink.

        Raises:
            LoggingError: ``request_id`` is a sequence of the wrong length.
        """
        n = len(result)
        if request_id is None or isinstance(request_id, str):
            rid = request_id if request_id is not None else new_request_id()
            ids = [rid] * n
            rows = list(range(n)) if sampled(rid, self.sample_rate) else []
        else:
            ids = [str(r) for r in request_id]
            if len(ids) != n:
                raise LoggingError(f"request_id has {len(ids)} ids for {n} entity rows; pass "
                                   "one id per row or a single id")
            rows = [i for i, r in enumerate(ids) if sampled(r, self.sample_rate)]
        k = len(rows)
        with self._cond:
            s = self._stats
            s.offered += n
            s.sampled_out += n - k
            if not k:
                return ids
            if self._closed or self._buffered + k > self.max_buffered:
                s.dropped += k
                s.dropped_requests += 1
                return ids
            s.accepted += k
            self._buffered += k
            self._items.append(_Item(ids, rows, served_at, result))
            self._cond.notify()
        return ids

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait()
                if not self._items:
                    return
                if backoff:
                    self._cond.wait(backoff)  # woken early by flush/close, then retries
                items = self._take()
            try:
                self._deliver(items)
            except Exception as e:  # noqa: BLE001  (any sink failure: keep the records)
                self._fail(e)
                backoff = min(self.max_backoff, max(0.05, backoff * 2))
                continue
            backoff = 0.0
            with self._cond:
                for item in items:
                    rows = len(item.rows)
                    self._stats.delivered += rows
                    if self._items and self._items[0] is item:
                        self._items.popleft()
                        self._buffered -= rows
                    else:  # close() gave up on it meanwhile, yet it was delivered
                        self._stats.dropped_on_close -= rows
                self._cond.notify_all()

    def _take(self) -> list[_Item]:
        out, rows = [], 0
        for item in self._items:
            out.append(item)
            rows += len(item.rows)
            if rows >= self.batch:
                break
        return out

    def _deliver(self, items: list[_Item]) -> None:
        if self._sink is None:
            sink = self._factory()
            sink.create_topic(self.topic, self._partitions)
            self._sink = sink
        records: list[tuple[bytes | None, bytes, int]] = []
        for item in items:
            if item.encoded is None:
                item.encoded = self._encode(item)
            records += item.encoded
        self._sink.produce(self.topic, records)
        self._sink.flush(timeout=10.0)

    def _fail(self, e: BaseException) -> None:
        with self._cond:
            self._stats.sink_errors += 1
            self._stats.last_error = f"{type(e).__name__}: {e}"
        sink, self._sink = self._sink, None
        if sink is not None:
            try:
                sink.close()
            except Exception:  # noqa: BLE001, S110  (the sink is already broken)
                pass

    def _encode(self, item: _Item) -> list[tuple[bytes | None, bytes, int]]:
        result, refs, sch = item.result, self.schema.refs, self.schema
        data = result.to_dict(include_event_timestamps=True, include_status=True)
        names = result.feature_names
        keys = [k for k, _ in sch.keys if k in data]
        out: list[tuple[bytes | None, bytes, int]] = []
        for i in item.rows:
            rec = {
                "request_id": item.ids[i], "row": i, "service": sch.service,
                "service_version": sch.version, "served_at": item.served_at,
                "scaler_version": None,
                "entities": {k: data[k][i] for k in keys},
                "values": {r: data[n][i] for r, n in zip(refs, names, strict=True)},
                "event_ts": {r: data[n + "__event_timestamp"][i]
                             for r, n in zip(refs, names, strict=True)},
                "status": {r: data[n + "__status"][i] for r, n in zip(refs, names, strict=True)},
            }
            out.append((item.ids[i].encode(), orjson.dumps(rec), item.served_at))
        return out

    # ------------------------------------------------------------------ control
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every accepted record is delivered (or ``timeout`` seconds pass);
        returns whether the buffer is empty."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._buffered and time.monotonic() < deadline:
                self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
                self._cond.notify_all()
            return self._buffered == 0

    def close(self, timeout: float = 10.0) -> None:
        """Flush for up to ``timeout`` seconds, stop the worker; what is left is counted as
        ``dropped_on_close``."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            left = self._buffered
            self._items.clear()
            self._buffered = 0
            self._stats.dropped_on_close += left
            self._cond.notify_all()
        self._worker.join(timeout)
        if self._sink is not None:
            try:
                self._sink.close()
            except Exception:  # noqa: BLE001, S110
                pass
            self._sink = None

    def stats(self) -> dict[str, Any]:
        """Counters in records (entity rows): offered, sampled_out, accepted, dropped,
        dropped_requests, delivered, buffered, sink_errors, dropped_on_close, last_error."""
        with self._cond:
            s = self._stats
            return {"service": self.schema.service, "topic": self.topic,
                    "offered": s.offered, "sampled_out": s.sampled_out,
                    "accepted": s.accepted, "dropped": s.dropped,
                    "dropped_requests": s.dropped_requests, "delivered": s.delivered,
                    "buffered": self._buffered, "sink_errors": s.sink_errors,
                    "dropped_on_close": s.dropped_on_close, "last_error": s.last_error}

    def prometheus(self) -> str:
        """Prometheus text lines for ``/metrics`` (counters and the buffer gauge)."""
        s = self.stats()
        svc = f'service="{self.schema.service}"'
        lines = ["# TYPE braid_log_records_total counter"]
        for outcome in ("offered", "sampled_out", "accepted", "delivered", "dropped",
                        "dropped_on_close"):
            lines.append(f'braid_log_records_total{{{svc},outcome="{outcome}"}} {s[outcome]}')
        lines += ["# TYPE braid_log_sink_errors_total counter",
                  f"braid_log_sink_errors_total{{{svc}}} {s['sink_errors']}",
                  "# TYPE braid_log_buffered_records gauge",
                  f"braid_log_buffered_records{{{svc}}} {s['buffered']}"]
        return "\n".join(lines) + "\n"
