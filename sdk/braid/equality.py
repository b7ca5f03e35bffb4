"""Equality of feature values across engines (DESIGN §4.8).

Counts, min, max, last and timestamps compare exactly; integer sums compare exactly. Float
sums, means and variances compare within bounds computed from the log (the window's input
values), never exactly, not even batch against batch:

* sum:  ``|a-b| <= 1e-9*max(|a|,|b|) + 4*n*2^-52*sum(|x|)``
* mean: the sum bound divided by n
* var:  ``|a-b| <= 1e-9*max(|a|,|b|) + 4*n*2^-52*(mean^2 + var)``
* stddev (not spelled out in §4.8; braid's reading): the squares compare under the var bound,
  since stddev is defined as ``sqrt(var)``.

Example:
    >>> n, sum_abs, mean, var = log_stats([1e16, 1.0, -1e16, 3.0])
    >>> values_equal("sum", 4.0, 3.0, n, sum_abs, mean, var)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from braid.algebra import AggFunction

#: Relative tolerance constant of §4.8 (frozen after calibration in tests/conformance).
RELATIVE = 1e-9
#: Accumulated rounding constant: 4 * n * unit roundoff (2^-52).
ROUNDOFF = 4 * 2.0**-52

_EXACT = {AggFunction.COUNT, AggFunction.MIN, AggFunction.MAX, AggFunction.LAST}


def log_stats(values: Sequence[Any]) -> tuple[int, float, float, float]:
    """(n, sum(|x|), mean, sample var or 0.0) of the non-null inputs, computed exactly."""
    xs = [Fraction(v) for v in values if v is not None]
    n = len(xs)
    if n == 0:
        return 0, 0.0, 0.0, 0.0
    mean = sum(xs, Fraction(0)) / n
    var = sum(((x - mean) ** 2 for x in xs), Fraction(0)) / (n - 1) if n > 1 else Fraction(0)
    return n, float(sum(abs(x) for x in xs)), float(mean), float(var)


def _close(a: float, b: float, slack: float) -> bool:
    return abs(a - b) <= RELATIVE * max(abs(a), abs(b)) + slack


def values_equal(function: AggFunction | str | None, a: Any, b: Any, n: int = 0,
                 sum_abs: float = 0.0, mean: float = 0.0, var: float = 0.0) -> bool:
    """Whether two values of one feature agree under DESIGN §4.8.

    Args:
        function: the aggregation function, or None for a projection / timestamp (exact).
        a, b: the two values (None is NULL; equal only to None).
        n, sum_abs, mean, var: statistics of the window's non-null inputs, from the log
            (:func:`log_stats`).
    """
    if a is None or b is None:
        return a is None and b is None
    f = AggFunction(function) if function is not None else None
    if f is None or f in _EXACT:
        return bool(a == b) and type(a) is type(b) or _same_number(a, b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b  # integer sums are exact
    a, b = float(a), float(b)
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    if f == AggFunction.SUM:
        return _close(a, b, ROUNDOFF * n * sum_abs)
    if f == AggFunction.MEAN:
        return _close(a, b, ROUNDOFF * n * sum_abs / max(n, 1))
    slack = ROUNDOFF * n * (mean * mean + var)
    if f == AggFunction.VAR:
        return _close(a, b, slack)
    return _close(a * a, b * b, slack)  # STDDEV


def _same_number(a: Any, b: Any) -> bool:
    """Exact numeric equality across int/float (1 == 1.0), never across bool and number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    return isinstance(a, int | float) and isinstance(b, int | float) and a == b
