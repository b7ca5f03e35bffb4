"""The streaming log-and-wait join (DESIGN §8): serving log + label log -> training rows.

Time is the label log's: ``C`` is the greatest label timestamp seen so far, and a label's
ingestion time is the value of ``C`` once it has been read. A request r (served at s) waits
until the label log moves past its maturity: when ``C`` advances to a new label time t, every
pending request with ``s + maturity < t`` is emitted with the labels seen so far, resolved as
the batch join resolves them (keys equal, ``s <= l.ts <= s + maturity``, first/last by
``(ts, ingested_at, values)``, else the default label or nothing). :meth:`LogWaitJoin.advance`
emits up to an explicit cutoff (``s + maturity <= C``, inclusive) once the label log has been
read up to C.

Same rows as the batch join at the same C (``braid_batch.logjoin``) when the label log is in
time order, i.e. each label's ingestion time is its timestamp; that is the batch join's rule
for a label source without ``_ingested_at``. A label that arrives out of order after its
request was emitted cannot change an emitted row; such labels are counted
(``stats["late_labels"]``), so a difference from the batch join is never silent. Requests
that arrive after their maturity passed are emitted at once (``stats["late_requests"]``).

Example:
    >>> join = run_logwait(log, schema, label, "chargebacks", "fraud", until=cutoff)
    >>> table = join.table()
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from braid.definitions import LabelSource
from braid.logging.schema import LoggingError, LogSchema, log_topic
from braid.timeutil import to_epoch_ms

if TYPE_CHECKING:
    from braid_streaming.log.base import Log, Record

_TS = pa.timestamp("ms", tz="UTC")
Row = dict[str, Any]


def _order(v: Any) -> tuple[int, Any]:
    return (0, 0) if v is None else (1, v)  # NULL sorts lowest, as in the batch join


@dataclass
class _Label:
    ts: int
    ing: int
    values: tuple[Any, ...]

    def key(self) -> tuple[Any, ...]:
        return (self.ts, self.ing, *map(_order, self.values))


@dataclass
class LogWaitJoin:
    """Join state: pending requests by maturity, labels by join key, the label-log time."""

    schema: LogSchema
    label: LabelSource
    on_row: Callable[[Row], None] | None = None
    retention: int | None = None  # how long labels are kept past maturity (default: maturity)
    time: int | None = None
    rows: list[Row] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: {
        "requests": 0, "duplicates": 0, "labels": 0, "emitted": 0, "late_labels": 0,
        "late_requests": 0})
    _pending: list[tuple[int, int, Row]] = field(default_factory=list)
    _labels: dict[tuple[Any, ...], list[_Label]] = field(default_factory=dict)
    _seen: dict[tuple[str, int], int] = field(default_factory=dict)
    _emitted_until: int | None = None
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    # ------------------------------------------------------------------ input
    def add_request(self, record: dict[str, Any]) -> None:
        """One decoded serving-log record (the JSON of :mod:`braid.logging.schema`)."""
        ident = (str(record["request_id"]), int(record["row"]))
        if ident in self._seen:  # at-least-once delivery: first copy wins
            self.stats["duplicates"] += 1
            return
        served = int(record["served_at"])
        self._seen[ident] = served
        row: Row = {"request_id": ident[0], "row": ident[1], "served_at": served,
                    "service_version": record.get("service_version")}
        ents, vals = record.get("entities", {}), record.get("values", {})
        for k, _ in self.schema.keys:
            row[k] = ents.get(k)
        for ref, col in zip(self.schema.refs, self.schema.columns, strict=True):
            row[col] = vals.get(ref)
        self.stats["requests"] += 1
        due = served + self.label.maturity
        if self._emitted_until is not None and due <= self._emitted_until:
            self.stats["late_requests"] += 1
            self._emit(row)
            return
        heapq.heappush(self._pending, (due, next(self._seq), row))

    def add_label(self, values: dict[str, Any]) -> None:
        """One label (a row of the label source's columns), in label-log order."""
        ts = to_epoch_ms(values[self.label.timestamp_field], self.label.timestamp_field)
        if self.time is None or ts > self.time:
            self._release(lambda due: due < ts)
            self.time = ts
        elif self._emitted_until is not None and ts <= self._emitted_until:
            self.stats["late_labels"] += 1  # requests it may belong to were already emitted
        key = tuple(values.get(k) for k in self.label.join_on)
        item = _Label(ts, self.time, tuple(values.get(f) for f in self.label.label_fields))
        self._labels.setdefault(key, []).append(item)
        self.stats["labels"] += 1
        self._prune()

    def advance(self, cutoff: int) -> None:
        """Emit every request mature at ``cutoff`` (``served_at + maturity <= cutoff``); call
        once the label log has been read up to ``cutoff``."""
        self._release(lambda due: due <= cutoff)

    # ------------------------------------------------------------------ output
    def _release(self, ready: Callable[[int], bool]) -> None:
        while self._pending and ready(self._pending[0][0]):
            due, _, row = heapq.heappop(self._pending)
            self._emitted_until = due if self._emitted_until is None else max(
                self._emitted_until, due)
            self._emit(row)

    def _emit(self, row: Row) -> None:
        lab = self.label
        s, m = row["served_at"], lab.maturity
        key = tuple(row.get("request_id") if k == "request_id" else row.get(k)
                    for k in lab.join_on)
        found = [x for x in self._labels.get(key, []) if s <= x.ts <= s + m]
        if found:
            pick = (max if lab.duplicates == "last" else min)(found, key=_Label.key)
            row.update(zip(lab.label_fields, pick.values, strict=True))
        elif lab.missing == "drop":
            return
        else:
            row.update({f: lab.default_label.get(f) for f in lab.label_fields})
        row["origin"] = "logged"
        self.rows.append(row)
        self.stats["emitted"] += 1
        if self.on_row is not None:
            self.on_row(row)

    def _prune(self) -> None:
        if self.stats["labels"] % 10_000 == 0:
            self.prune()

    def prune(self) -> None:
        """Drop labels and seen request ids older than maturity + retention before the
        label-log time (done every 10,000 labels, and before state is saved)."""
        if self.time is None:
            return
        horizon = self.time - self.label.maturity - (self.retention or self.label.maturity)
        for key in list(self._labels):
            kept = [x for x in self._labels[key] if x.ts >= horizon]
            if kept:
                self._labels[key] = kept
            else:
                del self._labels[key]
        self._seen = {k: v for k, v in self._seen.items() if v >= horizon}

    def table(self) -> pa.Table:
        """Emitted rows as Arrow, columns and types as the batch join's (sorted alike)."""
        rows = sorted(self.rows, key=lambda r: (r["served_at"], r["origin"], r["request_id"],
                                                r["row"]))
        cols = ["request_id", "row", "served_at", "service_version",
                *[k for k, _ in self.schema.keys], *self.schema.columns,
                *self.label.label_fields, "origin"]
        types = {"row": pa.int32(), "served_at": pa.int64()}
        types.update({k: t.arrow for k, t in self.schema.keys})
        types.update({c: t.arrow for c, t in zip(self.schema.columns, self.schema.dtypes,
                                                  strict=True)})
        arrays = {c: pa.array([r.get(c) for r in rows], types.get(c)) for c in cols}
        arrays["served_at"] = arrays["served_at"].cast(_TS)
        return pa.table(arrays)


def _drain(log: Log, topic: str) -> list[Record]:
    """Every record of ``topic`` up to its end offsets at call time, per-partition order."""
    ends = log.end_offsets(topic)
    out: list[Record] = []
    for p, end in sorted(ends.items()):
        at = 0
        while at < end:
            recs = log.read_range(topic, p, at, min(end, at + 50_000))
            out += recs
            at += len(recs)
    return out


def run_logwait(log: Log, schema: LogSchema, label: LabelSource, label_topic: str,
                project: str, until: int | None = None,
                join: LogWaitJoin | None = None,
                on_row: Callable[[Row], None] | None = None) -> LogWaitJoin:
    """Consume the service log and then the label log (each up to its current end) in order.

    Labels after ``until`` on the label log are not read (C stops at ``until``); with
    ``until`` set, requests mature at ``until`` are then emitted. Several label partitions
    are read in (timestamp, partition, offset) order; one partition keeps the log's order.

    Raises:
        LoggingError: the label log record is not JSON with the label source's columns.
    """
    join = join or LogWaitJoin(schema, label, on_row)
    topic = log_topic(project, schema.service)
    if log.topic_exists(topic):
        for rec in _drain(log, topic):
            join.add_request(orjson.loads(rec.value))
    labels = _drain(log, label_topic)
    if log.partitions(label_topic) > 1:
        labels.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    for rec in labels:
        try:
            values = orjson.loads(rec.value)
            ts = to_epoch_ms(values[label.timestamp_field], label.timestamp_field)
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise LoggingError(f"{label_topic}/{rec.partition}@{rec.offset}: not a label of "
                               f"'{label.name}' ({type(e).__name__}: {e})") from e
        if until is not None and ts > until:
            break
        join.add_label(values)
    if until is not None:
        join.advance(until)
    return join
