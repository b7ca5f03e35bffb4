"""The aggregation algebra: the one table every engine reads (DESIGN §4.3, §5).

Each function has a partial state (named fields), a build rule (events -> partial), a merge
rule per state (partial + partial -> partial), a finalizer, and an empty value. Renderers
(DuckDB SQL, Flink SQL, Redis Lua, the Python merge below) implement the five merge kinds
once and read everything else from :data:`ALGEBRA`; no other module maps function names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from braid.dtypes import DType
from braid.errors import BraidError

#: Stand-in for a missing created time: it sorts lowest in every engine (DESIGN §4.1).
MISSING_CREATED = -(2**63)
INT64_MAX = 2**63 - 1


class AggFunction(StrEnum):
    """Aggregation functions (closed set)."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    VAR = "var"
    STDDEV = "stddev"


class Merge(StrEnum):
    """How partial states combine. Renderers implement exactly these."""

    SUM = "sum"  # every field adds
    MIN = "min"  # v = least
    MAX = "max"  # v = greatest
    CHAN = "chan"  # (n, mean, m2): Chan et al. parallel variance
    LATEST = "latest"  # (ts, ct, v): the greatest by (ts, ct, v)


class Finalize(StrEnum):
    """How a partial becomes a feature value."""

    FIRST = "first"  # the first field as is (count, sum, min, max)
    RATIO = "ratio"  # s / n as float, NULL if n = 0 (mean)
    VAR = "var"  # m2 / (n - 1), NULL if n < 2 (population: m2 / n, NULL if n < 1)
    STDDEV = "stddev"  # sqrt(max(m2, 0) / (n - 1))
    VALUE = "value"  # the last field (last)


@dataclass(frozen=True)
class Spec:
    """One row of the algebra table."""

    function: AggFunction
    fields: tuple[str, ...]
    merge: Merge
    finalize: Finalize
    input_optional: bool = False
    needs_numeric: bool = True
    empty_is_zero: bool = False

    def field_types(self, input_type: DType | None) -> tuple[DType, ...]:
        """Types of the partial fields for an input column of ``input_type``."""
        return _FIELD_TYPES[self.function](input_type or DType.INT64)

    def output_type(self, input_type: DType | None) -> DType:
        """The finalized feature's type."""
        if self.finalize in (Finalize.RATIO, Finalize.VAR, Finalize.STDDEV):
            return DType.FLOAT64
        if self.function == AggFunction.COUNT:
            return DType.INT64
        if self.function == AggFunction.SUM:
            return DType.INT64 if input_type == DType.INT64 else DType.FLOAT64
        return input_type or DType.INT64

    def empty_value(self, input_type: DType | None) -> Any:
        """The value of a window with no non-null input (DESIGN §4.3, last column)."""
        if not self.empty_is_zero:
            return None
        return 0 if self.output_type(input_type) == DType.INT64 else 0.0


_FIELD_TYPES: dict[AggFunction, Callable[[DType], tuple[DType, ...]]] = {
    AggFunction.COUNT: lambda t: (DType.INT64,),
    AggFunction.SUM: lambda t: (DType.INT64 if t == DType.INT64 else DType.FLOAT64,),
    AggFunction.MEAN: lambda t: (DType.FLOAT64, DType.INT64),
    AggFunction.MIN: lambda t: (t,),
    AggFunction.MAX: lambda t: (t,),
    AggFunction.LAST: lambda t: (DType.INT64, DType.INT64, t),
    AggFunction.VAR: lambda t: (DType.INT64, DType.FLOAT64, DType.FLOAT64),
    AggFunction.STDDEV: lambda t: (DType.INT64, DType.FLOAT64, DType.FLOAT64),
}

ALGEBRA: dict[AggFunction, Spec] = {
    s.function: s
    for s in (
        Spec(AggFunction.COUNT, ("n",), Merge.SUM, Finalize.FIRST, input_optional=True,
             needs_numeric=False, empty_is_zero=True),
        Spec(AggFunction.SUM, ("s",), Merge.SUM, Finalize.FIRST, empty_is_zero=True),
        Spec(AggFunction.MEAN, ("s", "n"), Merge.SUM, Finalize.RATIO),
        Spec(AggFunction.MIN, ("v",), Merge.MIN, Finalize.FIRST, needs_numeric=False),
        Spec(AggFunction.MAX, ("v",), Merge.MAX, Finalize.FIRST, needs_numeric=False),
        Spec(AggFunction.LAST, ("ts", "ct", "v"), Merge.LATEST, Finalize.VALUE,
             needs_numeric=False),
        Spec(AggFunction.VAR, ("n", "mean", "m2"), Merge.CHAN, Finalize.VAR),
        Spec(AggFunction.STDDEV, ("n", "mean", "m2"), Merge.CHAN, Finalize.STDDEV),
    )
}


