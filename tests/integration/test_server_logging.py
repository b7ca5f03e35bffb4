"""HTTP lookups with ``"log": true`` are recorded for log-and-wait (DESIGN §8) and counted in
/metrics; logging never changes the served values."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from braid.server.app import create_app
from braid.store import FeatureStore
from tests.integration.server_repo import T0
from tests.integration.test_server import Client, open_repo


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    fs = open_repo(tmp_path, {"type": "sqlite", "path": "data/online.db"})
    yield fs
    fs.online.close()


def test_logged_lookup_returns_request_ids_and_same_values(store: FeatureStore) -> None:
    client = Client(create_app(store, clock=lambda: T0))
    try:
        body = {"feature_service": "fraud_v1", "entities": {"user_id": [1, 2],
                                                            "merchant_id": [10, 20]}}
        plain = client.post("/get-online-features", body)
        logged = client.post("/get-online-features", {**body, "log": True,
                                                       "request_id": "req-A"})
        assert plain.status_code == logged.status_code == 200
        assert logged.json()["results"] == plain.json()["results"]
        ids = logged.json()["metadata"]["request_ids"]
        assert len(ids) == 2 and all(i.startswith("req-A") for i in ids)
        assert "request_ids" not in plain.json()["metadata"]
        store.flush_logs("fraud_v1")
        stats = store.serving_logger("fraud_v1").stats()
        assert stats["offered"] == 2
        assert stats["accepted"] + stats["sampled_out"] == 2 and stats["dropped"] == 0
        text = client.get("/metrics").text
        assert 'braid_log_records_total{service="fraud_v1",outcome="offered"} 2' in text
        bad = client.post("/get-online-features", {"features": ["user_txn:amount_sum_1h"],
                                                   "entities": {"user_id": [1]}, "log": True})
        assert bad.status_code == 422 and "feature_service" in bad.json()["detail"]
        bad = client.post("/get-online-features", {**body, "log": "yes"})
        assert bad.status_code == 422 and '"log" must be true or false' in bad.json()["detail"]
    finally:
        client.close()
