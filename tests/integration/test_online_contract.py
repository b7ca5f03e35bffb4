"""One contract suite for every online store (STYLE 7): Redis and SQLite pass the same tests."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from braid.algebra import MISSING_CREATED, AggFunction, OverflowError64, build, merge
from braid.definitions import Aggregation, BatchSource, Entity, Feature, FeatureView
from braid.errors import EntityKeyError
from braid.online import FeatureStatus, OnlineReader, OnlineStore, SeqGuard, SqliteOnlineStore
from braid.online.encoding import TileCodec, expiry_ms, key_prefix
from braid.plan import ViewPlan, lower
from braid.timeutil import HOUR, MINUTE

H = 10 * MINUTE
T0 = 1_700_000_400_000  # a multiple of 10 minutes
FUNCS = ["count", "sum", "mean", "min", "max", "last", "var", "stddev"]


def make_plan(ttl: str | None = "1h") -> ViewPlan:
    user = Entity(name="user", join_keys={"user_id": "int64"})
    src = BatchSource(name="txn", path="data/*.parquet", timestamp_field="ts",
                      created_timestamp_field="created",
                      schema={"user_id": "int64", "ts": "timestamp", "created": "timestamp",
                              "amount": "float64", "n_items": "int64", "city": "string",
                              "vip": "bool"})
    aggs = [Aggregation(function="count", window="1h", hop="10m")]
    aggs += [Aggregation(column="amount", function=f, window="1h", hop="10m")
             for f in FUNCS if f != "count"]
    aggs += [Aggregation(column="amount", function="sum", window="30m", hop="10m"),
             Aggregation(column="amount", function="max", window="20m", hop="10m",
                         name="amount_max_20m", default=-1.0),
             Aggregation(column="n_items", function="sum", window="1h", hop="10m"),
             Aggregation(column="city", function="last", window="1h", hop="10m"),
             Aggregation(column="city", function="min", window="1h", hop="10m")]
    view = FeatureView(
        name="user_stats", entities=[user], source=src, ttl=ttl,
        features=[Feature(name="amount", dtype="float64"),
                  Feature(name="n_items", dtype="int64", default=-7),
                  Feature(name="city", dtype="string"), Feature(name="vip", dtype="bool")],
        aggregations=aggs)
    return lower(view, "proj")


@pytest.fixture(params=["redis", "redis-cluster", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[OnlineStore]:
    if request.param.startswith("redis"):
        from braid.online.redis_store import RedisOnlineStore

        fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
        s: OnlineStore = RedisOnlineStore(request.getfixturevalue(fixture))
    else:
        s = SqliteOnlineStore(tmp_path / "online.db")
    yield s
    s.close()


@pytest.fixture(scope="module")
def plan() -> ViewPlan:
    return make_plan()


def rows(*items: dict[str, Any]) -> pa.Table:
    cols = ["user_id", "_ts", "_ct", "amount", "n_items", "city", "vip"]
    types = [pa.int64(), pa.int64(), pa.int64(), pa.float64(), pa.int64(), pa.string(),
             pa.bool_()]
    return pa.table({c: pa.array([r.get(c) for r in items], t) for c, t in zip(cols, types, strict=True)})


def reader(store: OnlineStore, plan: ViewPlan, *names: str) -> OnlineReader:
    return OnlineReader(store, {f"{plan.name}:{n}": (plan, n) for n in names})


def tiles_table(plan: ViewPlan, hop: int, entries: list[tuple[int, int, list[Any]]]) -> pa.Table:
    """entries: (user_id, tile_start, python partials in partials_for_hop order)."""
    partials = plan.partials_for_hop(hop)
    data: dict[str, pa.Array] = {
        "user_id": pa.array([e[0] for e in entries], pa.int64()),
        "tile_start": pa.array([e[1] for e in entries], pa.int64()),
    }
    for i, p in enumerate(partials):
        for j, (col, dtype) in enumerate(zip(p.columns, p.field_types, strict=True)):
            vals = [None if e[2][i] is None else e[2][i][j] for e in entries]
            data[col] = pa.array(vals, dtype.arrow if dtype != "timestamp" else pa.int64())
    return pa.table(data)


def random_partials(plan: ViewPlan, hop: int, rng: random.Random, n: int = 4) -> list[Any]:
    out = []
    for p in plan.partials_for_hop(hop):
        events = []
        for k in range(n):
            if p.input_type == "string":
                v: Any = rng.choice(["a,b", "%", "", "zz", "b"])
            elif p.input_type == "int64":
                v = rng.randint(-1000, 1000)
            else:
                v = rng.choice([0.1, 1e16, -1e16, 3.0, 1e-300, rng.uniform(-1e9, 1e9)])
            events.append((T0 + k, rng.choice([None, T0 + 5]), v))
        out.append(build(p.spec, events))
    return out


# ---------------------------------------------------------------- projections: LWW


def test_older_event_never_overwrites_newer(store: OnlineStore, plan: ViewPlan) -> None:
    assert store.write_rows(plan, rows({"user_id": 1, "_ts": T0, "amount": 2.0})) == 1
    assert store.write_rows(plan, rows({"user_id": 1, "_ts": T0 - 1, "amount": 9.0})) == 0
    out = reader(store, plan, "amount").read([{"user_id": 1}], T0).to_dict(True, True)
    assert out == {"user_id": [1], "amount": [2.0], "amount__event_timestamp": [T0],
                   "amount__status": ["PRESENT"]}
    store.write_rows(plan, rows({"user_id": 1, "_ts": T0 + 1, "amount": 3.0}))
    assert reader(store, plan, "amount").read([{"user_id": 1}], T0 + 5).to_dict()["amount"] == [3.0]


@pytest.mark.parametrize("first,second", [(0, 1), (1, 0)])
def test_equal_ts_broken_by_created_then_value(store: OnlineStore, plan: ViewPlan,
                                               first: int, second: int) -> None:
    cands = [
        [{"user_id": 1, "_ts": T0, "_ct": None, "amount": 9.0},
         {"user_id": 1, "_ts": T0, "_ct": -5, "amount": 1.0}],  # missing created lowest
        [{"user_id": 2, "_ts": T0, "_ct": 7, "amount": 10.0},
         {"user_id": 2, "_ts": T0, "_ct": 7, "amount": 2.0}],  # "2.0" > "10.0" bytewise
        [{"user_id": 3, "_ts": T0, "_ct": 7, "amount": 1.0, "city": "b"},
         {"user_id": 3, "_ts": T0, "_ct": 7, "amount": 1.0, "city": "a"}],  # null < "b"
    ]
    for pair in cands:
        store.write_rows(plan, rows(pair[first]))
        store.write_rows(plan, rows(pair[second]))
    res = reader(store, plan, "amount", "city").read(
        [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}], T0).to_dict()
    assert res["amount"] == [1.0, 2.0, 1.0]
    assert res["city"] == [None, None, "b"]


def test_duplicate_keys_in_one_batch(store: OnlineStore, plan: ViewPlan) -> None:
    store.write_rows(plan, rows({"user_id": 1, "_ts": T0 + 9, "amount": 1.0},
                                {"user_id": 1, "_ts": T0, "amount": 5.0},
                                {"user_id": 2, "_ts": T0, "amount": 5.0, "city": "x"},
                                {"user_id": 2, "_ts": T0 + 1, "amount": None}))
    res = reader(store, plan, "amount", "city", "n_items").read(
        [{"user_id": 1}, {"user_id": 2}], T0 + 10).to_dict()
    assert res["amount"] == [1.0, None]
    assert res["city"] == [None, None]  # the newer row's NULL removes the field
    assert res["n_items"] == [-7, -7]  # a NULL value is served as the declared default


def test_concurrent_writers_keep_the_greatest_row(store: OnlineStore, plan: ViewPlan,
                                                  request: pytest.FixtureRequest) -> None:
    rng = random.Random(7)
    batches = [[{"user_id": rng.randrange(20), "_ts": T0 + rng.randrange(50),
                 "_ct": rng.choice([None, rng.randrange(5)]),
                 "amount": float(rng.randrange(100))} for _ in range(200)] for _ in range(8)]
    best: dict[int, tuple[int, int, bytes, float]] = {}
    for row in (r for b in batches for r in b):
        k = (row["_ts"], MISSING_CREATED if row["_ct"] is None else row["_ct"],
             repr(row["amount"]).encode(), row["amount"])
        best[row["user_id"]] = max(best.get(row["user_id"], k), k)

    def work(batch: list[dict[str, Any]]) -> None:
        for lo in range(0, len(batch), 10):
            store.write_rows(plan, rows(*batch[lo:lo + 10]))

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = sorted(best)
    res = reader(store, plan, "amount").read([{"user_id": i} for i in ids], T0 + 100)
    d = res.to_dict(include_event_timestamps=True)
    assert d["amount"] == [best[i][3] for i in ids]
    assert d["amount__event_timestamp"] == [best[i][0] for i in ids]


def test_ttl_boundary(store: OnlineStore, plan: ViewPlan) -> None:
    store.write_rows(plan, rows({"user_id": 1, "_ts": T0, "amount": 1.5, "n_items": 3}))
    r = reader(store, plan, "amount", "n_items")
    at_edge = r.read([{"user_id": 1}], T0 + HOUR)
    assert at_edge.to_dict()["amount"] == [1.5]
    assert at_edge.statuses()["amount"] == [FeatureStatus.PRESENT]
    past = r.read([{"user_id": 1}], T0 + HOUR + 1)
    assert past.to_dict() == {"user_id": [1], "amount": [None], "n_items": [-7]}
    assert past.statuses()["n_items"] == [FeatureStatus.OUTSIDE_MAX_AGE]


def test_float_round_trip_exact(store: OnlineStore, plan: ViewPlan) -> None:
    xs = [0.1, 1e16, -0.0, 1e-300, 5e-324, 1.7976931348623157e308, 2 / 3, 123456789.125e-7]
    store.write_rows(plan, rows(*({"user_id": i, "_ts": T0, "amount": x}
                                  for i, x in enumerate(xs))))
    got = reader(store, plan, "amount").read([{"user_id": i} for i in range(len(xs))],
                                             T0).to_dict()["amount"]
    assert [(g, math.copysign(1, g)) for g in got] == [(x, math.copysign(1, x)) for x in xs]


def test_types_and_string_keys(store: OnlineStore, plan: ViewPlan) -> None:
    store.write_rows(plan, rows({"user_id": -3, "_ts": T0, "amount": 1.0, "n_items": -2**63,
                                 "city": "a:b}c\\,é", "vip": False}))
    res = reader(store, plan, "n_items", "city", "vip").read([{"user_id": -3}], T0)
    assert res.to_dict() == {"user_id": [-3], "n_items": [-2**63], "city": ["a:b}c\\,é"],
                             "vip": [False]}
    table = res.to_arrow()
    assert table.schema.field("vip").type == pa.bool_()
    assert list(res.to_pandas().columns) == ["user_id", "n_items", "city", "vip"]


# ---------------------------------------------------------------- windows


def test_window_math_at_tile_boundaries(store: OnlineStore, plan: ViewPlan) -> None:
    k = T0 // H
    entries = [(1, (k - j) * H, [(1,) if p.function == "count" else None
                                 for p in plan.partials_for_hop(H)]) for j in range(8)]
    store.write_tiles(plan, H, tiles_table(plan, H, entries))
    r = reader(store, plan, "count_1h")
    # now exactly at a tile start: the window is tiles k-5 .. k (k taken whole).
    assert r.read([{"user_id": 1}], k * H).to_dict()["count_1h"] == [6]
    assert r.read([{"user_id": 1}], k * H - 1).to_dict()["count_1h"] == [6]  # k-6 .. k-1
    store.write_tiles(plan, H, tiles_table(plan, H, [(1, (k - 6) * H, entries[0][2])]))
    # tile k-6 now has count 1 again but tile k-7 is 1 too: same count; change k-6 to 5
    big = [(5,) if p.function == "count" else None for p in plan.partials_for_hop(H)]
    store.write_tiles(plan, H, tiles_table(plan, H, [(1, (k - 6) * H, big)]))
    assert r.read([{"user_id": 1}], k * H).to_dict()["count_1h"] == [6]
    assert r.read([{"user_id": 1}], k * H - 1).to_dict()["count_1h"] == [10]
    assert r.read([{"user_id": 1}], (k + 5) * H).to_dict()["count_1h"] == [1]
    assert r.read([{"user_id": 1}], (k + 6) * H).statuses()["count_1h"] == [
        FeatureStatus.NOT_FOUND]


def test_window_values_match_the_algebra(store: OnlineStore, plan: ViewPlan) -> None:
    rng = random.Random(3)
    k = T0 // H
    per_tile = {j: random_partials(plan, H, rng) for j in range(k - 7, k + 1)}
    store.write_tiles(plan, H, tiles_table(plan, H, [(9, j * H, ps)
                                                     for j, ps in per_tile.items()]))
    names = [a.name for a in plan.aggregations]
    got = reader(store, plan, *names).read([{"user_id": 9}], k * H + 1).to_dict()
    partials = plan.partials_for_hop(H)
    for a in plan.aggregations:
        i = partials.index(a.partial)
        acc = None
        for j in range(k - a.tiles + 1, k + 1):
            acc = merge(a.partial.spec, acc, per_tile[j][i])
        from braid.algebra import finalize

        want = finalize(a.partial.spec, acc, a.partial.input_type)
        assert got[a.name] == [a.default if want is None else want], a.name


def test_not_found_defaults(store: OnlineStore, plan: ViewPlan) -> None:
    names = ["amount", "n_items", "count_1h", "amount_sum_1h", "amount_mean_1h",
             "amount_max_20m", "n_items_sum_1h"]
    res = reader(store, plan, *names).read([{"user_id": 404}], T0)
    assert res.to_dict() == {"user_id": [404], "amount": [None], "n_items": [-7],
                             "count_1h": [0], "amount_sum_1h": [0.0], "amount_mean_1h": [None],
                             "amount_max_20m": [-1.0], "n_items_sum_1h": [0]}
    assert set(s for v in res.statuses().values() for s in v) == {FeatureStatus.NOT_FOUND}


# ---------------------------------------------------------------- merge_tiles


def test_merge_tiles_matches_python_merge(store: OnlineStore, plan: ViewPlan) -> None:
    rng = random.Random(11)
    codec = TileCodec(plan, H)
    kinds = {p.spec.merge for p in codec.partials}
    assert len(kinds) == 5  # SUM, MIN, MAX, CHAN, LATEST all exercised
    want: dict[tuple[int, int], list[Any]] = {}
    for _ in range(4):
        entries = []
        for uid in range(3):
            for j in range(2):
                delta = random_partials(plan, H, rng, n=rng.randrange(0, 4))
                cur = want.get((uid, j), [None] * len(delta))
                want[(uid, j)] = [merge(p.spec, a, d)
                                  for p, a, d in zip(codec.partials, cur, delta, strict=True)]
                entries.append((uid, T0 + j * H, delta))
        store.merge_tiles(plan, H, tiles_table(plan, H, entries))
    prefix = key_prefix(plan)
    for (uid, j), partials in want.items():
        raw = store.read_hash(f"{prefix}{uid}}}")[f"{H}:{T0 + j * H}"]
        assert codec.decode(raw) == partials


def test_merge_exact_int64_and_overflow(store: OnlineStore, plan: ViewPlan) -> None:
    codec = TileCodec(plan, H)
    idx = next(i for i, p in enumerate(codec.partials) if p.input == "n_items")

    def delta(v: int) -> list[Any]:
        out: list[Any] = [None] * len(codec.partials)
        out[idx] = (v,)
        return out

    for v in (2**62, 2**61 + 1, -(2**53) - 7):
        store.merge_tiles(plan, H, tiles_table(plan, H, [(1, T0, delta(v))]))
    key = f"{key_prefix(plan)}1}}"
    total = 2**62 + 2**61 + 1 - 2**53 - 7
    assert codec.decode(store.read_hash(key)[f"{H}:{T0}"])[idx] == (total,)
    with pytest.raises(OverflowError64):
        store.merge_tiles(plan, H, tiles_table(plan, H, [(2, T0, delta(5)),
                                                         (1, T0, delta(2**62))]))
    assert codec.decode(store.read_hash(key)[f"{H}:{T0}"])[idx] == (total,)
    assert store.read_hash(f"{key_prefix(plan)}2}}") == {}  # the whole batch was refused


def test_sequence_guard_skips_a_replayed_chunk(store: OnlineStore, plan: ViewPlan) -> None:
    codec = TileCodec(plan, H)
    one = [(1,) if p.function == AggFunction.COUNT else None for p in codec.partials]
    chunk = tiles_table(plan, H, [(1, T0, one), (2, T0, one)])
    assert store.merge_tiles(plan, H, chunk, guard=SeqGuard("r1", 5)) == 2
    assert store.merge_tiles(plan, H, chunk, guard=SeqGuard("r1", 5)) == 0  # replay
    assert store.merge_tiles(plan, H, chunk, guard=SeqGuard("r1", 4)) == 0
    assert store.merge_tiles(plan, H, tiles_table(plan, H, [(2, T0, one)]),
                             guard=SeqGuard("r1", 6)) == 1
    assert store.merge_tiles(plan, H, chunk, guard=SeqGuard("r2", 1)) == 2
    got = reader(store, plan, "count_1h").read([{"user_id": 1}, {"user_id": 2}], T0)
    assert got.to_dict()["count_1h"] == [2, 3]
    assert store.read_hash(f"{key_prefix(plan)}2}}")["_seq:r1"] == b"6"


def test_tiles_are_pruned_relative_to_the_newest(store: OnlineStore, plan: ViewPlan) -> None:
    codec = TileCodec(plan, H)
    one = [(1,) if p.function == AggFunction.COUNT else None for p in codec.partials]
    k = T0 // H
    store.write_tiles(plan, H, tiles_table(plan, H, [(1, (k - j) * H, one) for j in range(3)]))
    store.merge_tiles(plan, H, tiles_table(plan, H, [(1, (k + 8) * H, one)]))
    fields = sorted(f for f in store.read_hash(f"{key_prefix(plan)}1}}") if f[0].isdigit())
    # span = max window (1h) + hop: tiles older than (k+8)*H - 70m, i.e. before k+1, go.
    assert fields == [f"{H}:{(k + 8) * H}"]


def test_write_tiles_prunes_what_its_newest_tile_ages_out(store: OnlineStore,
                                                          plan: ViewPlan) -> None:
    codec = TileCodec(plan, H)
    one = [(1,) if p.function == AggFunction.COUNT else None for p in codec.partials]
    two = [(2,) if p.function == AggFunction.COUNT else None for p in codec.partials]
    k = T0 // H
    key = f"{key_prefix(plan)}1}}"
    store.write_rows(plan, rows({"user_id": 1, "_ts": T0, "amount": 1.0}))
    old = tiles_table(plan, H, [(1, (k - j) * H, one) for j in range(3)])
    assert store.write_tiles(plan, H, old) == 3
    assert store.write_tiles(plan, H, old) == 3  # rewriting existing tiles keeps them all
    assert len([f for f in store.read_hash(key) if f[0].isdigit()]) == 3
    # two states of one tile in a batch: the later wins; the newest tile ages out k-2 and k-1
    # (span 70m: tiles before (k+7)*H - 70m = k*H go) while k and the row's fields stay
    newer = tiles_table(plan, H, [(1, (k + 7) * H, one), (2, k * H, one), (1, (k + 7) * H, two)])
    assert store.write_tiles(plan, H, newer) == 3
    stored = store.read_hash(key)
    assert sorted(f for f in stored if f[0].isdigit()) == [f"{H}:{k * H}", f"{H}:{(k + 7) * H}"]
    assert codec.decode(stored[f"{H}:{(k + 7) * H}"]) == two
    assert stored["f:amount"] == b"1.0"
    assert f"{H}:{k * H}" in store.read_hash(f"{key_prefix(plan)}2}}")


def test_batches_larger_than_one_pipeline_slice(store: OnlineStore, plan: ViewPlan) -> None:
    n = 12_000  # > the Redis store's 8192-row slices: several slices, packed ahead
    table = rows(*({"user_id": i % n, "_ts": T0 + (i >= n), "amount": float(i)}
                   for i in range(2 * n)))
    assert store.write_rows(plan, table) == 2 * n  # the second copy of each id is newer
    got = reader(store, plan, "amount").read([{"user_id": u} for u in (0, 8191, 8192, n - 1)],
                                             T0 + 1).to_dict()["amount"]
    assert got == [float(n), float(n + 8191), float(n + 8192), float(2 * n - 1)]
    codec = TileCodec(plan, H)
    rng = random.Random(3)
    entries = [(u, T0 - j * H, [(u + j,) if p.function == AggFunction.COUNT else None
                                for p in codec.partials]) for u in range(3000) for j in range(4)]
    rng.shuffle(entries)  # one entity's tiles scattered over the whole table
    assert store.write_tiles(plan, H, tiles_table(plan, H, entries)) == 12_000
    for u in (0, 1234, 2999):
        stored = store.read_hash(f"{key_prefix(plan)}{u}}}")
        assert sorted(f for f in stored if f[0].isdigit()) == sorted(
            f"{H}:{T0 - j * H}" for j in range(4))
        assert codec.decode(stored[f"{H}:{T0 - 3 * H}"])[0] == (u + 3,)


def test_entity_key_errors(store: OnlineStore, plan: ViewPlan) -> None:
    r = reader(store, plan, "amount")
    with pytest.raises(EntityKeyError, match="lacks join key 'user_id'"):
        r.read([{"user": 1}], T0)
    with pytest.raises(EntityKeyError, match="must be int64, got str '1'"):
        r.read([{"user_id": "1"}], T0)
    with pytest.raises(EntityKeyError, match="got bool"):
        r.read([{"user_id": True}], T0)


def merchant_plan() -> ViewPlan:
    merchant = Entity(name="merchant", join_keys={"merchant_id": "string"})
    src = BatchSource(name="merchants", path="m/*.parquet", timestamp_field="ts",
                      schema={"merchant_id": "string", "ts": "timestamp", "amount": "float64"})
    view = FeatureView(name="merchant_stats", entities=[merchant], source=src,
                       features=[Feature(name="amount", dtype="float64")])
    return lower(view, "proj")


def test_one_round_trip_for_several_views(store: OnlineStore, plan: ViewPlan) -> None:
    other = merchant_plan()
    store.write_rows(plan, rows({"user_id": 1, "_ts": T0, "amount": 1.0}))
    store.write_rows(other, pa.table({"merchant_id": ["m:1"], "_ts": [T0], "amount": [2.0]}))
    calls: list[int] = []
    fetch = store.fetch

    def counting(requests: Any) -> Any:
        calls.append(len(requests))
        return fetch(requests)

    store.fetch = counting  # type: ignore[method-assign]
    r = OnlineReader(store, {"user_stats:amount": (plan, "amount"),
                             "merchant_stats:amount": (other, "amount")},
                     full_feature_names=True)
    got = r.read([{"user_id": 1, "merchant_id": "m:1"}, {"user_id": 2, "merchant_id": "x"}],
                 T0 + 10 * HOUR).to_dict(include_status=True)
    assert calls == [4]
    assert got == {"user_id": [1, 2], "merchant_id": ["m:1", "x"],
                   "user_stats__amount": [None, None],
                   "user_stats__amount__status": ["OUTSIDE_MAX_AGE", "NOT_FOUND"],
                   "merchant_stats__amount": [2.0, None],  # no ttl: never outside max age
                   "merchant_stats__amount__status": ["PRESENT", "NOT_FOUND"]}
    with pytest.raises(Exception, match="full_feature_names=True"):
        OnlineReader(store, {"a": (plan, "amount"), "b": (other, "amount")})


def test_expiry_is_set_from_the_plan(store: OnlineStore, plan: ViewPlan) -> None:
    store.write_rows(plan, rows({"user_id": 1, "_ts": T0, "amount": 1.0}))
    exp = expiry_ms(plan)
    assert exp == 1 * HOUR + H + 24 * HOUR  # max(ttl, W + h + L) + 1 day
    if isinstance(store, SqliteOnlineStore):
        assert store.gc() == 0
        assert store.gc(now_ms=2**62) == 1
        assert store.read_hash(f"{key_prefix(plan)}1}}") == {}
    else:
        ttl = store.client.pttl(f"{key_prefix(plan)}1}}")  # type: ignore[attr-defined]
        assert exp - 5000 < ttl <= exp