class OverflowError64(BraidError):
    """An integer sum left the int64 range (DESIGN §4.3: overflow is an error)."""


Partial = tuple[Any, ...] | None  # None is the empty partial


# ---------------------------------------------------------------- Python build / merge


def build(spec: Spec, events: Sequence[tuple[int, int | None, Any]]) -> Partial:
    """Partial state of ``events`` given as (ts, created or None, value); NULLs are ignored.

    ``count()`` without a column passes a non-None placeholder value per row.
    """
    out: Partial = None
    for ts, ct, v in events:
        if v is None:
            continue
        out = merge(spec, out, _single(spec, ts, ct, v))
    return out


def _single(spec: Spec, ts: int, ct: int | None, v: Any) -> tuple[Any, ...]:
    f = spec.function
    if f == AggFunction.COUNT:
        return (1,)
    if f == AggFunction.SUM:
        return (v,)
    if f == AggFunction.MEAN:
        return (float(v), 1)
    if spec.merge == Merge.CHAN:
        return (1, float(v), 0.0)
    if spec.merge == Merge.LATEST:
        return (ts, MISSING_CREATED if ct is None else ct, v)
    return (v,)


def merge(spec: Spec, a: Partial, b: Partial) -> Partial:
    """Combine two partials (either may be the empty partial ``None``)."""
    if a is None:
        return b
    if b is None:
        return a
    kind = spec.merge
    if kind == Merge.SUM:
        out = tuple(x + y for x, y in zip(a, b, strict=True))
        for value in out:
            if isinstance(value, int) and not -(2**63) <= value <= INT64_MAX:
                raise OverflowError64(f"{spec.function} overflowed int64 ({value})")
        return out
    if kind == Merge.MIN:
        return (min(a[0], b[0]),)
    if kind == Merge.MAX:
        return (max(a[0], b[0]),)
    if kind == Merge.CHAN:
        return chan(a, b)
    return a if tuple(a) >= tuple(b) else b  # LATEST


def chan(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[int, float, float]:
    """Chan et al.'s pairwise merge of (n, mean, m2) states."""
    return chan_fold(a, (b,))


def chan_fold(first: Sequence[Any], rest: Iterable[Sequence[Any]]) -> tuple[int, float, float]:
    """Chan's merge folded left over ``first`` and then each state of ``rest``.

    The one statement of the rule: :func:`chan` and the online read path's window folds call
    it (a fold in one call keeps the per-tile cost of a hot read loop low).
    """
    n, mean, m2 = first[0], float(first[1]), float(first[2])
    for nb, mb, m2b in rest:
        total = n + nb
        if total == 0:
            n, mean, m2 = 0, 0.0, 0.0
            continue
        delta = mb - mean
        mean = mean + delta * nb / total
        m2 = m2 + m2b + delta * delta * n * nb / total
        n = total
    return (n, mean, m2)


def merge_all(spec: Spec, partials: Sequence[Partial]) -> Partial:
    """Fold ``merge`` over partials, left to right."""
    out: Partial = None
    for p in partials:
        out = merge(spec, out, p)
    return out


def finalize(spec: Spec, partial: Partial, input_type: DType | None = None,
             population: bool = False) -> Any:
    """The feature value of a partial; the empty value of DESIGN §4.3 for ``None``."""
    if partial is None:
        return spec.empty_value(input_type)
    kind = spec.finalize
    if kind == Finalize.FIRST:
        return partial[0]
    if kind == Finalize.VALUE:
        return partial[-1]
    if kind == Finalize.RATIO:
        s, n = partial
        return float(s) / n if n else None
    n, _, m2 = partial
    dof = n if population else n - 1
    if dof < 1:
        return None
    var = m2 / dof
    if kind == Finalize.VAR:
        return var
    return math.sqrt(max(m2, 0.0) / dof)
