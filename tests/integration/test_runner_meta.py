"""The runner's metadata beside each online store (SQLite file, Redis server): strings and the
idempotent sets the tile-close statistics keep their open tiles' entities in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from braid.online import OnlineStore
from braid.online.sqlite_store import SqliteOnlineStore
from braid_streaming.runner.meta import MetaStore, meta_for
from braid_streaming.runner.meta_cache import CachedMeta


@pytest.fixture(params=["redis", "sqlite"])
def meta(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetaStore]:
    if request.param == "redis":
        from braid.online.redis_store import RedisOnlineStore

        store: OnlineStore = RedisOnlineStore(request.getfixturevalue("redis_url"))
    else:
        store = SqliteOnlineStore(tmp_path / "online.db")
    yield meta_for(store)
    store.close()


def test_strings_set_get_and_delete(meta: MetaStore) -> None:
    assert meta.get("runner:x") is None
    meta.set("runner:x", '{"seq": 1}')
    assert meta.get("runner:x") == '{"seq": 1}'
    meta.set("runner:x", None)
    assert meta.get("runner:x") is None


def test_sets_add_idempotently_remove_and_drop(meta: MetaStore) -> None:
    key = "tilestats:shop:ns:600000:1200000"
    assert meta.members(key) == set()
    meta.add_members(key, ["a", "b:{1}", "c"])
    meta.add_members(key, ["a", "b:{1}"])  # a replayed batch adds the same members again
    meta.add_members(key, [])
    assert meta.members(key) == {"a", "b:{1}", "c"}
    meta.remove_members(key, ["a", "zz"])
    assert meta.members(key) == {"b:{1}", "c"}
    assert meta.members(key + ":early") == set()  # sets are separate keys
    meta.drop_members(key)
    assert meta.members(key) == set()
    meta.add_members(key, [str(i) for i in range(12_000)])  # beyond one Redis command
    assert len(meta.members(key)) == 12_000


def test_members_of_many_sets_at_once(meta: MetaStore) -> None:
    meta.add_members("s:1", ["a", "b"])
    meta.add_members("s:2", ["c"])
    got = meta.members_many(["s:1", "s:2", "s:absent", "s:1"])
    assert got == {"s:1": {"a", "b"}, "s:2": {"c"}, "s:absent": set()}
    assert meta.members_many([]) == {}


def test_write_many_applies_in_order(meta: MetaStore) -> None:
    meta.add_members("w:gone", ["x"])
    meta.write_many([
        ("set", "w:index", "[1]"),
        ("add", "w:set", [str(i) for i in range(12_000)]),  # beyond one Redis command
        ("remove", "w:set", ["0", "1"]),
        ("add", "w:set", ["0"]),  # after the remove: the order holds
        ("drop", "w:gone", None),
        ("set", "w:index", "[2]"),
    ])
    assert meta.get("w:index") == "[2]"
    assert len(meta.members("w:set")) == 11_999 and "0" in meta.members("w:set")
    assert meta.members("w:gone") == set()
    meta.write_many([])
    with pytest.raises(ValueError, match="unknown metadata write"):
        meta.write_many([("rename", "w:index", None)])


def test_cached_meta_reads_once_and_writes_through(meta: MetaStore) -> None:
    meta.add_members("c:1", ["a"])
    meta.set("c:index", "[0]")
    cached = CachedMeta(meta)
    assert cached.members_many(["c:1", "c:2"]) == {"c:1": {"a"}, "c:2": set()}
    assert cached.get("c:index") == "[0]"
    meta.add_members("c:1", ["behind its back"])  # only this runner writes them: not seen
    meta.set("c:index", "[9]")
    assert cached.members("c:1") == {"a"} and cached.get("c:index") == "[0]"
    cached.write_many([("add", "c:1", ["b"]), ("remove", "c:1", ["a"]),
                       ("add", "c:3", ["z"]), ("set", "c:index", "[1]")])
    assert meta.members("c:1") == {"b", "behind its back"}  # written through
    assert cached.members("c:1") == {"b"} and cached.get("c:index") == "[1]"
    assert cached.members("c:3") == {"z"}  # never read: read whole when first wanted
    cached.drop_members("c:1")
    assert meta.members("c:1") == set() and cached.members("c:1") == set()
    cached.clear()  # a failed batch: read again
    assert cached.members("c:3") == {"z"} and cached.get("c:index") == "[1]"


def test_cached_meta_forgets_all_past_its_bound(meta: MetaStore) -> None:
    meta.add_members("b:1", ["a", "b", "c"])
    cached = CachedMeta(meta, max_members=2)
    assert cached.members("b:1") == {"a", "b", "c"}
    meta.add_members("b:1", ["d"])
    assert cached.members("b:1") == {"a", "b", "c", "d"}  # not held: read again


def test_cached_meta_keeps_memory_when_a_write_fails(meta: MetaStore) -> None:
    cached = CachedMeta(meta)
    cached.add_members("f:1", ["a"])
    assert cached.members("f:1") == {"a"}
    with pytest.raises(ValueError):
        cached.write_many([("add", "f:1", ["b"]), ("bogus", "f:1", None)])
    assert cached.members("f:1") == {"a"}  # memory follows only acknowledged writes
