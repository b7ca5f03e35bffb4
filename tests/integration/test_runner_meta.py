"""The runner's metadata beside each online store (SQLite file, Redis server): strings and the
idempotent sets the tile-close statistics keep their open tiles' entities in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from braid.online import OnlineStore
from braid.online.sqlite_store import SqliteOnlineStore
from braid_streaming.runner.meta import MetaStore, meta_for


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
