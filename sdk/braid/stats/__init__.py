"""Running statistics and scalers (DESIGN §9).

One small module per statistic (count, moments, min, max, quantiles), each with ``update`` /
``merge`` / ``get`` and a JSON state; :class:`FeatureStats` bundles them per feature.
Snapshots live in the registry (:mod:`braid.stats.snapshots`); scalers are fitted from a
snapshot as of a cutoff (:mod:`braid.stats.scalers`). ``datasketches`` is imported only when a
quantile sketch is built.

Example:
    >>> import numpy as np
    >>> from braid.stats import FeatureStats
    >>> fs = FeatureStats().update(np.random.default_rng(0).normal(size=10_000))
    >>> round(fs.summary()["std"], 1)
    1.0
"""

from braid.stats.base import STATISTICS, Statistic, StatsError, split_values
from braid.stats.bundle import FeatureStats, drift
from braid.stats.count import Count
from braid.stats.maximum import Max
from braid.stats.minimum import Min
from braid.stats.moments import Mean, Variance
from braid.stats.quantiles import Quantiles

__all__ = [
    "STATISTICS", "Count", "FeatureStats", "Max", "Mean", "Min", "Quantiles", "Statistic",
    "StatsError", "Variance", "drift", "split_values",
]
