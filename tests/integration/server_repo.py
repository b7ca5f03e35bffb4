"""A small feature repository with known online data, shared by the server and web tests.

``make_repo`` writes ``braid.yaml`` and the definitions; ``seed`` writes online rows and tiles
directly through the store (materialize is not needed) so every served value is known.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa

from braid.store import FeatureStore
from braid.timeutil import DAY, HOUR, MINUTE

ROOT = Path(__file__).resolve().parents[2]

#: The read time of every test (a multiple of 10 minutes).
T0 = 1_700_000_400_000
H = 10 * MINUTE

DEFINITIONS = '''
from braid import (Aggregation, BatchSource, Entity, Feature, FeatureService, FeatureView,
                   LoggingConfig)

user = Entity(name="user", join_keys={"user_id": "int64"}, description="A buyer.")
merchant = Entity(name="merchant", join_keys={"merchant_id": "int64"})
country = Entity(name="country", join_keys={"country_code": "string"})

txns = BatchSource(name="txns", path="data/txns/*.parquet", timestamp_field="ts",
                   schema={"user_id": "int64", "merchant_id": "int64", "amount": "float64",
                           "country_code": "string", "ts": "timestamp"},
                   description="Card transactions.", owner="payments@example.com")
profiles = BatchSource(name="profiles", path="data/profiles/*.parquet",
                       timestamp_field="updated_at",
                       schema={"user_id": "int64", "age": "int64", "credit_limit": "float64",
                               "country": "string", "updated_at": "timestamp"})

user_profile = FeatureView(
    name="user_profile", entities=[user], source=profiles, ttl="1d",
    features=[Feature(name="age", dtype="int64"),
              Feature(name="credit_limit", dtype="float64", default=0.0),
              Feature(name="home_country", dtype="string", expr="country"),
              Feature(name="updated", dtype="timestamp", expr="updated_at")],
    description="Slow-moving account attributes.", owner="accounts@example.com",
    tags={"team": "accounts"})

user_txn = FeatureView(
    name="user_txn", entities=[user], source=txns,
    aggregations=[Aggregation(function="count", window="1h", hop="10m"),
                  Aggregation(column="amount", function="sum", window="1h", hop="10m")],
    description="Spending velocity of a user.", owner="risk@example.com",
    tags={"team": "risk", "tier": "gold"})

merchant_risk = FeatureView(
    name="merchant_risk", entities=[merchant], source=txns,
    aggregations=[Aggregation(function="count", window="1h", hop="10m",
                              name="txn_count_1h")],
    description="Payments a merchant received.", owner="risk@example.com")

country_risk = FeatureView(
    name="country_risk", entities=[country], source=txns,
    aggregations=[Aggregation(function="count", window="1h", hop="10m",
                              name="country_count_1h")])

fraud_v1 = FeatureService(
    name="fraud_v1",
    features=[user_txn, user_profile[["age"]], merchant_risk],
    logging=LoggingConfig(sample_rate=0.5),
    scalers={"user_txn:amount_sum_1h": "standard"},
    description="Card fraud score.", owner="risk@example.com")
'''


def make_repo(root: Path, online: dict[str, Any]) -> Path:
    """Write a repository under ``root``; ``online`` is the ``online_store`` section."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"  {k}: {v}" for k, v in online.items()]
    (root / "braid.yaml").write_text("project: shop\nregistry: sqlite:///data/registry.db\n"
                                     "online_store:\n" + "\n".join(lines) + "\n")
    (root / "definitions.py").write_text(textwrap.dedent(DEFINITIONS))
    return root


def copy_example_repo(root: Path, online: dict[str, Any]) -> Path:
    """The example fraud repository's definitions (no data) with another online store."""
    root.mkdir(parents=True, exist_ok=True)
    for f in (ROOT / "feature_repo").glob("*.py"):
        shutil.copy(f, root / f.name)
    lines = [f"  {k}: {v}" for k, v in online.items()]
    (root / "braid.yaml").write_text("project: fraud\nregistry: sqlite:///data/registry.db\n"
                                     "online_store:\n" + "\n".join(lines) + "\n")
    return root


def tiles(fs: FeatureStore, view: str, key: str, entries: list[tuple[Any, int, int, float]]
          ) -> int:
    """Write tiles of a count (+ optional sum of amount) view: (key, tile_start, n, sum)."""
    plan = fs.repo.plan(view)
    data: dict[str, pa.Array] = {
        key: pa.array([e[0] for e in entries]),
        "tile_start": pa.array([e[1] for e in entries], pa.int64()),
    }
    for p in plan.partials_for_hop(H):
        for col in p.columns:
            vals = [e[3] if "sum" in col else e[2] for e in entries]
            data[col] = pa.array(vals, pa.float64() if "sum" in col else pa.int64())
    return fs.online.write_tiles(plan, H, pa.table(data))


def seed(fs: FeatureStore) -> None:
    """Known online state at :data:`T0`.

    * user 1: profile written 1 h ago (age 34, credit 1500.5, DE); txns: 2 (30.0) in the tile
      before, 1 (5.5) in the current one, and an old tile outside the hour.
    * user 2: profile 2 days old (TTL 1 d: OUTSIDE_MAX_AGE); no txns.
    * merchant 3: 4 payments 20 minutes ago. Country "FR": 7 events.
    """
    plan = fs.repo.plan("user_profile")
    fs.online.write_rows(plan, pa.table({
        "user_id": pa.array([1, 2], pa.int64()),
        "_ts": pa.array([T0 - HOUR + 250, T0 - 2 * DAY], pa.int64()),
        "age": pa.array([34, 50], pa.int64()),
        "credit_limit": pa.array([1500.5, 900.0]),
        "home_country": pa.array(["DE", "FR"]),
        "updated": pa.array([T0 - HOUR + 250, T0 - 2 * DAY], pa.int64()),
    }))
    tiles(fs, "user_txn", "user_id", [(1, T0 - H, 2, 30.0), (1, T0, 1, 5.5),
                                      (1, T0 - 2 * HOUR, 9, 99.0)])
    tiles(fs, "merchant_risk", "merchant_id", [(3, T0 - 2 * H, 4, 0.0)])
    tiles(fs, "country_risk", "country_code", [("FR", T0 - H, 7, 0.0)])
