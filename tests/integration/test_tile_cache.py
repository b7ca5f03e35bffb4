"""The runner's tile cache (braid.online.tilecache) changes how merges read, never what they
store: on every store, merges through a cache leave the same tiles, guards and pruning as
merges that read the store, also when the cache evicts keys mid-batch, when replies are
read at the end of ``store.batch()``, and when a crash leaves a batch half applied."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from braid.online import OnlineStore, SeqGuard
from braid.online.encoding import TileCodec, key_prefix, prune_span
from braid.online.tilecache import TileCache, key_runs
from braid.plan import ViewPlan
from tests.integration.test_online_contract import (
    T0,
    H,
    make_plan,
    random_partials,
    tiles_table,
)
from tests.integration.test_online_contract import store as store  # noqa: F401 (fixture)

USERS = range(6)


def batches(plan: ViewPlan, n: int, seed: int) -> list[list[tuple[int, int, list[Any]]]]:
    """Deltas of ``n`` batches; tiles move forward over the run, so old ones get pruned."""
    rng = random.Random(seed)
    out = []
    for b in range(n):
        entries = []
        for uid in USERS:
            for j in sorted(rng.sample(range(b * 3, b * 3 + 5), rng.randrange(1, 4))):
                entries.append((uid, T0 + j * H, random_partials(plan, H, rng,
                                                                 n=rng.randrange(1, 4))))
        out.append(entries)
    return out


def tiles_of(store: OnlineStore, plan: ViewPlan) -> dict[int, dict[str, Any]]:
    """Every key's tile fields (decoded) and guard fields."""
    codec = TileCodec(plan, H)
    out = {}
    for uid in USERS:
        h = store.read_hash(f"{key_prefix(plan)}{uid}}}")
        out[uid] = {f: (v if f.startswith("_seq:") else codec.decode(v)) for f, v in h.items()}
    return out


