"""The HTTP server: Feast's shapes with exact values, errors, Redis outage, metrics, a real
``braid serve`` process, ``braid get-online``, and the discovery endpoints."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from click.testing import CliRunner

from braid.store import FeatureStore
from braid.timeutil import HOUR
from tests.conftest import RedisServer, free_port, wait_for_port
from tests.integration.server_repo import T0, H, make_repo, seed

pytest.importorskip("fastapi")

from braid.server import create_app  # noqa: E402

EPOCH = "1970-01-01T00:00:00Z"
NOW = "2023-11-14T22:20:00Z"  # T0
PROFILE_TS = "2023-11-14T21:20:00.250Z"  # T0 - 1h + 250 ms
OLD_TS = "2023-11-12T22:20:00Z"  # T0 - 2 days


class Client:
    """Synchronous calls into the ASGI app through httpx's ASGI transport."""

    def __init__(self, app: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                      base_url="http://braid.test")

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.http.post(path, json=body))

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.http.get(path, params=params))

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()


def open_repo(tmp_path: Path, online: dict[str, Any]) -> FeatureStore:
    fs = FeatureStore(make_repo(tmp_path / "repo", online))
    fs.apply()
    seed(fs)
    return fs


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeatureStore]:
    if request.param == "redis":
        online = {"type": "redis", "url": request.getfixturevalue("redis_url")}
    else:
        online = {"type": "sqlite", "path": "data/online.db"}
    fs = open_repo(tmp_path, online)
    yield fs
    fs.online.close()


@pytest.fixture
def client(store: FeatureStore) -> Iterator[Client]:
    c = Client(create_app(store, clock=lambda: T0))
    yield c
    c.close()


def col(values: list[Any], statuses: list[str], times: list[str]) -> dict[str, Any]:
    return {"values": values, "statuses": statuses, "event_timestamps": times}


# ------------------------------------------------------------------ Feast's shapes, exact

def test_service_answers_in_feast_shape(client: Client) -> None:
    r = client.post("/get-online-features", {
        "feature_service": "fraud_v1", "features": [],
        "entities": {"merchant_id": [3, 4], "user_id": [1, 2]}})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "metadata": {"feature_names": ["merchant_id", "user_id", "count_1h", "amount_sum_1h",
                                       "age", "txn_count_1h"]},
        "results": [
            col([3, 4], ["PRESENT"] * 2, [EPOCH] * 2),
            col([1, 2], ["PRESENT"] * 2, [EPOCH] * 2),
            col([3, 0], ["PRESENT", "NOT_FOUND"], [NOW, EPOCH]),
            col([35.5, 0.0], ["PRESENT", "NOT_FOUND"], [NOW, EPOCH]),
            col([34, None], ["PRESENT", "OUTSIDE_MAX_AGE"], [PROFILE_TS, OLD_TS]),
            col([4, 0], ["PRESENT", "NOT_FOUND"], [NOW, EPOCH]),
        ],
    }


