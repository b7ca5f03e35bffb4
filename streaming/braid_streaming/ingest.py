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
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from braid.definitions.sources import StreamSource
from braid.dtypes import DType
from braid_streaming.ingest_checks import (
    _BOOL,
    _FLOAT,
    _I64,
    _INT,
    _KIND,
    _OK,
    _OK_REQUIRED,
    _STR,
    _TARGET,
    _TIME,
    IngestError,
    Reason,
    _Bad,
    _check_order,
    _fallback,
    _fast_column,
    _jtype,
    _late_flags,
    _wrong,
)
from braid_streaming.log.base import Record, RecordIn

PARTITION, OFFSET, INGESTED_AT, LATE = "_partition", "_offset", "_ingested_at", "_late"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
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

        One orjson pass, then whole columns are typed and checked with Arrow; only records
        a column check refuses go through the per-record rules, which name the reason.

        Args:
            records: raw records, as :meth:`Log.poll` or :meth:`Log.read_range` return them.
            max_ts: M per partition before this batch (empty for a new log).
            ingest_time_ms: the batch's ingestion time (default now); stored as
                ``_ingested_at`` and used by the ``future`` rule.

        Raises:
            IngestError: offsets of a partition go backwards.
        """
        now = _now_ms() if ingest_time_ms is None else ingest_time_ms
        _check_order(records)
        values = [r.value for r in records]
        dead: list[tuple[int, _Bad]] = []
        idx, cols = self._columns(values, dead)
        ts = np.asarray(cols[self._ts_index].to_numpy(zero_copy_only=False), np.int64)
        future = ts > now + self.source.max_future_skew
        if future.any():
            for i, t in zip(idx[future].tolist(), ts[future].tolist(), strict=True):
                dead.append((i, _Bad(Reason.FUTURE, f"event time {t} is more than "
                                     f"{self.source.max_future_skew} ms after ingest time "
                                     f"{now}", self.source.timestamp_field)))
            keep = ~future
            idx, ts, cols = idx[keep], ts[keep], [c.filter(pa.array(keep)) for c in cols]
        parts = np.fromiter((records[i].partition for i in idx.tolist()), np.int64, len(idx))
        m = dict(max_ts or {})
        late, behind = _late_flags(parts, ts, m, self.source.allowed_lateness)
        for j in np.flatnonzero(late).tolist():
            mp, t = behind[j], int(ts[j])
            dead.append((int(idx[j]), _Bad(
                Reason.LATE, f"event time {t} is {mp - t} ms behind the partition's greatest "
                f"{mp}; allowed lateness {self.source.allowed_lateness} ms",
                self.source.timestamp_field)))
        counts: dict[str, int] = {"accepted": len(idx) - int(late.sum())}
        letters = []
        for i, bad in sorted(dead, key=lambda d: d[0]):
            rec = records[i]
            letters.append(DeadLetter(bad.reason, bad.detail, bad.field, rec.topic,
                                      rec.partition, rec.offset, rec.timestamp_ms, rec.key,
                                      rec.value))
            counts[bad.reason.value] = counts.get(bad.reason.value, 0) + 1
        n = len(idx)
        offsets = np.fromiter((records[i].offset for i in idx.tolist()), np.int64, n)
        arrays = [c.cast(f.type) for c, f in zip(cols, self._arrow, strict=False)]
        arrays += [pa.array(parts, pa.int32()), pa.array(offsets, pa.int64()),
                   pa.array(np.full(n, now, np.int64)), pa.array(late, pa.bool_())]
        return IngestResult(pa.Table.from_arrays(arrays, schema=self._arrow), letters, counts,
                            m)

    def _columns(self, values: list[bytes], dead: list[tuple[int, _Bad]]
                 ) -> tuple[np.ndarray, list[pa.Array]]:
        """Record indexes that passed the per-record rules (in order) and their typed
        columns (times as int64 epoch ms); the others are appended to ``dead``."""
        objs: list[dict[str, Any]] = []
        slow = np.zeros(len(values), dtype=bool)
        loads, empty = orjson.loads, {}
        for i, v in enumerate(values):
            try:
                o = loads(v)
            except orjson.JSONDecodeError:
                o = empty
                slow[i] = True
            if type(o) is not dict:
                o = empty
                slow[i] = True
            objs.append(o)
        raw = [[o.get(name) for o in objs] for name, _, _ in self._fields]
        fast: list[pa.Array | None] = []
        for (_, kind, required), col in zip(self._fields, raw, strict=True):
            arr = _fast_column(col, kind, required)
            if arr is None:
                check = (_OK_REQUIRED if required else _OK)[kind]
                slow |= ~np.fromiter(map(check, col), bool, len(col))
            fast.append(arr)
        good = np.flatnonzero(~slow)
        if not slow.any():
            return good, [a for a in fast if a is not None]
        sel = pa.array(good)
        cols = [a.take(sel) if a is not None else pa.array([c[i] for i in good.tolist()],
                                                           _TARGET[kind])
                for a, c, (_, kind, _) in zip(fast, raw, self._fields, strict=True)]
        ok_idx, ok_rows = [], []
        for i in np.flatnonzero(slow).tolist():
            try:
                ok_rows.append(self._row(values[i]))
                ok_idx.append(i)
            except _Bad as bad:
                dead.append((i, bad))
        if not ok_rows:
            return good, cols
        idx = np.concatenate([good, np.array(ok_idx, np.int64)])
        order = pa.array(np.argsort(idx, kind="stable"))
        cols = [pa.concat_arrays([c, pa.array(list(x), _TARGET[kind])]).take(order)
                for c, x, (_, kind, _) in zip(cols, zip(*ok_rows, strict=True), self._fields,
                                              strict=True)]
        return np.sort(idx), cols

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


def decode(source: StreamSource, records: Sequence[Record],
           max_ts: Mapping[int, int] | None = None, ingest_time_ms: int | None = None,
           key_fields: Sequence[str] | None = None) -> IngestResult:
    """One-shot :meth:`Decoder.decode` (build a :class:`Decoder` to decode many batches)."""
    return Decoder(source, key_fields).decode(records, max_ts, ingest_time_ms)
