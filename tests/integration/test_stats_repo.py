"""Statistics over a real repository (DESIGN §9): populations (rows; values at tile closes)
against point-in-time reads, leakage as of a cutoff, scaler parity training vs serving, the
stream delta guard, and the CLI."""

from __future__ import annotations

import shutil

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from braid.examples.fraud import FraudDataSpec, generate
from braid.stats import FeatureStats
from braid.stats.snapshots import merged_as_of
from braid.stats.stream import apply_stream_delta, stats_delta
from braid.store import FeatureStore
from braid.timeutil import DAY
from braid_batch.offline import OfflineStore
from braid_batch.stats import compute_stats
from tests.conftest import EXAMPLE_REPO

END = 1_767_225_600_000  # 2026-01-01T00:00:00Z
T = END + 90_000
CUTOFF = END - 2 * DAY


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    root = tmp_path_factory.mktemp("stats_repo")
    for f in EXAMPLE_REPO.glob("*.py"):
        shutil.copy(f, root / f.name)
    shutil.copy(EXAMPLE_REPO / "braid.yaml", root / "braid.yaml")
    generate(FraudDataSpec(events=4_000, days=5, end_ms=END, seed=9), root / "data")
    s = FeatureStore(root)
    s.apply()
    s.backfill(progress=False)
    compute_stats(s.repo, s.registry)
    return s


def pit_values(store: FeatureStore, ref: str, keys: str, times: list[int],
               ids: list[int]) -> np.ndarray:
    df = pd.DataFrame({keys: ids, "event_timestamp": pd.to_datetime(times, unit="ms", utc=True)})
    out = store.get_historical_features(df, features=[ref]).to_pandas()
    return out[ref.split(":")[1]].to_numpy(dtype=float)


@pytest.mark.parametrize("ref", ["user_txn_stats:amount_sum_1h", "user_txn_stats:amount_stddev_7d",
                                 "merchant_risk:online_large_count_24h"])
def test_aggregated_population_is_the_value_at_each_tile_close(store: FeatureStore,
                                                               ref: str) -> None:
    view, name = ref.split(":")
    plan = store.repo.plan(view)
    agg = next(a for a in plan.aggregations if a.name == name)
    key = plan.key_names[0]
    con = duckdb.connect()
    tiles = OfflineStore.for_repo(store.repo).tiles_relation(con, plan, agg.hop).to_arrow_table()
    ids = tiles.column(key).to_pylist()
    closes = [t + agg.hop - 1 for t in tiles.column("tile_start").to_pylist()]
    want = pit_values(store, ref, key, closes, ids)
    merged = store.stats(ref)
    assert merged is not None and merged.population == "tile_close"
    s = merged.stats
    present = want[~np.isnan(want)]
    assert (s.n, s.count.nulls) == (present.size, want.size - present.size)
    assert s.mean == pytest.approx(present.mean(), rel=1e-9)
    assert s.std() == pytest.approx(present.std(), rel=1e-9)
    # floats never compare exactly, not even batch against batch (DESIGN §4.8)
    assert s.min.get() == pytest.approx(present.min(), rel=1e-12)
    assert s.max.get() == pytest.approx(present.max(), rel=1e-12)


def test_projection_population_is_every_row(store: FeatureStore) -> None:
    plan = store.repo.plan("user_profile")
    con = duckdb.connect()
    rows = OfflineStore.for_repo(store.repo).rows_relation(con, plan).to_arrow_table()
    x = rows.column("credit_limit").to_numpy(zero_copy_only=False).astype(float)
    merged = store.stats("user_profile:credit_limit")
    assert merged is not None and merged.population == "rows"
    assert merged.stats.n == x.size
    assert merged.stats.mean == pytest.approx(x.mean(), rel=1e-12)
    assert merged.stats.moments.get() == pytest.approx(x.var(), rel=1e-12)


