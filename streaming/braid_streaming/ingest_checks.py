"""Building blocks of the decoder (:mod:`braid_streaming.ingest`): reasons, value kinds,
vectorized column checks, the DESIGN §4.4 lateness flags and the non-finite fallback."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa

from braid.dtypes import DType
from braid.errors import BraidError
from braid_streaming.log.base import Record

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


def _jtype(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), "null" if value is None else type(value).__name__)


def _wrong(name: str, want: str, value: Any) -> _Bad:
    return _Bad(Reason.WRONG_TYPE, f"field '{name}': expected {want}, got {_jtype(value)}",
                name)


_TARGET = {_INT: pa.int64(), _FLOAT: pa.float64(), _STR: pa.string(), _BOOL: pa.bool_(),
           _TIME: pa.int64()}
#: Arrow's inferred type of a column each kind accepts as is (int64 for floats: converted).
_INFERRED = {_INT: (pa.int64(),), _FLOAT: (pa.float64(), pa.int64()), _STR: (pa.string(),),
             _BOOL: (pa.bool_(),), _TIME: (pa.int64(),)}
_F53 = 2**53


def _int_ok(v: Any) -> bool:
    return type(v) is int and _I64[0] <= v <= _I64[1]


#: Per value: does it pass without the per-record rules (which name the reason otherwise)?
_OK_REQUIRED: dict[int, Callable[[Any], bool]] = {
    _INT: _int_ok, _TIME: _int_ok,
    _FLOAT: lambda v: type(v) is float or (type(v) is int and -_F53 <= v <= _F53),
    _STR: lambda v: type(v) is str, _BOOL: lambda v: type(v) is bool,
}


def _or_none(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


_OK = {k: _or_none(f) for k, f in _OK_REQUIRED.items()}


def _fast_column(col: list[Any], kind: int, required: bool) -> pa.Array | None:
    """The column typed by Arrow's inference when every value passes as is, else None."""
    try:
        arr = pa.array(col)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    if arr.null_count and required:
        return None
    if arr.type == pa.null():
        return pa.nulls(len(col), _TARGET[kind])
    if arr.type not in _INFERRED[kind]:
        return None
    if kind == _FLOAT:  # orjson refuses non-finite numbers; ints convert like float(v)
        return arr.cast(pa.float64(), safe=False)
    return arr


def _check_order(records: Sequence[Record]) -> None:
    last: dict[int, int] = {}
    get = last.get
    for rec in records:
        p, o = rec.partition, rec.offset
        if get(p, -1) >= o:
            raise IngestError(f"{rec.topic}/{p}: offset {o} after {last[p]}; records must be "
                              "in offset order")
        last[p] = o


def _late_flags(parts: np.ndarray, ts: np.ndarray, m: dict[int, int], lateness: int
                ) -> tuple[np.ndarray, dict[int, int]]:
    """Late flag per row (DESIGN §4.4) and M(p, o) of each late row; updates ``m``.

    M is the running max of the valid event times of the partition before the row (late
    events never raise it, so it is the running max of every valid row)."""
    late = np.zeros(len(ts), dtype=bool)
    behind: dict[int, int] = {}
    for p in np.unique(parts).tolist():
        sel = np.flatnonzero(parts == p)
        t = ts[sel]
        run = np.maximum.accumulate(t)
        prev = np.empty_like(t)
        prev[1:] = run[:-1]
        m0 = m.get(p)
        prev[0] = t[0] if m0 is None else m0
        if m0 is not None:
            prev = np.maximum(prev, m0)
        first = 0 if m0 is not None else 1
        if int(prev.min()) - lateness >= -(2**63):  # no int64 wrap: compare in numpy
            cand = np.flatnonzero(t[first:] < prev[first:] - lateness) + first
        else:
            cand = np.arange(first, len(t))
        for j in cand.tolist():
            if int(t[j]) < int(prev[j]) - lateness:
                late[sel[j]] = True
                behind[int(sel[j])] = int(prev[j])
        m[p] = int(run[-1]) if m0 is None else max(m0, int(run[-1]))
    return late, behind


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
