"""Point-in-time values against the Python reference of DESIGN §4.1-4.2 on edge-case data."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from braid.repo import Repo, load_repo
from braid_batch.backfill import backfill
from braid_batch.pit import get_historical_features
from braid_batch.testing import (
    MIN5,
    T0,
    TRICKY_DEFS,
    TRICKY_TYPES,
    make_repo,
    ref_aggregation,
    ref_projection,
    source_events,
    tricky_events,
    tricky_times,
    write_events,
)

USER_FEATURES = [
    "user_tx:amount", "user_tx:cat", "user_tx:count_1h", "user_tx:amount_sum_1h",
    "user_tx:amount_mean_10m", "user_tx:amount_min_1d", "user_tx:amount_max_1d",
    "user_tx:amount_last_1h", "user_tx:amount_var_1h", "user_tx:amount_stddev_1d",
    "user_tx:score_sum_2h",
]
PAIR_FEATURES = ["pair:score", "pair:score_max_30m"]


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = make_repo(tmp_path / "repo", TRICKY_DEFS)
    write_events(root / "data" / "tx.parquet", tricky_events(), TRICKY_TYPES)
    return load_repo(root)


def entity_rows(seed: int = 1, n: int = 200) -> pd.DataFrame:
    rnd = random.Random(seed)
    events = tricky_events()
    times = tricky_times(events)
    times += [T0 + rnd.randrange(-86_400_000, 2 * 86_400_000) for _ in range(n)]
    rows = [(rnd.randrange(0, 9), rnd.choice(["m1", "m2", "m3"]), t) for t in times]
    rows += [(ev["user_id"], ev["merchant_id"], t) for ev, t in zip(events[:14], times, strict=False)]
    df = pd.DataFrame(rows, columns=["user_id", "merchant_id", "t"])
    df["event_timestamp"] = pd.to_datetime(df["t"], unit="ms", utc=True)
    return df


def same(got: Any, want: Any) -> bool:
    if want is None:
        return got is None or (isinstance(got, float) and math.isnan(got))
    if isinstance(want, float):
        return got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    return bool(got == want)


def check_against_reference(repo: Repo, result: pd.DataFrame, df: pd.DataFrame,
                            as_of_known: bool = False) -> int:
    source = repo.config.resolve("data/tx.parquet")
    checked = 0
    for view, refs in (("user_tx", USER_FEATURES), ("pair", PAIR_FEATURES)):
        plan = repo.plan(view)
        events = source_events(plan, source)
        aggs = {a.name: a for a in plan.aggregations}
        for i, row in df.iterrows():
            key = tuple(row[k] for k in plan.key_names)
            want = ref_projection(plan, events, key, int(row["t"]), as_of_known)
            for ref in refs:
                name = ref.split(":")[1]
                if name in aggs:
                    want[name] = ref_aggregation(aggs[name], plan, events, key, int(row["t"]),
                                                 as_of_known)
                got = result.loc[i, name]
                assert same(got, want[name]), (view, name, key, int(row["t"]), got, want[name])
                checked += 1
    return checked


@pytest.mark.parametrize("mode", ["raw", "backfilled", "cutoff"])
def test_values_match_reference(repo: Repo, mode: str) -> None:
    if mode == "backfilled":
        backfill(repo, progress=False)
    elif mode == "cutoff":  # tiles from T0 on are not in the offline store (streaming owns them)
        backfill(repo, progress=False, cutoffs={MIN5: T0, 60_000: T0, 3_600_000: T0})
    df = entity_rows()
    result = get_historical_features(repo, df, USER_FEATURES + PAIR_FEATURES).to_pandas()
    assert len(result) == len(df)
    assert check_against_reference(repo, result, df) == len(df) * 13


def test_as_of_known_matches_reference(repo: Repo) -> None:
    backfill(repo, progress=False)
    df = entity_rows(seed=2)
    result = get_historical_features(repo, df, USER_FEATURES + PAIR_FEATURES,
                                     as_of_known=True).to_pandas()
    assert check_against_reference(repo, result, df, as_of_known=True) == len(df) * 13


@pytest.fixture
def small_repo(tmp_path: Path) -> Repo:
    root = make_repo(tmp_path / "small", TRICKY_DEFS)
    write_events(root / "data" / "tx.parquet", tricky_events(n_random=0), TRICKY_TYPES)
    return load_repo(root)


def test_edge_cases_by_hand(small_repo: Repo) -> None:
    repo = small_repo
    df = pd.DataFrame({
        "user_id": [1, 1, 1, 2, 3, 3, 3, 9, 4],
        "t": [T0 + 1000, T0 + 1000 + 3_600_000, T0 + 1001 + 3_600_000, T0 + 5000,
              T0 + MIN5, T0 + 13 * MIN5 - 1, T0 + 13 * MIN5, T0, -1],
    })
    df["event_timestamp"] = pd.to_datetime(df["t"], unit="ms", utc=True)
    out = get_historical_features(repo, df, ["user_tx:amount", "user_tx:cat",
                                             "user_tx:count_1h", "user_tx:amount_sum_1h",
                                             "user_tx:amount_mean_10m"]).to_pandas()
    # same ts: greatest created wins; exactly ttl old still counts; one ms more is NULL
    assert out["amount"].tolist()[:2] == [2.0, 2.0] and math.isnan(out["amount"][2])
    assert out["cat"].tolist()[:3] == ["b", "b", "none"]  # default when NULL
    assert out["cat"][3] == "b"  # same ts and created: greatest value encoding
    # one hour later the tile of T0 has left the window (effective length in [W-h, W));
    # count() counts rows whose amount is NULL; pre-epoch tiles use floor arithmetic
    assert out["count_1h"].tolist() == [3, 0, 0, 2, 1, 4, 3, 0, 2]
    # tile boundary: at 13*5m-1 the window holds tiles 1..11 and the head (tile 12); at
    # 13*5m it holds tiles 2..12, so the event at exactly 1*5m has left
    assert out["amount_sum_1h"][5] == 4.0 + 6.0 + 7.0
    assert out["amount_sum_1h"][6] == 6.0 + 7.0
    assert out["amount_sum_1h"][7] == 0.0  # empty window: sum 0
    assert math.isnan(out["amount_mean_10m"][7])  # empty window: mean NULL


def test_late_events_excluded_unless_asked(small_repo: Repo) -> None:
    repo = small_repo
    df = pd.DataFrame({"user_id": [5], "event_timestamp": [pd.Timestamp(T0 + 15_000, unit="ms",
                                                                        tz="UTC")]})
    feats = ["user_tx:count_1h", "user_tx:amount"]
    assert get_historical_features(repo, df, feats).to_pandas()["count_1h"][0] == 0
    late = get_historical_features(repo, df, feats, include_late=True).to_pandas()
    assert late["count_1h"][0] == 1
    assert late["amount"][0] == 100.0


def test_as_of_known_hides_rows_created_later(small_repo: Repo) -> None:
    repo = small_repo
    t = pd.Timestamp(T0 + 2500, unit="ms", tz="UTC")
    df = pd.DataFrame({"user_id": [1, 1], "event_timestamp": [t, t]})
    assert get_historical_features(repo, df, ["user_tx:amount"]).to_pandas()["amount"].tolist() \
        == [2.0, 2.0]
    known = get_historical_features(repo, df, ["user_tx:amount"], as_of_known=True).to_pandas()
    assert known["amount"].tolist() == [1.0, 1.0]