def chunks(entries: list[tuple[int, int, list[Any]]], users: int = 2
           ) -> list[list[tuple[int, int, list[Any]]]]:
    """Chunks of whole keys, as the runner cuts them (a guard admits one chunk per key)."""
    out: dict[int, list[tuple[int, int, list[Any]]]] = {}
    for e in entries:
        out.setdefault(e[0] // users, []).append(e)
    return list(out.values())


def run(store: OnlineStore, plan: ViewPlan, work: list[list[tuple[int, int, list[Any]]]],
        cache: TileCache | None, first_seq: int = 1) -> int:
    applied = 0
    for seq, entries in enumerate(work, start=first_seq):
        with store.batch():
            for part in chunks(entries):
                applied += store.merge_tiles(plan, H, tiles_table(plan, H, part),
                                             guard=SeqGuard("r", seq), cache=cache)
    return applied


@pytest.mark.parametrize("max_keys", [100, 2])
def test_cached_merges_store_what_reading_merges_store(store: OnlineStore, max_keys: int
                                                       ) -> None:
    plan = make_plan()
    other = dataclasses.replace(plan, project="proj_reference")
    work = batches(plan, 8, seed=3)
    cache = TileCache(max_keys=max_keys)
    assert run(store, plan, work, cache) == run(store, other, work, None)
    got, want = tiles_of(store, plan), tiles_of(store, other)
    assert got == want
    span = prune_span(plan, H)
    for fields in got.values():  # pruning happened, the same way
        starts = [int(f.split(":")[1]) for f in fields if not f.startswith("_")]
        assert max(starts) - min(starts) <= span
        assert fields["_seq:r"] == b"8"
    assert len(cache) <= max_keys
    if max_keys > len(USERS):
        assert cache.hits > 0 and cache.loads == len(USERS)  # each key read once
    else:
        assert cache.loads > len(USERS)  # evicted keys were read again


def test_a_crash_mid_batch_and_a_replay_with_a_new_cache_apply_once(store: OnlineStore) -> None:
    plan = make_plan()
    other = dataclasses.replace(plan, project="proj_reference")
    work = batches(plan, 4, seed=5)
    run(store, other, work, None)
    cache = TileCache()
    run(store, plan, work[:3], cache)
    crash = work[3]
    with store.batch():  # the first chunk of batch 4 lands, then the process dies
        store.merge_tiles(plan, H, tiles_table(plan, H, chunks(crash)[0]),
                          guard=SeqGuard("r", 4), cache=cache)
    fresh = TileCache()  # a restarted runner knows nothing
    with store.batch():
        for part in chunks(crash):
            store.merge_tiles(plan, H, tiles_table(plan, H, part), guard=SeqGuard("r", 4),
                              cache=fresh)
    assert tiles_of(store, plan) == tiles_of(store, other)
    # and a second replay of the same batch changes nothing
    with store.batch():
        assert store.merge_tiles(plan, H, tiles_table(plan, H, crash), guard=SeqGuard("r", 4),
                                 cache=fresh) == 0
    assert tiles_of(store, plan) == tiles_of(store, other)


def test_a_failed_batch_leaves_the_cache_without_its_keys(store: OnlineStore) -> None:
    plan = make_plan()
    cache = TileCache()
    work = batches(plan, 2, seed=7)
    run(store, plan, work[:1], cache)
    assert len(cache) == len(USERS)
    with pytest.raises(RuntimeError), store.batch():
        store.merge_tiles(plan, H, tiles_table(plan, H, chunks(work[1])[0]),
                          guard=SeqGuard("r", 2), cache=cache)
        raise RuntimeError("the runner fails before the batch ends")
    cache.clear()  # what the runner does on any failure (runner/source.py)
    reference = dataclasses.replace(plan, project="proj_reference")
    run(store, reference, work, None)
    run(store, plan, work[1:], cache, first_seq=2)  # the retry, from the store
    got = tiles_of(store, plan)
    want = tiles_of(store, reference)
    # the aborted batch may have landed in part on Redis (sent, replies unread): the retry
    # reads each key's guard, so every delta counts once either way
    assert {u: {f: v for f, v in h.items() if not f.startswith("_seq")} for u, h in got.items()} \
        == {u: {f: v for f, v in h.items() if not f.startswith("_seq")} for u, h in want.items()}


def test_interleaved_keys_merge_and_replay_like_grouped_ones(store: OnlineStore) -> None:
    """Deltas whose keys come back later in the table (not as the runner orders them) merge
    the same, and a replay skips exactly the keys the guard says were applied."""
    plan = make_plan()
    other = dataclasses.replace(plan, project="proj_reference")
    work = batches(plan, 4, seed=9)
    run(store, other, work, None)
    rng = random.Random(3)
    mixed = [rng.sample(entries, len(entries)) for entries in work]
    cache = TileCache()
    run(store, plan, mixed[:3], cache)
    crash = mixed[3]
    with store.batch():  # the first chunk lands, then the whole batch is replayed at once
        store.merge_tiles(plan, H, tiles_table(plan, H, chunks(crash)[0]),
                          guard=SeqGuard("r", 4), cache=cache)
    with store.batch():
        applied = store.merge_tiles(plan, H, tiles_table(plan, H, crash),
                                    guard=SeqGuard("r", 4), cache=cache)
    assert applied == len({e[0] for e in crash}) - len({e[0] for e in chunks(crash)[0]})
    assert tiles_of(store, plan) == tiles_of(store, other)


def test_key_runs_group_each_keys_rows() -> None:
    assert key_runs([]) == (None, {})
    order, runs = key_runs(["a", "a", "b", "c", "c"])
    assert order is None and runs == {"a": range(0, 2), "b": range(2, 3), "c": range(3, 5)}
    order, runs = key_runs(["b", "a", "b", "c", "a"])
    assert order is not None and order.tolist() == [0, 2, 1, 4, 3]  # stable
    assert runs == {"b": range(0, 2), "a": range(2, 4), "c": range(4, 5)}
