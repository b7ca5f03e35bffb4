"""``push``: append rows to a StreamSource's log (Kafka or the local log), all or nothing.

Every row is validated against the source schema *before* anything is produced: one bad row
raises :class:`PushError` (row index, field, reason, fix) and nothing from the call reaches
the log. Times are converted once to epoch ms (DESIGN §4.0): zone-aware datetimes, pandas
Timestamps, ISO-8601 strings with a zone, or int epoch ms; zone-less times are refused with
the ``tz_localize`` fix. In a pandas DataFrame, NaN / NaT / None mean "missing" (pandas' own
convention); in dicts a float NaN or infinity is refused (``non_finite``).

Records: value = JSON object of the schema columns (times as epoch ms); key = JSON object of
the key fields in order, e.g. ``{"user_id":7}`` (the bytes Flink's JSON key format writes),
partitioned by the log's murmur2 partitioner so one entity's events keep their order; Kafka
record timestamp = event time. The topic is created with ``source.partitions`` if missing.

Key fields: pass the join keys of the views reading the source (the facade does); by default
the first int64/string field named ``*_id`` (:func:`~braid_streaming.ingest.default_key_fields`);
with none, records are unkeyed and spread round-robin.

Example:
    >>> push(log, transactions, [{"user_id": 7, "ts": "2026-01-01T00:00:00Z", "amount": 9.5}])
    PushReport(topic='transactions', records=1, ...)
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import orjson
import pyarrow as pa

from braid.definitions.sources import StreamSource
from braid.dtypes import DType
from braid.errors import BraidError, TimestampError
from braid.timeutil import to_epoch_ms
from braid_streaming.ingest import Reason, default_key_fields
from braid_streaming.log.base import Log, RecordIn

if TYPE_CHECKING:
    import pandas as pd

#: A list of dicts, a pyarrow Table or a pandas DataFrame (pandas is imported lazily).
Rows = Union[Sequence[dict[str, Any]], pa.Table, "pd.DataFrame"]  # noqa: UP007
_I64 = (-(2**63), 2**63 - 1)
_REASONS = {r.value for r in Reason}
_HINT = {
    Reason.NAIVE_TIMESTAMP: "attach a zone, e.g. df['ts'].dt.tz_localize('UTC') or "
                            "datetime(..., tzinfo=timezone.utc)",
    Reason.MISSING_FIELD: "key fields and the event time are required",
    Reason.NON_FINITE: "send null for a missing value; NaN and infinities are refused",
}


class PushError(BraidError):
    """A row cannot be pushed; nothing from the call was produced.

    Attributes:
        row: index of the first bad row (position in the input).
        field: the offending column.
        reason: a dead-letter reason name (``wrong_type``, ``missing_field``, ...) or
            ``unknown_field``.
        bad_rows: how many rows are bad in total.
    """

    def __init__(self, source: str, row: int, field: str, reason: str, detail: str,
                 bad_rows: int) -> None:
        more = f" ({bad_rows - 1} more bad rows)" if bad_rows > 1 else ""
        super().__init__(f"push to '{source}': row {row}, field '{field}': {reason}: "
                         f"{detail}{more}; nothing was pushed")
        self.row, self.field, self.reason, self.bad_rows = row, field, reason, bad_rows


@dataclass(frozen=True)
class PushReport:
    """What a successful push appended."""

    topic: str
    records: int
    key_fields: tuple[str, ...]
    min_ts: int | None
    max_ts: int | None


class _Bad(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _to_rows(rows: Rows) -> list[dict[str, Any]]:
    if isinstance(rows, pa.Table):
        return rows.to_pylist()
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame
        df = rows.reset_index(drop=True)
        # Arrow reads NaN/NaT/None as null and keeps naive vs aware datetimes apart.
        return pa.Table.from_pandas(df, preserve_index=False).to_pylist()
    return [dict(r) for r in rows]


def _time(v: Any) -> int:
    if isinstance(v, dt.datetime) and (v.tzinfo is None or v.utcoffset() is None):
        raise _Bad(Reason.NAIVE_TIMESTAMP, f"{v!r} has no time zone")
    if isinstance(v, float):
        raise _Bad(Reason.WRONG_TYPE, f"expected a timestamp or int epoch ms, got float {v}")
    try:
        return to_epoch_ms(v)
    except TimestampError as e:
        naive = "no time zone" in str(e) or (isinstance(v, str) and _naive_iso(v))
        raise _Bad(Reason.NAIVE_TIMESTAMP if naive else Reason.WRONG_TYPE,
                   str(e).split(": ", 1)[-1]) from None


def _naive_iso(v: str) -> bool:
    try:
        return dt.datetime.fromisoformat(v).tzinfo is None
    except ValueError:
        return False


def _value(v: Any, dtype: DType, is_time: bool) -> Any:
    if is_time or dtype == DType.TIMESTAMP:
        return _time(v)
    t = type(v)
    is_bool = isinstance(v, (bool, np.bool_))
    if dtype == DType.INT64:
        if is_bool or not isinstance(v, Integral) or not _I64[0] <= v <= _I64[1]:
            raise _Bad(Reason.WRONG_TYPE, f"expected int64, got {t.__name__} {v!r}")
        return int(v)
    if dtype == DType.FLOAT64:
        if is_bool or not isinstance(v, Real):
            raise _Bad(Reason.WRONG_TYPE, f"expected float64, got {t.__name__} {v!r}")
        if not math.isfinite(v):
            raise _Bad(Reason.NON_FINITE, f"{v} is not finite")
        return float(v)
    if dtype == DType.STRING:
        if not isinstance(v, str):
            raise _Bad(Reason.WRONG_TYPE, f"expected string, got {t.__name__} {v!r}")
        return v
    if not is_bool:
        raise _Bad(Reason.WRONG_TYPE, f"expected bool, got {t.__name__} {v!r}")
    return bool(v)


def encode_rows(source: StreamSource, rows: Rows,
                key_fields: Sequence[str] | None = None) -> list[RecordIn]:
    """Validate every row and encode it as a ``(key, value, timestamp_ms)`` record.

    Raises:
        PushError: the first bad row (with the count of bad rows); no partial result.
    """
    schema = source.schema
    keys = list(default_key_fields(source) if key_fields is None else key_fields)
    for k in keys:
        if k not in schema:
            raise PushError(source.name, 0, k, "unknown_field",
                            f"key field not in the schema ({', '.join(schema)})", 1)
    times = {source.timestamp_field, source.created_timestamp_field}
    required = {*keys, source.timestamp_field}
    out: list[RecordIn] = []
    first: tuple[int, str, str, str] | None = None
    bad = 0
    for i, row in enumerate(_to_rows(rows)):
        field = next((c for c in row if c not in schema), None)
        try:
            if field is not None:
                raise _Bad("unknown_field", f"not in the schema of '{source.name}' "
                           f"({', '.join(schema)}); select the schema columns")
            obj: dict[str, Any] = {}
            for field, dtype in schema.items():
                v = row.get(field)
                if v is None:
                    if field in required:
                        raise _Bad(Reason.MISSING_FIELD, "missing or null")
                    obj[field] = None
                else:
                    obj[field] = _value(v, dtype, field in times)
            key = orjson.dumps({k: obj[k] for k in keys}) if keys else None
            out.append((key, orjson.dumps(obj), obj[source.timestamp_field]))
        except _Bad as e:
            bad += 1
            if first is None:
                hint = _HINT.get(Reason(e.reason)) if e.reason in _REASONS else None
                first = (i, str(field), str(e.reason), e.detail + (f"; {hint}" if hint else ""))
    if first is not None:
        raise PushError(source.name, *first, bad_rows=bad)
    return out


def push(log: Log, source: StreamSource, rows: Rows,
         key_fields: Sequence[str] | None = None) -> PushReport:
    """Validate ``rows`` and append them to ``source.topic`` (created if missing), flushed.

    Args:
        log: the project's log (:func:`braid_streaming.log.open_log`).
        source: the stream source the rows belong to.
        rows: a list of dicts, a pandas DataFrame or a pyarrow Table of source columns.
        key_fields: the entity key columns; default: the first int64/string ``*_id`` field.

    Raises:
        PushError: a row is invalid (nothing produced).
        LogError: the log refused or the broker is unreachable.
    """
    records = encode_rows(source, rows, key_fields)
    if not log.topic_exists(source.topic):
        log.create_topic(source.topic, source.partitions)
    log.produce(source.topic, records)
    log.flush()
    ts = [r[2] for r in records]
    keys = tuple(default_key_fields(source) if key_fields is None else key_fields)
    return PushReport(source.topic, len(records), keys, min(ts, default=None),
                      max(ts, default=None))
