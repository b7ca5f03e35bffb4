"""The Redis row writer's two paths (``sdk/braid/online/lua_rows.py``), on one server and on
a real 3-master cluster.

A script call whose keys are all absent writes each key's first row without reading it (the
fresh path); a call where any key exists compares every row (last-write-wins). These tests
pin that both paths store the same bytes, that an existing key (a newer projection, or only
tiles) sends its call down the comparing path, and that a newer value written concurrently
by another writer always survives a materialize of older rows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from braid.algebra import AggFunction
from braid.definitions import BatchSource, Entity, Feature, FeatureView
from braid.online import OnlineReader
from braid.online.encoding import TileCodec, expiry_ms, key_prefix
from braid.online.lua_rows import INLINE_MAX
from braid.online.redis_store import RedisOnlineStore
from braid.plan import ViewPlan, lower
from tests.integration.test_online_contract import T0, H, make_plan, rows, tiles_table


@pytest.fixture(params=["redis", "redis-cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[RedisOnlineStore]:
    fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
    s = RedisOnlineStore(request.getfixturevalue(fixture))
    yield s
    s.close()


@pytest.fixture(scope="module")
def plan() -> ViewPlan:
    return make_plan()


def key(plan: ViewPlan, user_id: int) -> str:
    return f"{key_prefix(plan)}{user_id}}}"


def amounts(n: int, ts: int, scale: float, ids: np.ndarray | None = None) -> pa.Table:
    ids = np.arange(n) if ids is None else ids
    m = len(ids)
    return pa.table({"user_id": ids, "_ts": np.full(m, ts), "_ct": pa.nulls(m, pa.int64()),
                     "amount": ids * scale, "n_items": ids, "city": pa.nulls(m, pa.string()),
                     "vip": np.zeros(m, bool)})


def stored_amounts(store: RedisOnlineStore, plan: ViewPlan, ids: list[int]) -> list[Any]:
    r = OnlineReader(store, {"user_stats:amount": (plan, "amount")})
    return r.read([{"user_id": i} for i in ids], T0 + 100).to_dict()["amount"]  # type: ignore[no-any-return]


def test_fresh_and_comparing_paths_store_the_same_bytes(store: RedisOnlineStore,
                                                        plan: ViewPlan) -> None:
    batch = [{"user_id": 1, "_ts": T0, "_ct": T0 + 3, "amount": 1.5, "n_items": 2,
              "city": "a,b", "vip": True},
             {"user_id": 2, "_ts": T0, "amount": None, "n_items": -4, "city": None},
             {"user_id": 3, "_ts": T0, "amount": 2.0}]
    assert store.write_rows(plan, rows(*batch)) == 3  # fresh: nothing stored yet
    fresh = {u: store.read_hash(key(plan, u)) for u in (1, 2, 3)}
    assert fresh[1] == {"_ts": str(T0).encode(), "_ct": str(T0 + 3).encode(), "f:amount": b"1.5",
                        "f:n_items": b"2", "f:city": b"a,b", "f:vip": b"1"}
    assert fresh[2] == {"_ts": str(T0).encode(), "f:n_items": b"-4"}  # NULLs: absent fields
    assert fresh[3] == {"_ts": str(T0).encode(), "f:amount": b"2.0"}
    exp = expiry_ms(plan)
    assert exp is not None
    assert all(exp - 5000 < store.client.pttl(key(plan, u)) <= exp for u in (1, 2, 3))
    # the same rows again, with a key that exists (99) in the call: the comparing path
    store.client.delete(*(key(plan, u) for u in (1, 2, 3)))
    store.client.hset(key(plan, 99), "f:other", "x")
    assert store.write_rows(plan, rows(*batch, {"user_id": 99, "_ts": T0})) == 4
    assert {u: store.read_hash(key(plan, u)) for u in (1, 2, 3)} == fresh


def test_an_existing_newer_row_sends_the_call_down_the_comparing_path(
        store: RedisOnlineStore, plan: ViewPlan) -> None:
    n = 2500  # three calls of up to 1000 keys; on a cluster, many slots
    assert store.write_rows(plan, amounts(2, T0 + 50, 100.0, np.array([7, 2048]))) == 2
    assert store.write_rows(plan, amounts(n, T0, 1.0)) == n - 2  # 7 and 2048 keep the newer
    assert stored_amounts(store, plan, [0, 7, 8, 2048, n - 1]) == [0.0, 700.0, 8.0, 204800.0,
                                                                   float(n - 1)]
    assert store.write_rows(plan, amounts(n, T0, 1.0)) == 0  # a re-run changes nothing


def test_a_key_holding_only_tiles_keeps_them_and_its_expiry(store: RedisOnlineStore,
                                                            plan: ViewPlan) -> None:
    codec = TileCodec(plan, H)
    one = [(1,) if p.function == AggFunction.COUNT else None for p in codec.partials]
    assert store.write_tiles(plan, H, tiles_table(plan, H, [(1, T0, one)])) == 1
    store.client.pexpire(key(plan, 1), 10**9)  # a longer deadline than the view's expiry
    assert store.write_rows(plan, rows({"user_id": 1, "_ts": T0, "amount": 3.0},
                                       {"user_id": 2, "_ts": T0, "amount": 4.0})) == 2
    stored = store.read_hash(key(plan, 1))
    assert stored["f:amount"] == b"3.0"
    assert codec.decode(stored[f"{H}:{T0}"]) == one
    assert store.client.pttl(key(plan, 1)) > 10**9 - 60_000  # not reset: more than enough left


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_a_key_twice_in_a_fresh_call_keeps_the_greatest_row(store: RedisOnlineStore,
                                                            plan: ViewPlan,
                                                            order: tuple[int, int]) -> None:
    pairs = [[{"user_id": 1, "_ts": T0, "_ct": 7, "amount": 10.0},
              {"user_id": 1, "_ts": T0, "_ct": 7, "amount": 2.0}],  # "2.0" > "10.0" bytewise
             [{"user_id": 2, "_ts": T0 + 1, "amount": 1.0, "city": "x"},
              {"user_id": 2, "_ts": T0, "_ct": 5, "amount": 5.0}]]
    table = rows(*(pair[i] for i in order for pair in pairs))
    assert store.write_rows(plan, table) == 3  # both first rows, then one of the seconds
    assert store.read_hash(key(plan, 1))["f:amount"] == b"2.0"
    assert store.read_hash(key(plan, 2)) == {"_ts": str(T0 + 1).encode(), "f:amount": b"1.0",
                                             "f:city": b"x"}


def test_a_concurrent_newer_writer_always_wins(store: RedisOnlineStore, plan: ViewPlan) -> None:
    n = 20_000
    newer = list(range(0, n, 37))
    other = RedisOnlineStore(store.url)
    start = threading.Barrier(2)

    def materialize() -> None:
        start.wait()
        store.write_rows(plan, amounts(n, T0, 1.0))  # fresh namespace, older rows

    def stream() -> None:
        start.wait()
        for lo in range(0, len(newer), 20):
            other.write_rows(plan, amounts(0, T0 + 10, -1.0, np.array(newer[lo:lo + 20])))

    threads = [threading.Thread(target=materialize), threading.Thread(target=stream)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    got = stored_amounts(store, plan, list(range(n)))
    marked = set(newer)
    assert got == [-float(i) if i in marked else float(i) for i in range(n)]


def test_views_beyond_the_inline_limit(store: RedisOnlineStore) -> None:
    names = [f"x{j}" for j in range(INLINE_MAX + 5)]  # the row is gathered in a Lua table
    user = Entity(name="user", join_keys={"user_id": "int64"})
    src = BatchSource(name="wide", path="w/*.parquet", timestamp_field="ts",
                      schema={"user_id": "int64", "ts": "timestamp"} | {x: "int64" for x in names})
    wide = lower(FeatureView(name="wide", entities=[user], source=src,
                             features=[Feature(name=x, dtype="int64") for x in names]), "proj")

    def table(ts: list[int], base: int, null: bool = False) -> pa.Table:
        cols: dict[str, Any] = {"user_id": [1, 2], "_ts": ts}
        for j, x in enumerate(names):
            cols[x] = pa.array([None if null and j % 2 else base + j] * 2, pa.int64())
        return pa.table(cols)

    assert store.write_rows(wide, table([T0, T0], 0)) == 2  # fresh
    assert store.write_rows(wide, table([T0 + 1, T0 - 1], 1000, null=True)) == 1
    one, two = (store.read_hash(f"{key_prefix(wide)}{u}}}") for u in (1, 2))
    assert one == {"_ts": str(T0 + 1).encode()} | {
        f"f:{x}": str(1000 + j).encode() for j, x in enumerate(names) if j % 2 == 0}
    assert two == {"_ts": str(T0).encode()} | {f"f:{x}": str(j).encode()
                                                for j, x in enumerate(names)}
