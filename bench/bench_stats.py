"""Running mean/variance update throughput and accuracy: braid vs scikit-learn vs river.

10M values of 1e9 + N(0, 1) in batches of 10k, fed to:

* braid ``Variance`` (per-batch corrected two-pass, Chan merge with a shift) and the full
  ``FeatureStats`` bundle (count, moments, min, max, KLL sketch);
* scikit-learn ``StandardScaler.partial_fit`` (the raw baseline the target is set against);
* river ``stats.Var`` (per value, its API; measured on a prefix, 1M values by default).

Accuracy is the relative error of the mean and population variance against numpy's two-pass
over all values. Not a test: prints numbers and ratios measured in the same run.

Run: ``python bench/bench_stats.py [--values 10000000] [--batch 10000]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np


def timed(fn: Callable[[], tuple[float, float]]) -> tuple[float, float, float]:
    t = time.perf_counter()
    mean, var = fn()
    return time.perf_counter() - t, mean, var


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--river-values", type=int, default=1_000_000,
                        help="river updates per value in Python: measured on a prefix")
    args = parser.parse_args()
    x = 1e9 + np.random.default_rng(0).normal(0.0, 1.0, size=args.values)
    batches = [x[i:i + args.batch] for i in range(0, x.size, args.batch)]
    ref_mean, ref_var = float(x.mean()), float(x.var())

    from braid.stats import Count, FeatureStats, Max, Min, Variance

    def braid_variance() -> tuple[float, float]:
        v = Variance()
        for b in batches:
            v.update(b)
        return v.mean, v.get() or 0.0

    def braid_moments() -> tuple[float, float]:
        # what the target compares with partial_fit: count, mean/variance, min, max
        c, v, lo, hi = Count(), Variance(), Min(), Max()
        for b in batches:
            c.update(b)
            v.update(b)
            lo.update(b)
            hi.update(b)
        return v.mean, v.get() or 0.0

    def braid_bundle() -> tuple[float, float]:
        fs = FeatureStats()
        for b in batches:
            fs.update(b)
        return fs.moments.mean, fs.moments.get() or 0.0

    from sklearn.preprocessing import StandardScaler

    def sklearn() -> tuple[float, float]:
        s = StandardScaler()
        for b in batches:
            s.partial_fit(b.reshape(-1, 1))
        return float(s.mean_[0]), float(s.var_[0])

    from river import stats as rstats

    prefix = x[: args.river_values]

    def river() -> tuple[float, float]:
        v = rstats.Var(ddof=0)
        update = v.update
        for value in prefix.tolist():
            update(value)
        return float(v.mean.get()), float(v.get())

    rows = []
    for name, fn, n in (("braid Variance", braid_variance, x.size),
                        ("braid count+mean/var+min+max", braid_moments, x.size),
                        ("braid FeatureStats (+min/max/KLL)", braid_bundle, x.size),
                        ("sklearn StandardScaler.partial_fit", sklearn, x.size),
                        ("river stats.Var (per value)", river, prefix.size)):
        fn()  # warm up imports and caches
        seconds, mean, var = timed(fn)
        want_mean, want_var = (ref_mean, ref_var) if n == x.size else (
            float(prefix.mean()), float(prefix.var()))
        rows.append((name, n / seconds, abs(mean - want_mean) / abs(want_mean),
                     abs(var - want_var) / want_var))
    base = rows[3][1]
    print(f"{args.values:,} values of 1e9 + N(0,1), batches of {args.batch:,} "
          f"(river: first {args.river_values:,}, per value)")
    print(f"{'implementation':<38} {'values/s':>14} {'vs sklearn':>10} {'mean rel err':>13} "
          f"{'var rel err':>12}")
    for name, rate, em, ev in rows:
        print(f"{name:<38} {rate:>14,.0f} {rate / base:>9.2f}x {em:>13.1e} {ev:>12.1e}")


if __name__ == "__main__":
    main()