def test_stats_as_of_a_cutoff_ignore_later_events(store: FeatureStore) -> None:
    plan = store.repo.plan("user_profile")
    con = duckdb.connect()
    rows = OfflineStore.for_repo(store.repo).rows_relation(con, plan).to_arrow_table()
    ts = rows.column("_ts").to_numpy()
    x = rows.column("age").to_numpy(zero_copy_only=False).astype(float)
    for as_of in (CUTOFF - 1, CUTOFF + DAY // 2):
        merged = store.stats("user_profile:age", as_of=as_of)
        assert merged is not None and merged.end is not None and merged.end <= as_of + 1
        before = x[ts < merged.end]
        assert merged.stats.n == before.size  # nothing after the cutoff, nothing before lost
        assert merged.stats.mean == pytest.approx(before.mean(), rel=1e-12)
        assert merged.stats.n < x.size


def test_scaled_training_equals_scaled_serving(store: FeatureStore) -> None:
    store.materialize(now=T)
    users = list(range(1, 60))
    merchants = [(u % 50) + 1 for u in users]
    df = pd.DataFrame({"user_id": users, "merchant_id": merchants,
                       "event_timestamp": pd.to_datetime([T] * len(users), unit="ms", utc=True)})
    train = store.get_historical_features(df, service="fraud_v1", scale=True, stats_as_of=CUTOFF)
    raw = store.get_historical_features(df, service="fraud_v1").to_pandas()
    rows = [{"user_id": u, "merchant_id": m} for u, m in zip(users, merchants, strict=True)]
    live = store.get_online_features(rows, service="fraud_v1", now=T, scale=True).to_dict()
    scaled = train.to_pandas()
    stats = store.stats("user_txn_stats:amount_sum_1h", as_of=CUTOFF)
    assert stats is not None
    want = (raw["amount_sum_1h"] - stats.stats.mean) / stats.stats.std()
    assert np.allclose(scaled["amount_sum_1h"], want, rtol=1e-12)
    for name in ("amount_sum_1h", "credit_limit"):
        a = scaled[name].to_numpy(dtype=float)
        b = np.array([np.nan if v is None else v for v in live[name]], dtype=float)
        assert np.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True), name
    assert np.array_equal(scaled["age"].to_numpy(), raw["age"].to_numpy())  # not in scalers
    versions = train.versions
    assert versions == store.get_online_features(rows, service="fraud_v1", now=T,
                                                 scale=True).versions
    again = store.get_historical_features(df, service="fraud_v1", scale=True, stats_as_of=CUTOFF)
    assert again.versions == versions  # same statistics: the same version is re-used


def test_stream_delta_is_applied_once_per_offset_range(store: FeatureStore) -> None:
    plan = store.repo.plan("user_profile")
    t0 = END + 3 * DAY
    rows = pa.table({"user_id": [1, 2, 3], "_ts": [t0, t0 + 5, t0 + DAY],
                     "age": [30, None, 50], "credit_limit": [1.0, 2.0, 3.0]})
    delta = stats_delta(plan, rows)
    assert set(delta["user_profile:age"]) == {t0, t0 + DAY}
    reg, project = store.registry, store.project
    assert apply_stream_delta(reg, plan, delta, {0: (10, 13)}) == 4  # 2 features x 2 days
    assert apply_stream_delta(reg, plan, delta, {0: (10, 13)}) == 0  # replay: skipped
    later = stats_delta(plan, rows.slice(0, 1))
    assert apply_stream_delta(reg, plan, later, {0: (13, 14)}) == 2
    merged = merged_as_of(reg, project, "user_profile:age", t0 + DAY - 1, plan.namespace)
    assert merged is not None and merged.origins[0] == "stream"
    chunk = FeatureStats.from_dict(reg.stats_as_of(project, "user_profile:age", t0 + DAY).body[
        "stats"])
    assert (chunk.n, chunk.count.nulls, chunk.mean) == (2, 1, 30.0)


def test_cli_show_and_drift(store: FeatureStore) -> None:
    from braid.cli import stats as _  # noqa: F401  (registers the group)
    from braid.cli.main import cli

    runner = CliRunner()
    root = str(store.root)
    out = runner.invoke(cli, ["--repo", root, "stats", "show", "user_txn_stats:amount_sum_1h"])
    assert out.exit_code == 0, out.output
    assert "count" in out.output and "p50=" in out.output and "#" in out.output
    out = runner.invoke(cli, ["--repo", root, "stats", "drift", "user_txn_stats:amount_sum_1h",
                              "--between", str(CUTOFF), str(END)])
    assert out.exit_code == 0, out.output
    assert "mean shift (std units)" in out.output and "ks distance" in out.output
