"""After backfill + materialize, an online read at t equals get_historical_features at t for
every feature of the example service (DESIGN §4.6; the clock is frozen at t)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from braid.examples.fraud import FraudDataSpec, generate
from braid.store import FeatureStore
from tests.conftest import EXAMPLE_REPO

END = 1_767_225_600_000  # 2026-01-01T00:00:00Z: no event at or after it
T = END + 90_000  # mid-tile, after the last event, so the current tile is complete


def make_repo(root: Path, online: str) -> Path:
    for f in EXAMPLE_REPO.glob("*.py"):
        shutil.copy(f, root / f.name)
    text = (EXAMPLE_REPO / "braid.yaml").read_text()
    if online.startswith("redis"):
        text = text.replace("type: sqlite            #", f"type: redis\n  url: {online}\n  #")
    (root / "braid.yaml").write_text(text)
    generate(FraudDataSpec(events=20_000, days=9, end_ms=END, seed=5), root / "data")
    return root


def same(a: Any, b: Any) -> bool:
    if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
        return (a is None or (isinstance(a, float) and math.isnan(a))) and \
               (b is None or (isinstance(b, float) and math.isnan(b)))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


@pytest.mark.parametrize("backend", ["sqlite", "redis", "redis-cluster"])
def test_online_equals_offline_at_t(backend: str, tmp_path: Path,
                                    request: pytest.FixtureRequest) -> None:
    fixtures = {"redis": "redis_url", "redis-cluster": "redis_cluster_url"}
    url = request.getfixturevalue(fixtures[backend]) if backend in fixtures else "sqlite"
    store = FeatureStore(make_repo(tmp_path, url))
    store.apply()
    store.backfill(progress=False)
    report = store.materialize(now=T)
    assert report.tiles > 0 and report.rows > 0
    users = list(range(1, 120)) + [10**9]  # the last one is unknown
    merchants = [(u % 50) + 1 for u in users]
    rows = [{"user_id": u, "merchant_id": m} for u, m in zip(users, merchants, strict=True)]
    online = store.get_online_features(rows, service="fraud_v1", now=T).to_dict()
    entity_df = pd.DataFrame({"user_id": users, "merchant_id": merchants,
                              "event_timestamp": pd.to_datetime([T] * len(users), unit="ms",
                                                                utc=True)})
    offline = store.get_historical_features(entity_df, service="fraud_v1").to_pandas()
    features = [c for c in online if c not in ("user_id", "merchant_id")]
    assert len(features) == 15
    mismatches = []
    for f in features:
        for i, (a, b) in enumerate(zip(online[f], offline[f].tolist(), strict=True)):
            if not same(a, b):
                mismatches.append((f, users[i], a, b))
    assert not mismatches, mismatches[:10]
    # the data is not trivially empty: most users have 7-day counts, few have 10-minute ones
    assert sum(1 for c in online["amount_count_7d"] if c) > 50
    assert online["amount_count_7d"][-1] == 0 and online["age"][-1] is None
