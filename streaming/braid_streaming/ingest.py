"""Decode and validate a batch of raw log records of a StreamSource (DESIGN §4.0, §4.4, §4.5,
§4.7, §7): a columnar Arrow table of accepted events plus dead letters, nothing dropped.

Rules, in the order they are checked per record (the first failure names the reason):

- ``malformed_json``: not JSON (orjson; the stdlib parser is the per-record fallback that
  tells NaN/Infinity tokens apart), not UTF-8, or not a JSON object.
- ``non_finite``: a ``NaN``/``Infinity`` token or a number too large for a double, anywhere
  in the record (strict, like ``IS JSON`` on the Flink side).
- ``missing_field``: a key field or the event time is absent or null (other fields may be).
- ``wrong_type`` (with the field): int64 wants a JSON integer in range (not a bool, not 3.0),
  float64 a number, string a string, bool true/false, a time an epoch-ms integer or an
  ISO-8601 string with a zone.
- ``naive_timestamp``: an ISO time without a zone.
- ``future``: event time > ingest time + ``max_future_skew``.
- ``late`` (§4.4): event time < M(p, o) - ``allowed_lateness``, with M the greatest event
  time among valid events at earlier offsets of the partition, carried between batches in
  ``max_ts``. Late events are kept in the table with ``_late = true`` (the archive stores
  them) *and* dead-lettered; every other reason only dead-letters.

``counts`` has ``accepted`` (on time), ``late`` and each failure reason: they sum to the
number of records. For a replay to decide exactly as the first run, pass the batch's original
``ingest_time_ms`` and ``max_ts`` (the runner stores both with its intent record).

Example:
    >>> res = Decoder(source).decode(log.poll(), max_ts=state.max_ts)
    >>> res.on_time        # what the views aggregate
    >>> res.dead_letters   # to produce to dlq_topic(project)
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from braid.definitions.sources import StreamSource
from braid.dtypes import DType
from braid.errors import BraidError
from braid_streaming.log.base import Record, RecordIn

PARTITION, OFFSET, INGESTED_AT, LATE = "_partition", "_offset", "_ingested_at", "_late"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
_I64 = (-(2**63), 2**63 - 1)
_INT, _FLOAT, _STR, _BOOL, _TIME = range(5)
_KIND = {DType.INT64: _INT, DType.FLOAT64: _FLOAT, DType.STRING: _STR, DType.BOOL: _BOOL,
         DType.TIMESTAMP: _TIME}


class Reason(StrEnum):
    """Why a record went to the dead-letter topic."""

    MALFORMED_JSON = "malformed_json"
    NON_FINITE = "non_finite"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NAIVE_TIMESTAMP = "naive_timestamp"
    FUTURE = "future"
    LATE = "late"


class IngestError(BraidError):
    """The decoder was misused (e.g. records of a partition out of offset order)."""


class _Bad(Exception):
    def __init__(self, reason: Reason, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.field = reason, detail, field


def dlq_topic(project: str) -> str:
    """The project's dead-letter topic, ``braid.<project>.dlq``."""
    return f"braid.{project}.dlq"


def default_key_fields(source: StreamSource) -> list[str]:
    """The first int64 or string field whose name ends in ``_id``, or none.

    The facade passes the join keys of the views reading the source instead when it can.
    """
    for name, dtype in source.schema.items():
        if name.endswith("_id") and dtype in (DType.INT64, DType.STRING):
            return [name]
    return []


def _text(data: bytes | None) -> tuple[str | None, str | None]:
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


@dataclass(frozen=True)
class DeadLetter:
    """A record that was not accepted, with why and where it came from."""

    reason: Reason
    detail: str
    field: str | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    payload: bytes

    def to_json(self) -> bytes:
        """The DLQ value: reason, detail, field, topic, partition, offset, timestamp and the
        original key and payload (``utf-8`` text when valid UTF-8, else ``base64``)."""
        payload, enc = _text(self.payload)
        key, key_enc = _text(self.key)
        return orjson.dumps({
            "reason": self.reason.value, "detail": self.detail, "field": self.field,
            "topic": self.topic, "partition": self.partition, "offset": self.offset,
            "timestamp": self.timestamp_ms, "payload": payload, "payload_encoding": enc,
            "key": key, "key_encoding": key_enc,
        })

    def to_record(self, now_ms: int | None = None) -> RecordIn:
        """(key, value, timestamp) for the DLQ topic. The key ``topic/partition/offset`` makes
        replays idempotent: a reader (or compaction) keeps one letter per source record."""
        key = f"{self.topic}/{self.partition}/{self.offset}".encode()
        return key, self.to_json(), now_ms if now_ms is not None else _now_ms()


