"""Discovery endpoints: search, views, services, lineage, freshness, statistics, OpenAPI."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from braid.store import FeatureStore
from tests.integration.server_repo import make_repo
from tests.integration.test_server import Client

pytest.importorskip("fastapi")

from braid.server import create_app  # noqa: E402

START, END = 1_700_000_000_000, 1_700_086_400_000


@pytest.fixture(scope="module")
def fs(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    root = make_repo(tmp_path_factory.mktemp("disc") / "repo",
                     {"type": "sqlite", "path": "data/online.db"})
    fs = FeatureStore(root)
    fs.apply()
    reg, ns = fs.registry, fs.registry.serving_namespace("shop", "user_txn")
    assert ns is not None
    reg.add_backfilled_range("shop", ns, START, START + 3_600_000)
    reg.add_backfilled_range("shop", ns, START + 7_200_000, END)
    reg.set_cutoff("shop", ns, 600_000, END - 3_600_000)
    reg.set_materialized("shop", ns, END)
    reg.save_stats("shop", "user_txn:amount_sum_1h", START, END, "backfill",
                   {"count": 10, "mean": 2.5})
    reg.save_stats("shop", "user_txn:amount_sum_1h", START, START + 1, "backfill",
                   {"count": 1})  # older data range: not the latest
    reg.add_edge("shop", ("service", "fraud_v1"), ("training_set", "ts_1"))
    return fs


@pytest.fixture(scope="module")
def client(fs: FeatureStore) -> Iterator[Client]:
    c = Client(create_app(fs))
    yield c
    c.close()


def test_search_equals_the_registry_search(client: Client, fs: FeatureStore) -> None:
    body = client.get("/api/features", q="amount").json()
    assert body["hits"] == [dataclasses.asdict(h) for h in fs.search("amount")]
    assert body["hits"][0]["name"] in ("user_txn", "user_txn:amount_sum_1h")
    gold = client.get("/api/features", q="", tag="tier=gold").json()["hits"]
    assert [(h["kind"], h["name"]) for h in gold] == [("view", "user_txn")]
    owned = client.get("/api/features", q="", owner="accounts@example.com").json()["hits"]
    assert [h["name"] for h in owned] == ["user_profile"]
    by_entity = client.get("/api/features", q="", entity="merchant").json()["hits"]
    assert {h["name"] for h in by_entity} == {"merchant", "merchant_risk", "fraud_v1"}
    assert client.get("/api/features", q="x", limit=0).status_code == 422


def test_view_describe_freshness_and_statistics(client: Client, fs: FeatureStore) -> None:
    v = client.get("/api/views/user_txn").json()
    described = fs.describe("user_txn")
    assert {k: v[k] for k in described} == _json(described)
    assert v["owner"] == "risk@example.com" and v["tags"] == {"team": "risk", "tier": "gold"}
    assert [(a["name"], a["function"], a["window"], a["hop"]) for a in v["aggregations"]] == [
        ("count_1h", "count", "1h", "10m"), ("amount_sum_1h", "sum", "1h", "10m")]
    ns = v["serving_namespace"]
    fresh = v["freshness"]
    assert fresh["namespace"] == ns
    assert fresh["backfilled"] == [[START, START + 3_600_000], [START + 7_200_000, END]]
    assert fresh["coverage"] == [START, END]
    assert fresh["cutoffs"] == {"600000": END - 3_600_000}
    assert fresh["materialized"] == END and fresh["materialized_age_ms"] > 0
    assert fresh["stream"] == {}
    stats = v["statistics"]
    assert stats["count_1h"] is None
    assert stats["amount_sum_1h"]["body"] == {"count": 10, "mean": 2.5}
    assert (stats["amount_sum_1h"]["start"], stats["amount_sum_1h"]["end"]) == (START, END)
    assert client.get("/api/views/user_txn:count_1h").json()["name"] == "user_txn"


def test_view_without_state(client: Client) -> None:
    fresh = client.get("/api/views/user_profile").json()["freshness"]
    assert fresh["backfilled"] == [] and fresh["coverage"] is None
    assert fresh["materialized"] is None and fresh["cutoffs"] == {}


def test_service(client: Client) -> None:
    s = client.get("/api/services/fraud_v1").json()
    assert s["features"] == [
        {"ref": "user_txn:count_1h", "view": "user_txn", "feature": "count_1h",
         "dtype": "int64", "scaler": None},
        {"ref": "user_txn:amount_sum_1h", "view": "user_txn", "feature": "amount_sum_1h",
         "dtype": "float64", "scaler": "standard"},
        {"ref": "user_profile:age", "view": "user_profile", "feature": "age",
         "dtype": "int64", "scaler": None},
        {"ref": "merchant_risk:txn_count_1h", "view": "merchant_risk",
         "feature": "txn_count_1h", "dtype": "int64", "scaler": None},
    ]
    assert s["logging"]["sample_rate"] == 0.5
    assert s["scalers"] == {"user_txn:amount_sum_1h": "standard"}
    assert s["views"] == ["merchant_risk", "user_profile", "user_txn"]


def test_lineage_graph(client: Client) -> None:
    g = client.get("/api/lineage/user_txn").json()
    assert g["focus"] == "view:user_txn"
    assert {(n["id"], n["column"]) for n in g["nodes"]} == {
        ("entity:user", 0), ("source:txns", 0), ("view:user_txn", 1),
        ("service:fraud_v1", 2), ("training_set:ts_1", 3)}
    assert sorted((e["src"], e["dst"]) for e in g["edges"]) == [
        ("entity:user", "view:user_txn"), ("service:fraud_v1", "training_set:ts_1"),
        ("source:txns", "view:user_txn"), ("view:user_txn", "service:fraud_v1")]
    assert client.get("/api/lineage/training_set:ts_1").json()["focus"] == "training_set:ts_1"
    assert client.get("/api/lineage/user", kind="entity").json()["focus"] == "entity:user"


def test_freshness_of_every_view(client: Client) -> None:
    body = client.get("/api/freshness").json()
    assert sorted(body) == ["country_risk", "merchant_risk", "user_profile", "user_txn"]
    assert body["user_txn"]["coverage"] == [START, END]


@pytest.mark.parametrize("path,message", [
    ("/api/views/user_tx", "no view 'user_tx' in project 'shop'. Did you mean: user_txn"),
    ("/api/views/fraud_v1", "'fraud_v1' is a service, not a view; see /api/services/fraud_v1"),
    ("/api/services/fraud", "no service 'fraud' in project 'shop'. Did you mean: fraud_v1?"),
    ("/api/lineage/usr_txn", "nothing named 'usr_txn' in the lineage of project 'shop'. "
                             "Did you mean: user_txn"),
])
def test_unknown_names_are_404_with_close_matches(client: Client, path: str,
                                                  message: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert r.json()["type"] == "NotFoundError"
    assert r.json()["detail"].startswith(message)


def test_empty_registry_says_to_apply(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"type": "sqlite", "path": "data/online.db"})
    c = Client(create_app(root))
    try:
        r = c.get("/api/views/user_txn")
        assert r.status_code == 404
        assert r.json()["detail"] == ("the registry of project 'shop' is empty; run "
                                      "`braid apply` first")
    finally:
        c.close()


def test_openapi_lists_every_path(client: Client) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/get-online-features", "/health", "/metrics", "/api/project", "/api/features",
        "/api/views/{name}", "/api/services/{name}", "/api/lineage/{name}", "/api/freshness"}
    body = spec["paths"]["/get-online-features"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["required"] == ["entities"]
    params = {p["name"] for p in spec["paths"]["/api/features"]["get"]["parameters"]}
    assert params == {"q", "tag", "owner", "entity", "limit"}
    try:
        from openapi_spec_validator import validate
    except ImportError:
        return
    validate(spec)


def test_page_and_static_files(client: Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/app.css").status_code == 200


def _json(value: Any) -> Any:
    """``value`` as it comes back from JSON (tuples become lists, int keys strings)."""
    import json

    return json.loads(json.dumps(value, default=str))