def test_features_list_with_defaults_timestamps_and_unknown_entity(client: Client) -> None:
    refs = ["user_profile:age", "user_profile:credit_limit", "user_profile:home_country",
            "user_profile:updated"]
    r = client.post("/get-online-features", {"features": refs,
                                              "entities": {"user_id": [1, 2, 99]}})
    assert r.status_code == 200, r.text
    stale = ["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
    times = [PROFILE_TS, OLD_TS, EPOCH]
    assert r.json()["results"] == [
        col([1, 2, 99], ["PRESENT"] * 3, [EPOCH] * 3),
        col([34, None, None], stale, times),
        col([1500.5, 0.0, 0.0], stale, times),  # the declared default replaces NULL
        col(["DE", None, None], stale, times),
        col([PROFILE_TS, None, None], stale, times),  # timestamp values as RFC 3339
    ]


def test_full_feature_names_and_string_keys(client: Client) -> None:
    r = client.post("/get-online-features", {
        "features": ["country_risk:country_count_1h", "user_txn:count_1h"],
        "entities": {"country_code": ["FR", "a,b:{x}"], "user_id": [1, 1]},
        "full_feature_names": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metadata"]["feature_names"] == ["country_code", "user_id",
                                                 "country_risk__country_count_1h",
                                                 "user_txn__count_1h"]
    assert body["results"][2] == col([7, 0], ["PRESENT", "NOT_FOUND"], [NOW, EPOCH])
    assert body["results"][3] == col([3, 3], ["PRESENT", "PRESENT"], [NOW, NOW])


def test_zero_rows(client: Client) -> None:
    r = client.post("/get-online-features", {"features": ["user_txn:count_1h"],
                                              "entities": {"user_id": []}})
    assert r.status_code == 200
    assert r.json()["results"] == [col([], [], []), col([], [], [])]


def test_response_validates_against_feast_models(client: Client) -> None:
    feast_server = pytest.importorskip("feast.feature_server")
    body = {"feature_service": "fraud_v1", "entities": {"user_id": [1], "merchant_id": [3]}}
    feast_server.GetOnlineFeaturesRequest.model_validate(body)
    r = client.post("/get-online-features", body)
    parsed = feast_server.OnlineFeaturesResponse.model_validate(r.json())
    assert parsed.metadata.feature_names[:2] == ["user_id", "merchant_id"]
    assert [res.values[0] for res in parsed.results] == [1, 3, 3, 35.5, 34, 4]


# ------------------------------------------------------------------ bad requests

@pytest.mark.parametrize("body,status,kind,message", [
    ({"features": ["user_txn:amount_sum_1"], "entities": {"user_id": [1]}}, 404,
     "UnknownFeatureError", "view 'user_txn' has no feature 'amount_sum_1'. Did you mean: "
                            "amount_sum_1h"),
    ({"features": ["user_tx:count_1h"], "entities": {"user_id": [1]}}, 404,
     "UnknownFeatureError", "unknown feature view 'user_tx' in 'user_tx:count_1h'. Did you "
                            "mean: user_txn"),
    ({"feature_service": "fraud_v2", "entities": {"user_id": [1]}}, 404,
     "UnknownFeatureError", "unknown feature service 'fraud_v2'. Did you mean: fraud_v1?"),
    ({"features": ["user_txn:count_1h"], "entities": {"user_id": ["1"]}}, 422,
     "EntityKeyError", "entities['user_id'][0] must be int64 (JSON integer), got string \"1\""),
    ({"features": ["user_txn:count_1h"], "entities": {"user_id": [1, 2.5]}}, 422,
     "EntityKeyError", "entities['user_id'][1] must be int64 (JSON integer), got number 2.5"),
    ({"features": ["user_txn:count_1h"], "entities": {"user_id": [True]}}, 422,
     "EntityKeyError", "entities['user_id'][0] must be int64 (JSON integer), got boolean"),
    ({"features": ["country_risk:country_count_1h"], "entities": {"country_code": [7]}}, 422,
     "EntityKeyError", "entities['country_code'][0] must be string (JSON string), got "
                       "integer 7"),
    ({"feature_service": "fraud_v1", "entities": {"user_id": [1]}}, 422,
     "EntityKeyError", "entities lack join key 'merchant_id' (for merchant_risk); got: "
                       "user_id"),
    ({"feature_service": "fraud_v1", "entities": {"user_id": [1, 2], "merchant_id": [3]}}, 422,
     "EntityKeyError", "entities lists must have equal lengths: user_id has 2, merchant_id "
                       "has 1"),
    ({"features": ["user_txn:count_1h"], "entities": {"user_id": [1], "shop": [1]}}, 422,
     "EntityKeyError", "entities has 'shop', which no requested view is keyed by; "
                       "expected: user_id"),
    ({"features": ["user_txn:count_1h"], "feature_service": "fraud_v1",
      "entities": {"user_id": [1]}}, 422, "RequestError", "pass exactly one of"),
    ({"features": ["user_txn:count_1h"], "entities": {}}, 422, "RequestError",
     '"entities" must be a non-empty object'),
    ({"features": ["user_txn:count_1h"], "entities": {"user_id": 1}}, 422, "EntityKeyError",
     "entities['user_id'] must be a list of values, got integer"),
    ({"features": "user_txn:count_1h", "entities": {"user_id": [1]}}, 422, "RequestError",
     '"features" must be a list'),
])
def test_bad_requests_get_precise_errors(client: Client, body: Any, status: int, kind: str,
                                         message: str) -> None:
    r = client.post("/get-online-features", body)
    assert r.status_code == status, r.text
    assert r.json()["type"] == kind
    assert message in r.json()["detail"]


def test_body_that_is_not_json(client: Client) -> None:
    r = client.loop.run_until_complete(client.http.post(
        "/get-online-features", content=b"{nope", headers={"content-type": "application/json"}))
    assert r.status_code == 400
    assert r.json()["detail"].startswith("request body is not valid JSON")


# ------------------------------------------------------------------ health, metrics, outage

def test_health_and_metrics(client: Client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["online_store"]["ok"] is True
    ok = {"features": ["user_txn:count_1h"], "entities": {"user_id": [1]}}
    for _ in range(3):
        assert client.post("/get-online-features", ok).status_code == 200
    client.post("/get-online-features", {"features": ["nope:x"], "entities": {"user_id": [1]}})
    client.get("/api/views/nope")
    text = client.get("/metrics").text
    assert ('braid_http_requests_total{endpoint="/get-online-features",method="POST",'
            'status="200"} 3.0') in text
    assert ('braid_http_requests_total{endpoint="/get-online-features",method="POST",'
            'status="404"} 1.0') in text
    assert ('braid_http_errors_total{endpoint="/get-online-features",'
            'type="UnknownFeatureError"} 1.0') in text
    assert 'braid_http_errors_total{endpoint="/api/views/{name}",type="NotFoundError"} 1.0' \
        in text
    assert ('braid_http_request_duration_seconds_count{endpoint="/get-online-features"} 4.0'
            in text)


def test_redis_outage_gives_503_and_recovers(redis_server: RedisServer,
                                             tmp_path: Path) -> None:
    import redis

    url = redis_server.url.rsplit("/", 1)[0] + "/3"  # a database of its own on the server
    app = create_app(make_repo(tmp_path / "repo", {"type": "redis", "url": url}),
                     clock=lambda: T0)
    seed(app.state.store)
    client = Client(app)
    body = {"features": ["user_txn:amount_sum_1h"], "entities": {"user_id": [1]}}
    try:
        assert client.post("/get-online-features", body).json()["results"][1]["values"] == [35.5]
        redis_server.stop()
        down = client.post("/get-online-features", body)
        assert down.status_code == 503
        assert down.json()["type"] == "StoreError"
        assert down.json()["detail"].startswith(f"redis read failed on {url}")
        assert client.get("/health").status_code == 503
        redis_server.start()  # same port; the append-only file brings the data back
        up = client.post("/get-online-features", body)
        assert up.status_code == 200, up.text
        assert up.json()["results"][1]["values"] == [35.5]
        assert client.get("/health").json()["status"] == "ok"
        assert 'braid_http_errors_total{endpoint="/get-online-features",type="StoreError"} 1.0' \
            in client.get("/metrics").text
    finally:
        if redis_server.proc is None:
            redis_server.start()
        client.close()
        redis.Redis.from_url(url).flushdb()


# ------------------------------------------------------------------ a real `braid serve`

def test_braid_serve_process(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"type": "sqlite", "path": "data/online.db"})
    fs = FeatureStore(root)
    now = int(time.time() * 1000)
    tile = now // H * H - H  # inside the 1 h window for the next 50 minutes
    from tests.integration.server_repo import tiles

    tiles(fs, "user_txn", "user_id", [(1, tile, 2, 12.25)])
    fs.online.write_rows(fs.repo.plan("user_profile"), pa.table({
        "user_id": [1], "_ts": pa.array([now - HOUR], pa.int64()), "age": [41],
        "credit_limit": [10.0], "home_country": ["NL"], "updated": pa.array([0], pa.int64())}))
    fs.online.close()
    port = free_port()
    env = {**os.environ, "BRAID_REPO": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", "from braid.cli import main; main()",
                             "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=30)
        r = httpx.post(f"http://127.0.0.1:{port}/get-online-features", json={
            "features": ["user_txn:amount_sum_1h", "user_txn:count_1h", "user_profile:age"],
            "entities": {"user_id": [1, 5]}})
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert [x["values"] for x in res] == [[1, 5], [12.25, 0.0], [2, 0], [41, None]]
        assert [x["statuses"] for x in res[1:]] == [["PRESENT", "NOT_FOUND"]] * 3
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["status"] == "ok"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=15)[0].decode()
    assert f"on http://127.0.0.1:{port}" in out


# ------------------------------------------------------------------ braid get-online

def test_get_online_cli(store: FeatureStore) -> None:
    from braid.cli import online  # noqa: F401  (registers the commands)
    from braid.cli.main import cli

    runner = CliRunner()
    args = ["--repo", str(store.root), "get-online", "-e", "user_id=1", "-e", "merchant_id=3",
            "--service", "fraud_v1", "--now", NOW]
    table = runner.invoke(cli, args)
    assert table.exit_code == 0, table.output
    lines = [line.split() for line in table.output.splitlines()]
    assert lines[0] == ["row", "user_id", "merchant_id", "feature", "value", "status",
                        "event_time"]
    assert lines[1:] == [["0", "1", "3", "count_1h", "3", "PRESENT", NOW],
                         ["0", "1", "3", "amount_sum_1h", "35.5", "PRESENT", NOW],
                         ["0", "1", "3", "age", "34", "PRESENT", PROFILE_TS],
                         ["0", "1", "3", "txn_count_1h", "4", "PRESENT", NOW]]
    as_json = runner.invoke(cli, [*args, "--json"])
    assert as_json.exit_code == 0
    import json

    assert json.loads(as_json.output)["results"][3]["values"] == [35.5]
    bad = runner.invoke(cli, ["--repo", str(store.root), "get-online", "-e", "user_id=x",
                              "--features", "user_txn:count_1h"])
    assert bad.exit_code != 0
    assert "error: --entity 'user_id=x': 'user_id' is int64, got 'x'" in bad.output
