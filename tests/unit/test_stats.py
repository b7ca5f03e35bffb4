"""Every running statistic against numpy at every step, merge laws on random splits, state
round trips, numerical stability, the KLL rank-error bound, and scaler formulas (DESIGN §9)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from braid.stats import STATISTICS, FeatureStats, Quantiles, Statistic, Variance, drift
from braid.stats.scalers import fit_params, transform

Reference = Callable[[np.ndarray], Any]

#: numpy two-pass references on the present values (NaN = missing)
REFERENCES: dict[str, Reference] = {
    "count": lambda x: int(np.count_nonzero(~np.isnan(x))),
    "mean": lambda x: float(np.nanmean(x)),
    "variance": lambda x: float(np.nanvar(x)),
    "min": lambda x: float(np.nanmin(x)),
    "max": lambda x: float(np.nanmax(x)),
}


def check(kind: str, stat: Statistic, seen: np.ndarray) -> None:
    present = seen[~np.isnan(seen)]
    if kind == "quantiles":
        assert isinstance(stat, Quantiles)
        assert stat.n == present.size
        eps = stat.rank_error()
        ordered = np.sort(present)
        for q in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99):
            v = stat.quantile(q)
            lo = np.searchsorted(ordered, v, side="left") / ordered.size
            hi = np.searchsorted(ordered, v, side="right") / ordered.size
            assert lo - eps <= q <= hi + eps, (q, lo, hi, eps)
        return
    want = REFERENCES[kind](seen)
    got = stat.get()
    if isinstance(want, int):
        assert got == want
    else:
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_every_statistic_has_a_reference() -> None:
    assert set(STATISTICS) == set(REFERENCES) | {"quantiles"}


@pytest.mark.parametrize("kind", sorted(STATISTICS))
def test_statistic_against_numpy_at_every_step(kind: str) -> None:
    rng = np.random.default_rng(7)
    stat = STATISTICS[kind]()
    seen = np.empty(0)
    for step in range(12):
        batch = rng.normal(5.0, 2.0, size=int(rng.integers(1, 3000)))
        batch[rng.random(batch.size) < 0.05] = np.nan
        # alternate numpy and Arrow (with real NULLs) inputs
        stat.update(batch if step % 2 else pa.array(batch, from_pandas=True))
        seen = np.concatenate([seen, batch])
        check(kind, stat, seen)
        check(kind, Statistic.from_dict(stat.to_dict()), seen)


@pytest.mark.parametrize("kind", sorted(STATISTICS))
@pytest.mark.parametrize("seed", range(5))
def test_merge_is_associative_and_commutative(kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = rng.lognormal(1.0, 1.5, size=20_000)
    cuts = np.sort(rng.choice(np.arange(1, data.size), size=int(rng.integers(1, 12)),
                              replace=False))
    parts = []
    for piece in np.split(data, cuts):
        s = STATISTICS[kind]()
        s.update(piece)
        parts.append(s)
    left = parts[0].copy()
    for p in parts[1:]:
        left.merge(p.copy())
    order = rng.permutation(len(parts))
    tree = [parts[i].copy() for i in order]
    while len(tree) > 1:  # pairwise, shuffled: a different association and order
        tree = [tree[i].merge(tree[i + 1]) if i + 1 < len(tree) else tree[i]
                for i in range(0, len(tree), 2)]
    for merged in (left, tree[0]):
        check(kind, merged, data)


def test_chan_merge_is_stable_on_a_large_offset() -> None:
    rng = np.random.default_rng(3)
    x = 1e9 + rng.normal(0.0, 1.0, size=1_000_000)
    v = Variance()
    for batch in np.array_split(x, 100):
        v.update(batch)
    assert abs(v.mean - x.mean()) / x.mean() <= 1e-15
    assert abs(v.get() - x.var()) / x.var() <= 1e-12  # type: ignore[operator]
    merged = Variance()
    for batch in np.array_split(x, 1000)[::-1]:
        part = Variance()
        part.update(batch)
        merged.merge(part)
    assert abs(merged.get() - x.var()) / x.var() <= 1e-12  # type: ignore[operator]


def test_well_conditioned_mean_and_variance_to_1e_12() -> None:
    x = np.random.default_rng(11).normal(3.0, 0.5, size=100_000)
    v = Variance()
    for batch in np.array_split(x, 10):
        v.update(batch)
    assert abs(v.mean - x.mean()) / abs(x.mean()) <= 1e-12
    assert abs(v.get() - x.var()) / x.var() <= 1e-12  # type: ignore[operator]
    assert v.sample() == pytest.approx(x.var(ddof=1), rel=1e-12)


def test_kll_rank_error_within_documented_bound_for_k() -> None:
    for k in (64, 200):
        q = Quantiles(k)
        x = np.random.default_rng(k).exponential(size=200_000)
        for batch in np.array_split(x, 20):
            q.update(batch)
        check("quantiles", q, x)
    assert Quantiles(200).rank_error() == pytest.approx(0.0133, abs=1e-3)  # the documented 1.33%


def test_feature_stats_counts_nulls_and_round_trips() -> None:
    fs = FeatureStats()
    fs.update(pa.array([1.0, None, 3.0, None]))
    fs.update(np.array([np.nan, 5.0]))
    s = fs.summary()
    assert (s["count"], s["nulls"], s["mean"], s["min"], s["max"]) == (3, 3, 3.0, 1.0, 5.0)
    assert s["std"] == pytest.approx(np.std([1.0, 3.0, 5.0]), rel=1e-15)
    assert FeatureStats.from_dict(fs.to_dict()).summary() == s
    assert sum(f for _, _, f in fs.histogram(4)) == pytest.approx(1.0)


def test_drift_sees_a_shift() -> None:
    rng = np.random.default_rng(1)
    a = FeatureStats().update(rng.normal(0, 2, 50_000))
    same = FeatureStats().update(rng.normal(0, 2, 50_000))
    moved = FeatureStats().update(rng.normal(1, 2, 50_000))
    assert abs(drift(a, same)["mean_shift"]) < 0.03  # type: ignore[arg-type]
    assert drift(a, moved)["mean_shift"] == pytest.approx(0.5, abs=0.03)
    assert drift(a, same)["ks"] < 0.03 < 0.15 < drift(a, moved)["ks"]  # type: ignore[operator]


def test_scaler_formulas() -> None:
    x = np.random.default_rng(2).normal(10, 3, 10_001)
    fs = FeatureStats().update(x)
    std = transform("standard", fit_params("standard", fs), x)
    assert std.mean() == pytest.approx(0.0, abs=1e-12) and std.std() == pytest.approx(1.0)
    mm = transform("minmax", fit_params("minmax", fs), x)
    assert (mm.min(), mm.max()) == (0.0, 1.0)
    rb = transform("robust", fit_params("robust", fs), x)
    assert np.median(rb) == pytest.approx(0.0, abs=0.02)
    qt = transform("quantile", fit_params("quantile", fs), x)
    assert np.histogram(qt, bins=4, range=(0, 1))[0] / x.size == pytest.approx([0.25] * 4,
                                                                               abs=0.02)
    const = FeatureStats().update(np.full(5, 4.0))
    assert fit_params("standard", const)["scale"] == 1.0  # zero scale -> 1, as scikit-learn


def test_standard_scaler_matches_scikit_learn() -> None:
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    x = np.random.default_rng(4).normal(1e3, 7, size=(5000, 1))
    ours = transform("standard", fit_params("standard", FeatureStats().update(x[:, 0])), x[:, 0])
    theirs = preprocessing.StandardScaler().fit_transform(x)[:, 0]
    assert np.max(np.abs(ours - theirs)) <= 1e-9


def test_import_braid_does_not_import_datasketches() -> None:
    code = "import braid, braid.stats, sys; print('datasketches' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
