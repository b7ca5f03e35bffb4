"""get_historical_features: input forms, row order, duplicates, extra columns, errors, spine."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from braid.errors import CoverageError, EntityKeyError, TimestampError, UnknownFeatureError
from braid.repo import Repo, load_repo
from braid_batch.backfill import backfill
from braid_batch.pit import get_historical_features
from braid_batch.spine import SpineSpec
from braid_batch.testing import (
    T0,
    TRICKY_DEFS,
    TRICKY_TYPES,
    make_repo,
    tricky_events,
    write_events,
)

DAY = 86_400_000
FEATURES = ["user_tx:amount", "user_tx:count_1h", "pair:score"]


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = make_repo(tmp_path / "repo", TRICKY_DEFS)
    write_events(root / "data" / "tx.parquet", tricky_events(n_random=50), TRICKY_TYPES)
    return load_repo(root)


def frame() -> pd.DataFrame:
    ts = pd.to_datetime([T0 + 3000, T0 - 5, T0 + 3000, T0 + 90_000, T0 + 3000], unit="ms",
                        utc=True)
    return pd.DataFrame({"label": ["x", "y", "x", "z", "w"], "user_id": [1, 2, 1, 3, 1],
                         "merchant_id": ["m1", "m1", "m1", "m2", "m1"], "event_timestamp": ts})


def test_order_duplicates_and_extra_columns_kept(repo: Repo) -> None:
    df = frame()
    out = get_historical_features(repo, df, FEATURES).to_pandas()
    assert list(out.columns) == [*df.columns, "amount", "count_1h", "score"]
    assert out["label"].tolist() == df["label"].tolist()
    assert out["user_id"].tolist() == df["user_id"].tolist()
    assert (out["event_timestamp"] == df["event_timestamp"]).all()
    assert out.loc[0, "amount"] == out.loc[2, "amount"] == out.loc[4, "amount"] == 2.0
    assert out.loc[0, "count_1h"] == 3


def test_every_input_form_gives_the_same_rows(repo: Repo, tmp_path: Path) -> None:
    df = frame()
    want = get_historical_features(repo, df, FEATURES).to_arrow()
    table = pa.Table.from_pandas(df, preserve_index=False)
    path = tmp_path / "entities.parquet"
    pq.write_table(table, path)
    sql = f"SELECT * FROM read_parquet('{path}')"
    for form in (table, str(path), path, sql):
        got = get_historical_features(repo, form, FEATURES).to_arrow()
        assert got.drop_columns(["event_timestamp"]).equals(
            want.drop_columns(["event_timestamp"])), type(form)
    ints = df.assign(event_timestamp=df["event_timestamp"].astype("int64") // 10**6)
    got = get_historical_features(repo, ints, FEATURES).to_pandas()
    assert got["amount"].equals(want.to_pandas()["amount"])


def test_to_parquet_streams_the_same_rows(repo: Repo, tmp_path: Path) -> None:
    result = get_historical_features(repo, frame(), FEATURES)
    path = result.to_parquet(tmp_path / "out.parquet")
    assert pq.read_table(path).to_pylist() == result.to_arrow().to_pylist()


def test_naive_timestamps_are_refused_with_the_fix(repo: Repo) -> None:
    df = frame()
    df["event_timestamp"] = df["event_timestamp"].dt.tz_localize(None)
    with pytest.raises(TimestampError, match=r'tz_localize\("UTC"\)'):
        get_historical_features(repo, df, FEATURES)


def test_wrong_key_type_names_the_column(repo: Repo) -> None:
    df = frame().assign(user_id=lambda d: d["user_id"].astype(str))
    with pytest.raises(EntityKeyError, match="'user_id' is string but view 'user_tx' expects int64"):
        get_historical_features(repo, df, FEATURES)
    with pytest.raises(EntityKeyError, match="lacks key column 'merchant_id'"):
        get_historical_features(repo, frame().drop(columns="merchant_id"), FEATURES)


def test_unknown_feature_and_name_collisions(repo: Repo) -> None:
    with pytest.raises(UnknownFeatureError, match="amount"):
        get_historical_features(repo, frame(), ["user_tx:amout"])
    with pytest.raises(EntityKeyError, match="full_feature_names=True"):
        get_historical_features(repo, frame().assign(amount=1), FEATURES)
    out = get_historical_features(repo, frame().assign(amount=1), FEATURES,
                                  full_feature_names=True).to_pandas()
    assert "user_tx__amount" in out.columns and out["amount"].tolist() == [1] * 5


def test_spine_is_deterministic_and_sampled(repo: Repo) -> None:
    start = pd.Timestamp(T0 - 86_400_000, unit="ms", tz="UTC")
    end = pd.Timestamp(T0 + 86_400_000, unit="ms", tz="UTC")
    full = SpineSpec("user_tx", start=start, end=end, every="6h")
    out = get_historical_features(repo, spine=full, features=["user_tx:count_1h"]).to_pandas()
    users = {e["user_id"] for e in tricky_events(n_random=50)
             if T0 - 86_400_000 <= e["ts"] < T0 + 86_400_000 and not e["_late"]}
    assert len(out) == len(users) * 8
    assert set(out["user_id"]) == users
    half = SpineSpec("user_tx", start=start, end=end, every="6h", sample=0.5, seed=3)
    a = get_historical_features(repo, spine=half, features=["user_tx:count_1h"]).to_pandas()
    b = get_historical_features(repo, spine=half, features=["user_tx:count_1h"]).to_pandas()
    assert a.equals(b) and 0 < len(a) < len(out)


def test_require_backfill_refuses_uncovered_times_and_names_the_coverage(repo: Repo) -> None:
    df = frame()
    with pytest.raises(CoverageError, match=r"view 'user_tx' \(projection rows\).*"
                       r"nothing \(never backfilled\).*braid backfill --views user_tx"):
        get_historical_features(repo, df, ["user_tx:amount"], require_backfill=True)
    first_day = T0 - T0 % DAY
    backfill(repo, ["user_tx"], progress=False, start=first_day, end=first_day + DAY)
    # the first entity row is 5 ms before midnight and the view's TTL is 1h
    with pytest.raises(CoverageError, match=r"covers \[2023-11-14T00:00:00Z, 2023-11-15T00:00:"
                       r"00Z\); missing \[2023-11-13T22:59:59.995000Z, 2023-11-14T00:00:00Z\)"):
        get_historical_features(repo, df, ["user_tx:amount"], require_backfill=True)


def test_require_backfill_after_a_full_backfill_matches_the_default(repo: Repo) -> None:
    backfill(repo, progress=False)
    df = frame()
    want = get_historical_features(repo, df, FEATURES).to_arrow()
    got = get_historical_features(repo, df, FEATURES, require_backfill=True).to_arrow()
    assert got.equals(want)
