"""Mean and variance: (n, mean, m2) states, built per batch, merged by Chan's rule.

Each batch is reduced with numpy in two passes (mean, then the sum of squared deviations
from it, with the corrected two-pass term); the batch's (n, mean, m2) is then folded into the
running state with :func:`braid.algebra.chan`, the same merge every engine uses (DESIGN §5).
No sum of squares is ever formed.

Means are kept relative to a ``shift`` (the first value seen). On data like 1e9 + N(0, 1) a
mean stored as ~1e9 is quantized to 1.2e-7, and Chan's ``delta * delta * na * nb / n`` term
amplifies that over many batches (measured: 3e-11 relative error of the variance after 37
merges); shifted means are small numbers with full precision, so merged results match a
numpy two-pass over all data to ~1e-15.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from braid.algebra import chan
from braid.stats.base import Statistic


class Variance(Statistic):
    """Population variance (ddof = 0, as scikit-learn's scalers); ``sample()`` for ddof = 1.

    Example:
        >>> v = Variance(); v.update(np.array([1.0, 2.0, 3.0, 4.0]))
        >>> v.get(), v.mean, v.sample()
        (1.25, 2.5, 1.6666666666666667)
    """

    kind = "variance"

    def __init__(self, n: int = 0, mean: float = 0.0, m2: float = 0.0,
                 shift: float = 0.0) -> None:
        self.n = n
        self.shifted_mean = mean - shift
        self.m2 = m2
        self.shift = shift

    @property
    def mean(self) -> float:
        """The mean (0.0 while empty; :meth:`Mean.get` returns None then)."""
        return self.shift + self.shifted_mean

    def _update(self, arr: np.ndarray, nulls: int) -> None:
        size = int(arr.size)
        if size == 0:
            return
        if self.n == 0:
            self.shift = float(arr[0])
        m = float(arr.mean())
        dev = arr - m
        # corrected two-pass (Chan, Golub and LeVeque): corr fixes the rounding of m
        corr = float(dev.sum())
        # not np.dot: OpenBLAS would wake its thread pool, which then spins on every core
        # for a while after each call (half the runner's CPU instructions, measured), and
        # its threaded sum's order is not fixed; einsum sums in one deterministic loop
        m2 = float(np.einsum("i,i->", dev, dev)) - corr * corr / size
        self._fold(size, (m - self.shift) + corr / size, max(m2, 0.0))

    def _fold(self, n: int, shifted_mean: float, m2: float) -> None:
        if self.n == 0:
            self.n, self.shifted_mean, self.m2 = n, shifted_mean, m2
            return
        self.n, self.shifted_mean, self.m2 = chan((self.n, self.shifted_mean, self.m2),
                                                  (n, shifted_mean, m2))

    def _merge(self, other: Variance) -> None:
        if not other.n:
            return
        if not self.n:
            self.shift = other.shift
        self._fold(other.n, other.shifted_mean + (other.shift - self.shift), other.m2)

    def get(self) -> float | None:
        """Population variance m2 / n; None when empty."""
        return self.m2 / self.n if self.n else None

    def sample(self) -> float | None:
        """Sample variance m2 / (n - 1); None when n < 2."""
        return self.m2 / (self.n - 1) if self.n > 1 else None

    def std(self, ddof: int = 0) -> float | None:
        """Standard deviation with ``ddof`` (0: population)."""
        if self.n <= ddof:
            return None
        return math.sqrt(max(self.m2, 0.0) / (self.n - ddof))

    def _state(self) -> dict[str, Any]:
        return {"n": self.n, "shift": self.shift, "shifted_mean": self.shifted_mean,
                "m2": self.m2}

    @classmethod
    def _restore(cls, state: dict[str, Any]) -> Variance:
        out = cls(int(state["n"]), 0.0, float(state["m2"]), float(state["shift"]))
        out.shifted_mean = float(state["shifted_mean"])
        return out


class Mean(Variance):
    """The running mean; the same (n, mean, m2) state as :class:`Variance`."""

    kind = "mean"

    def get(self) -> float | None:  # type: ignore[override]
        return self.mean if self.n else None
