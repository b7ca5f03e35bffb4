"""Redis Cluster specifics of the Redis online store, on a real 3-master cluster.

The shared contract suite (test_online_contract.py) already runs on the cluster; these tests
check what only a cluster has: keys spread over every master, multi-key script calls cut by
hash slot, scripts missing on a node, and namespace deletion across nodes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
import redis

from braid.algebra import AggFunction
from braid.errors import StoreError
from braid.lifecycle import delete_online_namespace
from braid.online import OnlineReader
from braid.online.encoding import TileCodec, key_prefix
from braid.online.redis_store import RedisOnlineStore
from braid.plan import ViewPlan
from tests.conftest import free_port
from tests.integration.test_online_contract import T0, H, make_plan, tiles_table
from tests.redis_cluster_fixtures import RedisClusterServers

N = 3000  # entities: enough for every master to hold many slots' keys


@pytest.fixture
def store(redis_cluster_url: str) -> Iterator[RedisOnlineStore]:
    s = RedisOnlineStore(redis_cluster_url)
    yield s
    s.close()


def user_rows(n: int, ts: int, scale: float) -> pa.Table:
    ids = np.arange(n)
    return pa.table({"user_id": ids, "_ts": np.full(n, ts), "_ct": pa.nulls(n, pa.int64()),
                     "amount": ids * scale, "n_items": ids, "city": [f"c{i}" for i in ids],
                     "vip": ids % 2 == 0})


def master_sizes(cluster: RedisClusterServers) -> list[int]:
    return [int(redis.Redis(port=p).dbsize()) for p in cluster.ports]


def test_writes_spread_over_every_master_and_read_back(
        store: RedisOnlineStore, redis_cluster: RedisClusterServers) -> None:
    plan = make_plan(ttl=None)
    assert store.write_rows(plan, user_rows(N, T0, 0.5)) == N
    assert store.write_rows(plan, user_rows(N, T0 - 1, 9.0)) == 0  # older: every row loses
    sizes = master_sizes(redis_cluster)
    assert sum(sizes) == N and min(sizes) > N // 10
    got = OnlineReader(store, {"user_stats:amount": (plan, "amount"),
                               "user_stats:city": (plan, "city")}
                       ).read([{"user_id": i} for i in range(N)], T0).to_dict()
    assert got["amount"] == [i * 0.5 for i in range(N)]
    assert got["city"] == [f"c{i}" for i in range(N)]


def test_tiles_on_many_slots(store: RedisOnlineStore, redis_cluster: RedisClusterServers) -> None:
    plan: ViewPlan = make_plan()
    codec = TileCodec(plan, H)
    one = [(1,) if p.function == AggFunction.COUNT else None for p in codec.partials]
    entries = [(u, T0 - j * H, one) for u in range(N) for j in range(2)]
    assert store.write_tiles(plan, H, tiles_table(plan, H, entries)) == 2 * N
    assert store.merge_tiles(plan, H, tiles_table(plan, H, [(u, T0, one) for u in range(N)])) == N
    assert min(master_sizes(redis_cluster)) > N // 10
    for u in (0, N // 2, N - 1):
        stored = store.read_hash(f"{key_prefix(plan)}{u}}}")
        assert sorted(stored) == sorted([f"{H}:{T0}", f"{H}:{T0 - H}"])
        assert codec.decode(stored[f"{H}:{T0}"]) == [(2,) if x else None for x in one]


def test_scripts_flushed_on_a_node_are_loaded_again(
        store: RedisOnlineStore, redis_cluster: RedisClusterServers) -> None:
    plan = make_plan(ttl=None)
    store.write_rows(plan, user_rows(100, T0, 1.0))
    for port in redis_cluster.ports:
        redis.Redis(port=port).script_flush()
    assert store.write_rows(plan, user_rows(100, T0 + 1, 2.0)) == 100
    assert store.read_hash(f"{key_prefix(plan)}7}}")["f:amount"] == b"14.0"


def test_gc_deletes_a_namespace_on_every_master(
        store: RedisOnlineStore, redis_cluster: RedisClusterServers) -> None:
    plan = make_plan(ttl=None)
    store.write_rows(plan, user_rows(N, T0, 1.0))
    store.client.set("not-braid", "kept")
    assert delete_online_namespace(store, plan.project, plan.namespace) == N
    assert sum(master_sizes(redis_cluster)) == 1
    assert store.client.get("not-braid") == b"kept"


def test_bad_urls_get_precise_errors() -> None:
    with pytest.raises(StoreError, match=r"'http://h:1'.*redis\+cluster://host:port"):
        RedisOnlineStore("http://h:1")
    with pytest.raises(StoreError, match="cannot reach the Redis Cluster at redis"):
        RedisOnlineStore(f"redis+cluster://127.0.0.1:{free_port()}")
