"""Write grouping and merge paths of the online stores (DESIGN §7): ``OnlineStore.batch``
(one SQLite transaction per micro-batch) and the two Redis merge paths (server-side for tiles
new to every key, client-side otherwise), which must store the same values."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from braid.online import SeqGuard, SqliteOnlineStore
from braid.online.encoding import TileCodec, key_prefix
from braid.plan import ViewPlan
from tests.integration.test_online_contract import (
    T0,
    H,
    make_plan,
    random_partials,
    rows,
    tiles_table,
)


@pytest.fixture(scope="module")
def plan() -> ViewPlan:
    return make_plan()


class Boom(Exception):
    """Raised inside a batch to abandon it."""


def test_sqlite_batch_commits_every_write_once(tmp_path: Path, plan: ViewPlan) -> None:
    store = SqliteOnlineStore(tmp_path / "online.db")
    codec = TileCodec(plan, H)
    rng = random.Random(3)
    deltas = tiles_table(plan, H, [(1, T0, random_partials(plan, H, rng)),
                                   (2, T0 + H, random_partials(plan, H, rng))])
    with store.batch():
        assert store.merge_tiles(plan, H, deltas, guard=SeqGuard("r", 1)) == 2
        assert store.write_rows(plan, rows({"user_id": 1, "_ts": T0, "amount": 2.5})) == 1
        with store.batch():  # nested: the same transaction
            store.merge_tiles(plan, H, deltas, guard=SeqGuard("r", 2))
    one = store.read_hash(f"{key_prefix(plan)}1}}")
    assert one["f:amount"] == b"2.5" and one["_seq:r"] == b"2"
    assert codec.decode(one[f"{H}:{T0}"]) is not None
    store.close()


def test_sqlite_batch_that_fails_writes_nothing(tmp_path: Path, plan: ViewPlan) -> None:
    store = SqliteOnlineStore(tmp_path / "online.db")
    rng = random.Random(4)
    deltas = tiles_table(plan, H, [(1, T0, random_partials(plan, H, rng))])
    store.merge_tiles(plan, H, deltas, guard=SeqGuard("r", 1))
    before = store.read_hash(f"{key_prefix(plan)}1}}")
    with pytest.raises(Boom), store.batch():
        store.merge_tiles(plan, H, deltas, guard=SeqGuard("r", 2))
        store.write_rows(plan, rows({"user_id": 1, "_ts": T0, "amount": 1.0}))
        raise Boom()
    assert store.read_hash(f"{key_prefix(plan)}1}}") == before
    store.write_rows(plan, rows({"user_id": 3, "_ts": T0, "amount": 1.0}))  # usable after
    assert store.read_hash(f"{key_prefix(plan)}3}}")["f:amount"] == b"1.0"
    store.close()


def test_redis_server_and_client_merges_store_the_same_values(redis_url: str,
                                                              plan: ViewPlan) -> None:
    """One store instance merges later rounds client-side (the tiles exist by then); a new
    instance per round knows no merged tiles and merges on the server. The same partials
    (the text of a large float may differ: Lua prints 1e16 as 10000000000000000)."""
    from braid.online.redis_store import RedisOnlineStore

    steady = RedisOnlineStore(redis_url)
    other_url = redis_url.rsplit("/", 1)[0] + "/9"
    RedisOnlineStore(other_url).client.flushdb()
    rng = random.Random(5)
    rounds = []
    for r in range(4):
        entries = [(uid, T0 + j * H, random_partials(plan, H, rng, n=rng.randrange(0, 4)))
                   for uid in range(4) for j in range(2 + r % 2)]
        rounds.append(tiles_table(plan, H, entries))
    for seq, table in enumerate(rounds, start=1):
        steady.merge_tiles(plan, H, table, guard=SeqGuard("r", seq))
        fresh = RedisOnlineStore(other_url)
        fresh.merge_tiles(plan, H, table, guard=SeqGuard("r", seq))
        fresh.close()
    server = RedisOnlineStore(other_url)
    codec = TileCodec(plan, H)
    for uid in range(4):
        key = f"{key_prefix(plan)}{uid}}}"
        got, want = steady.read_hash(key), server.read_hash(key)
        assert sorted(got) == sorted(want) and len(got) == 4  # three tiles and the guard
        for field, value in got.items():
            if field[0].isdigit():
                assert codec.decode(value) == codec.decode(want[field])
            else:
                assert value == want[field] == b"4"
    server.client.flushdb()
    steady.close()
    server.close()


def test_redis_batch_defers_row_writes_to_its_end(redis_url: str, plan: ViewPlan) -> None:
    """Inside ``batch()`` Redis sends row writes at once and reads their replies at the end:
    every row is stored by then, still last-write-wins (an older row loses)."""
    from braid.online.redis_store import RedisOnlineStore

    store = RedisOnlineStore(redis_url)
    key = f"{key_prefix(plan)}41}}"
    store.client.delete(key)
    with store.batch():
        assert store.write_rows(plan, rows({"user_id": 41, "_ts": T0 + 5, "amount": 2.0})) == 1
        store.write_rows(plan, rows({"user_id": 41, "_ts": T0, "amount": 9.0}))  # older
    assert store.read_hash(key)["f:amount"] == b"2.0"
    assert store.read_hash(key)["_ts"] == str(T0 + 5).encode()
    store.client.delete(key)
    store.close()