@dataclass
class IngestResult:
    """One decoded batch.

    Attributes:
        table: accepted and late events: the source columns (declared Arrow types) plus
            ``_partition`` (int32), ``_offset`` (int64), ``_ingested_at`` (int64 ms) and
            ``_late`` (bool), in input order.
        dead_letters: every rejected record, and every late one.
        counts: records per outcome (``accepted``, ``late``, and each reason); sums to the
            batch size.
        max_ts: M per partition after this batch (pass it to the next batch).
    """

    table: pa.Table
    dead_letters: list[DeadLetter]
    counts: dict[str, int]
    max_ts: dict[int, int] = field(default_factory=dict)

    @property
    def on_time(self) -> pa.Table:
        """The events the views aggregate (late ones excluded, DESIGN §4.4)."""
        return self.table.filter(pc.invert(self.table[LATE]))

    @property
    def late(self) -> pa.Table:
        """The late events (archived with ``_late = true``)."""
        return self.table.filter(self.table[LATE])


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_time(value: Any, name: str) -> int:
    """Epoch ms of a JSON time value: an integer, or ISO 8601 with a zone.

    Raises:
        _Bad: wrong_type or naive_timestamp.
    """
    t = type(value)
    if t is int:
        if not _I64[0] <= value <= _I64[1]:
            raise _Bad(Reason.WRONG_TYPE, f"field '{name}': {value} is outside int64", name)
        return int(value)
    if t is str:
        try:
            d = dt.datetime.fromisoformat(value)
        except ValueError:
            raise _Bad(Reason.WRONG_TYPE, f"field '{name}': cannot read {value!r} as an "
                       "ISO-8601 time; send epoch ms or e.g. '2026-01-01T00:00:00Z'",
                       name) from None
        if d.tzinfo is None or d.utcoffset() is None:
            raise _Bad(Reason.NAIVE_TIMESTAMP, f"field '{name}': {value!r} has no time zone; "
                       "add one, e.g. 'Z' or '+00:00'", name)
        return (d - _EPOCH) // _MS
    raise _Bad(Reason.WRONG_TYPE,
               f"field '{name}': expected epoch ms or an ISO-8601 string, got {_jtype(value)}",
               name)


def _jtype(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), "null" if value is None else type(value).__name__)


