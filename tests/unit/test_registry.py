"""Registry (DESIGN §6): versions, plan diff, namespaces, lineage, state, stats, search.

Repositories are written to temporary folders and loaded with ``load_repo``. The shared
scenario :func:`core_scenario` also runs on PostgreSQL (tests/integration).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from braid.errors import RegistryError
from braid.registry import PlanDiff, Registry, merge_intervals
from braid.repo import Repo, load_repo

DEFINITIONS = '''
from braid.definitions import (Aggregation, BatchSource, Entity, Feature, FeatureService,
                               FeatureView, LabelSource)

user = Entity(name="user", join_keys={{"user_id": "int64"}}, description="A buyer")
transactions = BatchSource(
    name="transactions", path="data/t/*.parquet", timestamp_field="ts",
    schema={{"user_id": "int64", "amount": "float64", "merchant": "string", "ts": "timestamp"}},
    description="Card payments",
)
user_txn_stats = FeatureView(
    name="user_txn_stats", entities=[user], source=transactions, filter={filter!r},
    features=[Feature(name="merchant", dtype="string", description="last merchant seen")],
    aggregations=[Aggregation(column="amount", function="sum", window={window!r}),
                  Aggregation(function="count", window="1d")],
    ttl="7d", owner={owner!r}, tags={tags!r}, description={description!r},
)
fraud_v1 = FeatureService(name="fraud_v1", features=[user_txn_stats[["merchant"]]],
                          description="Fraud model inputs")
fraud_labels = LabelSource(
    name="fraud_labels",
    source=BatchSource(name="label_events", path="data/l/*.parquet", timestamp_field="ts",
                       schema={{"request_id": "string", "is_fraud": "int64",
                                "ts": "timestamp"}}),
    join_on=["request_id"], label_fields=["is_fraud"], timestamp_field="ts",
)
'''

EXTRA = '''
merchant = Entity(name="merchant", join_keys={"merchant": "string"})
merchant_stats = FeatureView(
    name="merchant_stats", entities=[merchant], source=transactions,
    aggregations=[Aggregation(column="amount", function="mean", window="1d")],
    owner="payments@x.io", tags={"team": "payments"}, description="Merchant revenue profile",
)
'''


def write_repo(root: Path, *, project: str = "t", extra: bool = False, **options: Any) -> Repo:
    """Write ``root/braid.yaml`` and ``root/defs.py`` and load them (fresh module each call)."""
    values: dict[str, Any] = {
        "filter": "amount > 0", "window": "1h", "owner": "risk@x.io",
        "tags": {"team": "risk", "pii": "no"}, "description": "Spending of a user",
    }
    values.update(options)
    root.mkdir(parents=True, exist_ok=True)
    (root / "braid.yaml").write_text(f"project: {project}\n")
    for old in root.glob("defs*.py"):
        old.unlink()
    text = DEFINITIONS.format(**values) + (EXTRA if extra else "")
    # a new file name per write: load_repo caches modules by name
    (root / f"defs{next(_COUNTER)}.py").write_text(text)
    return load_repo(root)


_COUNTER = itertools.count()


def ticking_clock(start: int = 1_000) -> Any:
    """A clock advancing 1 ms per call, so creation times are ordered and distinct."""
    counter = itertools.count(start)
    return lambda: next(counter)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(f"sqlite:///{tmp_path / 'db' / 'registry.db'}", clock=ticking_clock())
    yield reg
    reg.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "repo"


# -- the shared scenario (also run on PostgreSQL) ---------------------------------------------


def core_scenario(registry: Registry, root: Path) -> None:
    """Apply, re-apply, cosmetic change, plan change, promote, removal, state; on any backend."""
    repo = write_repo(root, extra=True)
    first = registry.apply(repo)
    assert first.added["view"] == ["merchant_stats", "user_txn_stats"]
    assert first.added["entity"] == ["merchant", "user"]
    assert first.added["source"] == ["label_events", "transactions"]
    assert first.added["service"] == ["fraud_v1"] and first.added["label"] == ["fraud_labels"]
    ns1 = repo.plan("user_txn_stats").namespace
    assert registry.serving_namespace("t", "user_txn_stats") == ns1

    again = registry.apply(write_repo(root, extra=True))
    assert not again.has_changes
    assert [r.version for r in registry.versions("t", "view", "user_txn_stats")] == [1]

    cosmetic = registry.apply(write_repo(root, extra=True, description="Spend per user"))
    assert cosmetic.changed["view"] == ["user_txn_stats"]
    assert cosmetic.namespace_changes == ()
    assert registry.get("t", "view", "user_txn_stats").version == 2
    assert registry.get("t", "view", "user_txn_stats").namespace == ns1

    repo3 = write_repo(root, extra=True, description="Spend per user", window="2h")
    ns2 = repo3.plan("user_txn_stats").namespace
    diff = registry.apply(repo3)
    assert ns2 != ns1
    change = diff.namespace_change("user_txn_stats")
    assert change is not None and (change.old, change.new) == (ns1, ns2)
    assert registry.serving_namespace("t", "user_txn_stats") == ns1
    states = {n.namespace: n.state for n in registry.namespaces("t", "user_txn_stats")}
    assert states == {ns1: "serving", ns2: "pending"}
    registry.promote("t", "user_txn_stats", ns2)
    assert registry.serving_namespace("t", "user_txn_stats") == ns2
    assert registry.gc_candidates("t", "user_txn_stats", current=ns2) == [ns1]
    registry.retire("t", "user_txn_stats", ns1)
    states = {n.namespace: n.state for n in registry.namespaces("t", "user_txn_stats")}
    assert states == {ns1: "retired", ns2: "serving"}

    removal = registry.apply(write_repo(root, description="Spend per user", window="2h"))
    assert removal.removed["view"] == ["merchant_stats"]
    assert removal.removed["entity"] == ["merchant"]
    tomb = registry.get("t", "view", "merchant_stats")
    assert tomb.deleted and tomb.version == 2 and tomb.body is None
    assert registry.get("t", "view", "merchant_stats", version=1).body is not None
    assert "merchant_stats" not in [r.name for r in registry.list_objects("t", "view")]

    registry.add_backfilled_range("t", ns2, 0, 10)
    registry.add_backfilled_range("t", ns2, 10, 20)
    registry.add_backfilled_range("t", ns2, 30, 40)
    assert registry.backfilled_ranges("t", ns2) == [(0, 20), (30, 40)]
    registry.set_cutoff("t", ns2, 3_600_000, 7_200_000)
    assert registry.get_cutoff("t", ns2, 3_600_000) == 7_200_000
    registry.set_state("t", "offsets:transactions", {"0": 42})
    registry.set_state("t", "offsets:transactions", {"0": 43})
    assert registry.get_state("t", "offsets:transactions") == {"0": 43}

    lineage = registry.lineage("t", "view", "user_txn_stats")
    assert [str(n) for n in lineage["upstream"]] == ["entity:user", "source:transactions"]
    assert [str(n) for n in lineage["downstream"]] == ["service:fraud_v1"]
    hits = registry.search("t", "user_txn_stats")
    assert (hits[0].kind, hits[0].name, hits[0].field) == ("view", "user_txn_stats", "name")


def test_core_scenario_sqlite(registry: Registry, root: Path) -> None:
    core_scenario(registry, root)


# -- versions and plan diff -------------------------------------------------------------------


def test_first_apply_stores_version_one_with_hash_and_plan(registry: Registry, root: Path) -> None:
    repo = write_repo(root)
    diff = registry.apply(repo)
    assert isinstance(diff, PlanDiff)
    assert sum(len(v) for v in diff.added.values()) == 6
    rec = registry.get("t", "view", "user_txn_stats")
    assert rec.version == 1 and not rec.deleted
    assert len(rec.content_hash) == 64
    assert rec.plan_hash == repo.plan("user_txn_stats").plan_hash
    assert rec.body is not None and rec.body["owner"] == "risk@x.io"
    assert rec.body["tags"] == {"team": "risk", "pii": "no"}
    assert rec.created_at >= 1_000
    kinds = [(r.kind, r.name) for r in registry.list_objects("t")]
    assert kinds == [("entity", "user"), ("source", "label_events"), ("source", "transactions"),
                     ("view", "user_txn_stats"), ("service", "fraud_v1"),
                     ("label", "fraud_labels")]
    assert [r.name for r in registry.list_objects("t", "source")] == ["label_events",
                                                                       "transactions"]


def test_plan_does_not_write(registry: Registry, root: Path) -> None:
    diff = registry.plan(write_repo(root))
    assert diff.added["view"] == ["user_txn_stats"]
    assert registry.list_objects("t") == []
    assert registry.serving_namespace("t", "user_txn_stats") is None


def test_reapply_unchanged_creates_no_version(registry: Registry, root: Path) -> None:
    registry.apply(write_repo(root))
    diff = registry.apply(write_repo(root))
    assert not diff.has_changes
    assert len(diff.unchanged["view"]) == 1 and len(diff.unchanged["source"]) == 2
    for r in registry.list_objects("t"):
        assert r.version == 1, r
    assert "No changes" in diff.render()
    assert diff.render().endswith("Plan: 0 to add, 0 to change, 0 to remove, 6 unchanged.")


def test_cosmetic_change_new_version_same_namespace(registry: Registry, root: Path) -> None:
    repo = write_repo(root)
    registry.apply(repo)
    ns = repo.plan("user_txn_stats").namespace
    diff = registry.apply(write_repo(root, owner="ml@x.io", tags={"team": "ml"}))
    assert diff.changed["view"] == ["user_txn_stats"]
    change = next(c for c in diff.changes if c.name == "user_txn_stats")
    assert change.fields == ("owner", "tags")
    assert diff.namespace_changes == ()
    history = registry.versions("t", "view", "user_txn_stats")
    assert [v.version for v in history] == [1, 2]
    assert history[0].content_hash != history[1].content_hash
    assert history[0].plan_hash == history[1].plan_hash
    assert registry.namespaces("t", "user_txn_stats")[0].namespace == ns
    assert len(registry.namespaces("t", "user_txn_stats")) == 1
    assert "~ view user_txn_stats (owner, tags)" in diff.render()


@pytest.mark.parametrize("change", [{"filter": "amount > 10"}, {"window": "2h"}])
def test_plan_change_gives_pending_namespace(
    registry: Registry, root: Path, change: dict[str, Any]
) -> None:
    old_repo = write_repo(root)
    registry.apply(old_repo)
    old = old_repo.plan("user_txn_stats").namespace
    new_repo = write_repo(root, **change)
    new = new_repo.plan("user_txn_stats").namespace
    planned = registry.plan(new_repo)
    text = planned.render()
    assert "~ view user_txn_stats" in text
    assert f"namespace {old} -> {new}" in text and "braid promote user_txn_stats" in text
    registry.apply(new_repo)
    assert registry.serving_namespace("t", "user_txn_stats") == old
    assert [(n.namespace, n.state) for n in registry.namespaces("t", "user_txn_stats")] == [
        (old, "serving"), (new, "pending")]
    registry.promote("t", "user_txn_stats", new)
    assert [(n.namespace, n.state) for n in registry.namespaces("t", "user_txn_stats")] == [
        (old, "pending"), (new, "serving")]
    # promoting back is a rollback, allowed while the old storage exists
    registry.promote("t", "user_txn_stats", old)
    assert registry.serving_namespace("t", "user_txn_stats") == old


def test_reverting_to_serving_plan_keeps_it_serving(registry: Registry, root: Path) -> None:
    registry.apply(write_repo(root))
    registry.apply(write_repo(root, window="2h"))
    diff = registry.apply(write_repo(root))
    assert diff.changed["view"] == ["user_txn_stats"]
    assert diff.namespace_changes == ()  # back on the serving namespace
    states = [n.state for n in registry.namespaces("t", "user_txn_stats")]
    assert states == ["serving", "pending"]


def test_retire_and_promote_errors(registry: Registry, root: Path) -> None:
    repo = write_repo(root)
    registry.apply(repo)
    ns = repo.plan("user_txn_stats").namespace
    with pytest.raises(RegistryError, match="serves view 'user_txn_stats'"):
        registry.retire("t", "user_txn_stats", ns)
    with pytest.raises(RegistryError, match="has no namespace 'nope'"):
        registry.promote("t", "user_txn_stats", "nope")
    with pytest.raises(RegistryError, match="run `braid apply` first"):
        registry.promote("t", "other_view", "x")
    new_repo = write_repo(root, window="2h")
    registry.apply(new_repo)
    new = new_repo.plan("user_txn_stats").namespace
    registry.retire("t", "user_txn_stats", new)
    with pytest.raises(RegistryError, match="is retired"):
        registry.promote("t", "user_txn_stats", new)
    registry.apply(write_repo(root))
    registry.apply(new_repo)  # the retired plan comes back: pending, to be backfilled anew
    assert {n.namespace: n.state for n in registry.namespaces("t", "user_txn_stats")}[new] == \
        "pending"


def test_removal_records_tombstone_and_readd(registry: Registry, root: Path) -> None:
    registry.apply(write_repo(root, extra=True))
    diff = registry.apply(write_repo(root))
    assert diff.removed == {"entity": ["merchant"], "source": [], "view": ["merchant_stats"],
                            "service": [], "label": []}
    text = diff.render()
    assert "- view merchant_stats" in text and "- entity merchant" in text
    assert "Plan: 0 to add, 0 to change, 2 to remove, 6 unchanged." in text
    history = registry.versions("t", "view", "merchant_stats")
    assert [(v.version, v.deleted) for v in history] == [(1, False), (2, True)]
    # removing again changes nothing; re-adding gives version 3
    assert not registry.apply(write_repo(root)).has_changes
    readd = registry.apply(write_repo(root, extra=True))
    assert readd.added["view"] == ["merchant_stats"]
    assert registry.get("t", "view", "merchant_stats").version == 3


def test_get_errors(registry: Registry, root: Path) -> None:
    registry.apply(write_repo(root))
    with pytest.raises(RegistryError, match="Did you mean: user_txn_stats"):
        registry.get("t", "view", "user_txn_stat")
    with pytest.raises(RegistryError, match=r"no version 5 \(versions 1..1\)"):
        registry.get("t", "view", "user_txn_stats", version=5)
    with pytest.raises(RegistryError, match="unknown kind 'table'"):
        registry.list_objects("t", "table")


def test_projects_are_separate(registry: Registry, root: Path) -> None:
    registry.apply(write_repo(root))
    assert registry.list_objects("other") == []
    assert registry.search("other", "user") == []


# -- lineage ----------------------------------------------------------------------------------


def test_lineage_edges(registry: Registry, root: Path) -> None:
    registry.apply(write_repo(root, extra=True))
    edges = {(str(a), str(b)) for a, b in registry.edges("t")}
    assert edges == {
        ("source:transactions", "view:user_txn_stats"), ("entity:user", "view:user_txn_stats"),
        ("source:transactions", "view:merchant_stats"),
        ("entity:merchant", "view:merchant_stats"),
        ("view:user_txn_stats", "service:fraud_v1"),
        ("source:label_events", "label:fraud_labels"),
    }
    registry.add_edge("t", ("service", "fraud_v1"), ("training_set", "ts_1"))
    registry.add_edge("t", ("service", "fraud_v1"), ("training_set", "ts_1"))
    down = registry.lineage("t", "source", "transactions")["downstream"]
    assert [str(n) for n in down] == ["view:merchant_stats", "view:user_txn_stats",
                                      "service:fraud_v1", "training_set:ts_1"]
    # removing a view drops its derived edges, manual edges stay
    registry.apply(write_repo(root))
    edges = {(str(a), str(b)) for a, b in registry.edges("t")}
    assert ("source:transactions", "view:merchant_stats") not in edges
    assert ("service:fraud_v1", "training_set:ts_1") in edges
    assert len(edges) == 5


# -- operational state ------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "merged"), [
    ([(0, 10), (10, 20)], [(0, 20)]),
    ([(0, 10), (5, 15)], [(0, 15)]),
    ([(20, 30), (0, 10)], [(0, 10), (20, 30)]),
    ([(0, 100), (10, 20)], [(0, 100)]),
    ([(0, 10), (20, 30), (9, 21)], [(0, 30)]),
    ([(-20, -10), (-10, 0)], [(-20, 0)]),
])
def test_merge_intervals(given: list[tuple[int, int]], merged: list[tuple[int, int]]) -> None:
    assert merge_intervals(given) == merged


def test_backfilled_ranges_persist_and_merge(registry: Registry) -> None:
    assert registry.backfilled_ranges("t", "v__a") == []
    registry.add_backfilled_range("t", "v__a", 100, 200)
    registry.add_backfilled_range("t", "v__a", 0, 50)
    registry.add_backfilled_range("t", "v__a", 40, 100)
    registry.add_backfilled_range("t", "v__b", 0, 1)
    assert registry.backfilled_ranges("t", "v__a") == [(0, 200)]
    assert registry.backfilled_ranges("t", "v__b") == [(0, 1)]
    assert registry.backfilled_ranges("u", "v__a") == []
    with pytest.raises(RegistryError, match=r"\[5, 5\) of v__a is empty"):
        registry.add_backfilled_range("t", "v__a", 5, 5)


def test_cutoffs_per_hop_never_move_back_silently(registry: Registry) -> None:
    assert registry.get_cutoff("t", "v__a", 60_000) is None
    registry.set_cutoff("t", "v__a", 60_000, 1_000_000)
    registry.set_cutoff("t", "v__a", 3_600_000, 3_600_000)
    registry.set_cutoff("t", "v__a", 60_000, 2_000_000)
    assert registry.cutoffs("t", "v__a") == {60_000: 2_000_000, 3_600_000: 3_600_000}
    with pytest.raises(RegistryError, match="would move back from 2000000 to 5"):
        registry.set_cutoff("t", "v__a", 60_000, 5)
    assert registry.get_cutoff("t", "v__a", 60_000) == 2_000_000
    registry.set_cutoff("t", "v__a", 60_000, 5, allow_backwards=True)
    assert registry.get_cutoff("t", "v__a", 60_000) == 5


def test_state_and_materialized(registry: Registry) -> None:
    assert registry.get_state("t", "k", default="none") == "none"
    registry.set_state("t", "k", {"a": [1, 2.5, None]})
    assert registry.get_state("t", "k") == {"a": [1, 2.5, None]}
    registry.set_state("t", "k_2", 1)
    registry.set_state("t", "k%x", 2)  # LIKE wildcards in keys are escaped
    assert registry.state_items("t", "k_") == {"k_2": 1}
    assert registry.get_materialized("t", "v__a") is None
    registry.set_materialized("t", "v__a", 1234)
    assert registry.get_materialized("t", "v__a") == 1234


def test_stats_as_of(registry: Registry) -> None:
    ref = "user_txn_stats:amount_sum_1h"
    assert registry.stats_as_of("t", ref) is None
    registry.save_stats("t", ref, 0, 100, "backfill", {"count": 10})
    registry.save_stats("t", ref, 0, 200, "backfill", {"count": 20})
    registry.save_stats("t", ref, 100, 200, "stream", {"count": 21})  # newer, same end
    registry.save_stats("t", "other:f", 0, 50, "backfill", {"count": 1})
    latest = registry.stats_as_of("t", ref)
    assert latest is not None and latest.body == {"count": 21} and latest.origin == "stream"
    early = registry.stats_as_of("t", ref, as_of=150)
    assert early is not None and (early.start, early.end, early.body) == (0, 100, {"count": 10})
    assert registry.stats_as_of("t", ref, as_of=99) is None
    with pytest.raises(RegistryError, match="start 5 is after end 1"):
        registry.save_stats("t", ref, 5, 1, "x", {})


def test_save_stats_many_writes_all_rows_or_none(registry: Registry) -> None:
    registry.save_stats_many("t", [("v:a", 0, 100, "stream", {"count": 1}),
                                   ("v:b", 0, 100, "stream", {"count": 2})])
    got = [registry.stats_as_of("t", ref) for ref in ("v:a", "v:b")]
    assert [g.body if g else None for g in got] == [{"count": 1}, {"count": 2}]
    registry.save_stats_many("t", [])
    with pytest.raises(RegistryError, match="statistics of v:b: start 9 is after end 1"):
        registry.save_stats_many("t", [("v:a", 100, 200, "stream", {"count": 3}),
                                       ("v:b", 9, 1, "stream", {})])
    later = registry.stats_as_of("t", "v:a")
    assert later is not None and later.body == {"count": 1}  # nothing of the refused call


# -- search and describe ----------------------------------------------------------------------


def test_search_ranking(registry: Registry, root: Path) -> None:
    registry.apply(write_repo(root, extra=True))
    hits = registry.search("t", "merchant")
    got = [(h.kind, h.name, h.field, h.score) for h in hits]
    assert got[0] == ("entity", "merchant", "name", 100)  # exact name
    assert got[1] == ("view", "merchant_stats", "name", 80)  # name prefix
    assert ("feature", "user_txn_stats:merchant", "feature", 50) in got  # feature name
    assert ("service", "fraud_v1", "feature", 40) in got  # references user_txn_stats:merchant
    assert ("view", "user_txn_stats", "feature", 50) in got  # a view has its features' names
    assert ("source", "transactions", "column", 35) in got  # source column
    assert got[-1] == ("source", "transactions", "column", 35)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)

    user = [(h.kind, h.name, h.field) for h in registry.search("t", "user")]
    assert user[0] == ("entity", "user", "name")
    assert user[1] == ("view", "user_txn_stats", "name")

    tag = registry.search("t", "payments")
    assert [(h.kind, h.name, h.field) for h in tag][:1] == [("view", "merchant_stats", "tag")]
    desc = registry.search("t", "revenue profile")
    assert [(h.name, h.field, h.score) for h in desc] == [("merchant_stats", "description", 15)]
    owner = registry.search("t", "risk@x")
    assert [(h.name, h.field, h.score) for h in owner] == [("user_txn_stats", "owner", 10)]
    assert registry.search("t", "zzz_nothing") == []
    assert len(registry.search("t", "a", limit=3)) == 3


def test_search_filters(registry: Registry, root: Path) -> None:
    registry.apply(write_repo(root, extra=True))
    by_tag = registry.search("t", "stats", tag="team=payments")
    assert [h.name for h in by_tag] == ["merchant_stats"]
    assert registry.search("t", "stats", tag="team=nobody") == []
    by_key = {h.name for h in registry.search("t", "", tag="pii")}
    assert by_key == {"user_txn_stats"}
    by_owner = registry.search("t", "amount", owner="PAYMENTS@x.io")
    assert [h.name for h in by_owner] == ["merchant_stats", "merchant_stats:amount_mean_1d"]
    by_entity = {h.name for h in registry.search("t", "", entity="user")}
    assert by_entity == {"user_txn_stats", "fraud_v1", "user"}


def test_describe_view(registry: Registry, root: Path) -> None:
    repo = write_repo(root)
    registry.apply(repo)
    registry.apply(write_repo(root, description="Spend per user"))
    ns = repo.plan("user_txn_stats").namespace
    registry.add_backfilled_range("t", ns, 0, 86_400_000)
    registry.set_cutoff("t", ns, 60_000, 86_400_000)
    info = registry.describe("t", "user_txn_stats")
    assert info["kind"] == "view" and info["version"] == 2
    assert info["description"] == "Spend per user" and info["owner"] == "risk@x.io"
    assert info["tags"] == {"team": "risk", "pii": "no"}
    assert info["schema"] == {"merchant": "string", "amount_sum_1h": "float64",
                              "count_1d": "int64"}
    aggs = {a["name"]: a for a in info["aggregations"]}
    assert (aggs["amount_sum_1h"]["function"], aggs["amount_sum_1h"]["window"],
            aggs["amount_sum_1h"]["hop"]) == ("sum", "1h", "5m")
    assert (aggs["count_1d"]["window"], aggs["count_1d"]["hop_ms"]) == ("1d", 3_600_000)
    assert info["features"][0]["description"] == "last merchant seen"
    assert info["source"]["name"] == "transactions"
    assert info["entities"] == [{"name": "user", "join_keys": {"user_id": "int64"}}]
    assert info["ttl_ms"] == 7 * 86_400_000 and info["filter"] == "amount > 0"
    assert [v["version"] for v in info["versions"]] == [1, 2]
    assert info["serving_namespace"] == ns == info["namespace"]
    assert info["backfilled"] == {ns: [(0, 86_400_000)]}
    assert info["cutoffs"] == {ns: {60_000: 86_400_000}}
    assert info["lineage"] == {"upstream": ["entity:user", "source:transactions"],
                               "downstream": ["service:fraud_v1"]}
    # a feature reference describes its view; other kinds describe themselves
    assert registry.describe("t", "user_txn_stats:count_1d")["name"] == "user_txn_stats"
    svc = registry.describe("t", "fraud_v1")
    assert svc["kind"] == "service" and svc["references"] == ["user_txn_stats:merchant"]
    with pytest.raises(RegistryError, match="Did you mean: user_txn_stats"):
        registry.describe("t", "user_txn_stat")


# -- connection errors ------------------------------------------------------------------------


def test_bad_urls_are_one_line_registry_errors(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not a database URL"):
        Registry("not a url")
    with pytest.raises(RegistryError, match="only sqlite:/// and postgresql://"):
        Registry("mysql://u:pw@localhost/db")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RegistryError) as info:
        Registry(f"sqlite:///{blocker}/sub/registry.db")
    assert "\n" not in str(info.value)


def test_conflicting_write_is_a_registry_error(registry: Registry) -> None:
    import sqlalchemy as sa

    from braid.registry.tables import state

    row = {"project": "t", "key": "k", "value": "1", "updated_at": 0}
    with pytest.raises(RegistryError, match="another writer stored the same record"):
        with registry._tx() as con:
            con.execute(sa.insert(state).values(**row))
            con.execute(sa.insert(state).values(**row))
    assert registry.get_state("t", "k") is None  # the transaction was rolled back


def test_unreachable_postgres_hides_password() -> None:
    with pytest.raises(RegistryError) as info:
        Registry("postgresql://braid:s3cret@127.0.0.1:1/nodb?connect_timeout=2")
    message = str(info.value)
    assert "s3cret" not in message and "***" in message
    assert "unreachable" in message and "BRAID_REGISTRY_URL" in message
    assert "\n" not in message
