"""``FeatureStats``: every statistic of one feature, updated, merged and stored together."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from braid.stats.base import Statistic, StatsError, Values, split_values
from braid.stats.count import Count
from braid.stats.maximum import Max
from braid.stats.minimum import Min
from braid.stats.moments import Variance
from braid.stats.quantiles import DEFAULT_K, DEFAULT_PROBS, Quantiles


@dataclass
class FeatureStats:
    """Count and nulls, mean/variance, min, max and a KLL sketch of one feature.

    Example:
        >>> fs = FeatureStats(); fs.update(np.array([1.0, None, 3.0], dtype=object))
        >>> fs.summary()["nulls"], fs.summary()["mean"]
        (1, 2.0)
    """

    count: Count = field(default_factory=Count)
    moments: Variance = field(default_factory=Variance)
    min: Min = field(default_factory=Min)
    max: Max = field(default_factory=Max)
    quantiles: Quantiles | None = None
    k: int = DEFAULT_K

    def __post_init__(self) -> None:
        if self.quantiles is None:
            self.quantiles = Quantiles(self.k)

    @property
    def parts(self) -> tuple[Statistic, ...]:
        assert self.quantiles is not None
        return (self.count, self.moments, self.min, self.max, self.quantiles)

    def update(self, values: Values) -> FeatureStats:
        """Add a batch (numpy or Arrow); the input is converted once for all statistics."""
        arr, nulls = split_values(values)
        for part in self.parts:
            part._update(arr, nulls)
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Fold ``other`` in (in place); associative and commutative."""
        for mine, theirs in zip(self.parts, other.parts, strict=True):
            mine.merge(theirs)
        return self

    # ------------------------------------------------------------------ reading
    @property
    def n(self) -> int:
        return self.count.n

    @property
    def mean(self) -> float | None:
        return self.moments.mean if self.moments.n else None

    def std(self, ddof: int = 0) -> float | None:
        return self.moments.std(ddof)

    def get(self) -> dict[str, Any]:
        return self.summary()

    def summary(self, probs: tuple[float, ...] = DEFAULT_PROBS) -> dict[str, Any]:
        """count, nulls, mean, std (population), var, min, max, quantiles {p: value}."""
        assert self.quantiles is not None
        qs = self.quantiles.quantiles(probs)
        return {
            "count": self.count.n, "nulls": self.count.nulls, "mean": self.mean,
            "std": self.std(0), "var": self.moments.get(), "min": self.min.get(),
            "max": self.max.get(),
            "quantiles": None if qs is None else dict(zip(probs, qs, strict=True)),
        }

    def histogram(self, bins: int = 10) -> list[tuple[float, float, float]]:
        """``(lo, hi, fraction)`` over ``bins`` equal-width bins between min and max, from the
        sketch's CDF (approximate)."""
        lo, hi = self.min.get(), self.max.get()
        assert self.quantiles is not None
        if lo is None or hi is None:
            return []
        if hi <= lo:
            return [(lo, hi, 1.0)]
        edges = np.linspace(lo, hi, bins + 1)
        cdf = self.quantiles.cdf(list(edges[1:-1])) or []
        cum = [0.0, *cdf[:-1], 1.0]
        return [(float(edges[i]), float(edges[i + 1]), max(cum[i + 1] - cum[i], 0.0))
                for i in range(bins)]

    # ------------------------------------------------------------------ state
    def to_dict(self) -> dict[str, Any]:
        return {"kind": "feature_stats", "k": self.k,
                "parts": [p.to_dict() for p in self.parts]}

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> FeatureStats:
        if body.get("kind") != "feature_stats":
            raise StatsError(f"not a FeatureStats state (kind {body.get('kind')!r})")
        parts = [Statistic.from_dict(p) for p in body["parts"]]
        count, moments, lo, hi, qs = parts
        return cls(count, moments, lo, hi, qs, int(body["k"]))  # type: ignore[arg-type]

    def copy(self) -> FeatureStats:
        return FeatureStats.from_dict(self.to_dict())


def drift(a: FeatureStats, b: FeatureStats, points: int = 200) -> dict[str, float | None]:
    """How far ``b`` moved from ``a``.

    ``mean_shift``: (mean_b - mean_a) / std_a (population std of ``a``; None if it is 0);
    ``ks``: the greatest CDF difference over a grid of both sketches' quantiles (a KS-like
    distance, approximate to the sketches' rank error).
    """
    out: dict[str, float | None] = {"mean_shift": None, "ks": None}
    if a.n == 0 or b.n == 0:
        return out
    sa = a.std(0)
    if sa and a.mean is not None and b.mean is not None:
        out["mean_shift"] = (b.mean - a.mean) / sa
    assert a.quantiles is not None and b.quantiles is not None
    probs = list(np.linspace(0.0, 1.0, points))
    grid = sorted({*(a.quantiles.quantiles(probs) or []), *(b.quantiles.quantiles(probs) or [])})
    grid = [g for g in grid if math.isfinite(g)]
    ca, cb = a.quantiles.cdf(grid) or [], b.quantiles.cdf(grid) or []
    out["ks"] = max((abs(x - y) for x, y in zip(ca, cb, strict=True)), default=0.0)
    return out