class Decoder:
    """Decodes and validates records of one StreamSource; build once, call per batch.

    Args:
        source: the stream source (schema, time field, lateness, future skew).
        key_fields: fields that must be present (entity keys); default
            :func:`default_key_fields`.
    """

    def __init__(self, source: StreamSource, key_fields: Sequence[str] | None = None) -> None:
        self.source = source
        keys = list(default_key_fields(source) if key_fields is None else key_fields)
        for k in keys:
            if k not in source.schema:
                raise IngestError(f"source '{source.name}': key field '{k}' is not in the "
                                  f"schema ({', '.join(source.schema)})")
        times = {source.timestamp_field, source.created_timestamp_field}
        required = {*keys, source.timestamp_field}
        self._fields = [(n, _TIME if n in times else _KIND[d], n in required)
                        for n, d in source.schema.items()]
        self._ts_index = list(source.schema).index(source.timestamp_field)
        self._arrow = pa.schema([
            *(pa.field(n, d.arrow) for n, d in source.schema.items()),
            pa.field(PARTITION, pa.int32()), pa.field(OFFSET, pa.int64()),
            pa.field(INGESTED_AT, pa.int64()), pa.field(LATE, pa.bool_()),
        ])

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of :attr:`IngestResult.table`."""
        return self._arrow

    def decode(self, records: Sequence[Record], max_ts: Mapping[int, int] | None = None,
               ingest_time_ms: int | None = None) -> IngestResult:
        """Decode one batch (records of each partition in offset order).

        Args:
            records: raw records, as :meth:`Log.poll` or :meth:`Log.read_range` return them.
            max_ts: M per partition before this batch (empty for a new log).
            ingest_time_ms: the batch's ingestion time (default now); stored as
                ``_ingested_at`` and used by the ``future`` rule.

        Raises:
            IngestError: offsets of a partition go backwards.
        """
        now = _now_ms() if ingest_time_ms is None else ingest_time_ms
        horizon = now + self.source.max_future_skew
        lateness = self.source.allowed_lateness
        m = dict(max_ts or {})
        rows: list[list[Any]] = []
        parts: list[int] = []
        offsets: list[int] = []
        late_flags: list[bool] = []
        dead: list[DeadLetter] = []
        counts: dict[str, int] = {"accepted": 0}
        last_off: dict[int, int] = {}
        ts_i = self._ts_index
        for rec in records:
            p = rec.partition
            if last_off.get(p, -1) >= rec.offset:
                raise IngestError(f"{rec.topic}/{p}: offset {rec.offset} after "
                                  f"{last_off[p]}; records must be in offset order")
            last_off[p] = rec.offset
            try:
                row = self._row(rec.value)
                ts = row[ts_i]
                if ts > horizon:
                    raise _Bad(Reason.FUTURE, f"event time {ts} is more than "
                               f"{self.source.max_future_skew} ms after ingest time {now}",
                               self.source.timestamp_field)
            except _Bad as bad:
                dead.append(DeadLetter(bad.reason, bad.detail, bad.field, rec.topic, p,
                                       rec.offset, rec.timestamp_ms, rec.key, rec.value))
                counts[bad.reason.value] = counts.get(bad.reason.value, 0) + 1
                continue
            mp = m.get(p)
            is_late = mp is not None and ts < mp - lateness
            if is_late:
                assert mp is not None
                dead.append(DeadLetter(
                    Reason.LATE, f"event time {ts} is {mp - ts} ms behind the partition's "
                    f"greatest {mp}; allowed lateness {lateness} ms",
                    self.source.timestamp_field, rec.topic, p, rec.offset, rec.timestamp_ms,
                    rec.key, rec.value))
                counts["late"] = counts.get("late", 0) + 1
            else:
                counts["accepted"] += 1
                if mp is None or ts > mp:
                    m[p] = ts
            rows.append(row)
            parts.append(p)
            offsets.append(rec.offset)
            late_flags.append(is_late)
        n = len(parts)
        cols = list(zip(*rows, strict=True)) if rows else [() for _ in self._fields]
        arrays = [pa.array(c, type=f.type) for c, f in zip(cols, self._arrow, strict=False)]
        arrays += [pa.array(parts, pa.int32()), pa.array(offsets, pa.int64()),
                   pa.array([now] * n, pa.int64()), pa.array(late_flags, pa.bool_())]
        return IngestResult(pa.Table.from_arrays(arrays, schema=self._arrow), dead, counts, m)

    def _row(self, value: bytes) -> list[Any]:
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError as e:
            obj = _fallback(value, str(e).splitlines()[0])
        if type(obj) is not dict:
            raise _Bad(Reason.MALFORMED_JSON, f"expected a JSON object, got {_jtype(obj)}")
        row: list[Any] = []
        append = row.append
        for name, kind, required in self._fields:
            v = obj.get(name)
            if v is None:
                if required:
                    what = "missing" if name not in obj else "null"
                    raise _Bad(Reason.MISSING_FIELD, f"field '{name}' is {what}", name)
                append(None)
                continue
            t = type(v)
            if kind == _FLOAT:
                if t is int:
                    v = float(v)
                elif t is not float:
                    raise _wrong(name, "float64", v)
                elif not math.isfinite(v):
                    raise _Bad(Reason.NON_FINITE, f"field '{name}': {v} is not finite", name)
            elif kind == _INT:
                if t is not int:
                    raise _wrong(name, "int64", v)
                if not _I64[0] <= v <= _I64[1]:
                    raise _Bad(Reason.WRONG_TYPE, f"field '{name}': {v} is outside int64",
                               name)
            elif kind == _STR:
                if t is not str:
                    raise _wrong(name, "string", v)
            elif kind == _BOOL:
                if t is not bool:
                    raise _wrong(name, "bool", v)
            else:
                v = parse_time(v, name)
            append(v)
        return row


def _wrong(name: str, want: str, value: Any) -> _Bad:
    return _Bad(Reason.WRONG_TYPE, f"field '{name}': expected {want}, got {_jtype(value)}",
                name)


def _fallback(value: bytes, error: str) -> Any:
    """orjson refused the bytes: tell non-finite numbers apart from malformed JSON."""
    tokens: list[str] = []

    def constant(token: str) -> float:
        tokens.append(token)
        return math.nan

    try:
        obj = json.loads(value.decode("utf-8"), parse_constant=constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise _Bad(Reason.MALFORMED_JSON, f"not valid JSON: {str(e).splitlines()[0]}") from None
    bad = _first_non_finite(obj)
    if tokens or bad is not None:
        what = f"JSON token {tokens[0]}" if tokens else "a number too large for a double"
        where = f"field '{bad}': " if bad else ""
        raise _Bad(Reason.NON_FINITE, f"{where}{what} is not a finite number", bad)
    raise _Bad(Reason.MALFORMED_JSON, f"not valid JSON: {error}")


def _first_non_finite(obj: Any, path: str = "") -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return path or None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(
        obj, list) else ()
    for k, v in items:
        found = _first_non_finite(v, f"{path}.{k}" if path else str(k))
        if found is not None:
            return found
    return None


def decode(source: StreamSource, records: Sequence[Record],
           max_ts: Mapping[int, int] | None = None, ingest_time_ms: int | None = None,
           key_fields: Sequence[str] | None = None) -> IngestResult:
    """One-shot :meth:`Decoder.decode` (build a :class:`Decoder` to decode many batches)."""
    return Decoder(source, key_fields).decode(records, max_ts, ingest_time_ms)
