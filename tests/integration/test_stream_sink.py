"""The online writer (``braid stream sink``): tiles topic records -> online store, with the
count guard (an older state re-emitted after a Flink restore never lowers n), ownership
cutoffs, tombstones and offsets committed after apply. Runs on SQLite and Redis over the local
log (no broker needed: the writer only uses the Log interface)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from braid.compile.flink import tiles_topic
from braid.definitions import Aggregation, Entity, FeatureView, StreamSource
from braid.online import OnlineStore, SqliteOnlineStore
from braid.online.encoding import TileCodec, key_prefix
from braid.plan import ViewPlan, lower
from braid.timeutil import MINUTE
from braid_streaming.log import LocalLog
from braid_streaming.sink import MemoryOffsets, TileSink

H = 5 * MINUTE
T0 = 1_700_000_100_000  # a multiple of 5 minutes


def make_plan() -> ViewPlan:
    user = Entity(name="user", join_keys={"user_id": "int64"})
    src = StreamSource(name="txn", topic="txn", timestamp_field="ts",
                       schema={"user_id": "int64", "ts": "int64", "amount": "float64"})
    aggs = [Aggregation(function="count", window="1h"),
            Aggregation(column="amount", function="sum", window="1h"),
            Aggregation(column="amount", function="var", window="1h"),
            Aggregation(column="amount", function="max", window="1h")]
    return lower(FeatureView(name="user_txn", entities=[user], source=src, aggregations=aggs),
                 "fraud")


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "redis":
        from braid.online import RedisOnlineStore

        s: OnlineStore = RedisOnlineStore(request.getfixturevalue("redis_url"))
    else:
        s = SqliteOnlineStore(tmp_path / "online.db")
    yield s
    s.close()


def _state(n: int, s: float, vmax: float) -> dict[str, Any]:
    mean = s / n
    return {"_rows__count__n": n, "amount__sum__s": s, "amount__var__n": n,
            "amount__var__mean": mean, "amount__var__m2": 0.0, "amount__max__v": vmax}


def _table(plan: ViewPlan, rows: list[tuple[int, int, dict[str, Any]]]) -> pa.Table:
    cols: dict[str, list[Any]] = {"user_id": [], "tile_start": []}
    for user, start, state in rows:
        cols["user_id"].append(user)
        cols["tile_start"].append(start)
        for k, v in state.items():
            cols.setdefault(k, []).append(v)
    return pa.table(cols)


def _tile(store: OnlineStore, plan: ViewPlan, user: int, start: int) -> dict[str, Any]:
    """The stored tile by function (count, sum, var, max); {} when absent."""
    raw = store.read_hash(f"{key_prefix(plan)}{user}}}").get(f"{H}:{start}")
    if raw is None:
        return {}
    states = TileCodec(plan, H).decode(raw)
    return {str(p.function): s for p, s in zip(plan.partials_for_hop(H), states, strict=True)}


def test_columns_match_the_plan() -> None:
    plan = make_plan()
    assert {c for p in plan.partials for c in p.columns} == set(_state(1, 1.0, 1.0))


def test_guard_never_lowers_a_count(store: OnlineStore) -> None:
    plan = make_plan()
    assert store.write_tiles_monotonic(plan, H, _table(plan, [(1, T0, _state(5, 10.0, 4.0))])) == 1
    # an older state (n=3) of the same tile, as re-emitted after a restore: skipped
    assert store.write_tiles_monotonic(plan, H, _table(plan, [(1, T0, _state(3, 6.0, 3.0))])) == 0
    assert _tile(store, plan, 1, T0)["count"] == (5,)
    # a newer state wins, and within one batch the order of states holds
    batch = [(1, T0, _state(7, 14.0, 5.0)), (1, T0, _state(6, 12.0, 5.0)),
             (2, T0, _state(1, 2.0, 2.0))]
    assert store.write_tiles_monotonic(plan, H, _table(plan, batch)) == 2
    got = _tile(store, plan, 1, T0)
    assert got["count"] == (7,) and got["sum"] == (14.0,) and got["max"] == (5.0,)
    assert _tile(store, plan, 2, T0)["count"] == (1,)
    # equal counts overwrite (the same events give the same state)
    assert store.write_tiles_monotonic(plan, H, _table(plan, [(1, T0, _state(7, 14.0, 5.0))])) == 1


def _record(plan: ViewPlan, user: int, start: int, state: dict[str, Any] | None
            ) -> tuple[bytes, bytes | None, int]:
    key = json.dumps({"user_id": user, "hop": H, "tile_start": start}).encode()
    return key, None if state is None else json.dumps(state).encode(), start


def test_sink_applies_guards_cuts_and_commits(store: OnlineStore, tmp_path: Path) -> None:
    plan = make_plan()
    log = LocalLog(tmp_path / "log")
    topic = tiles_topic(plan)
    log.create_topic(topic, partitions=1, compacted=True)
    cutoff = T0 + H
    records = [
        _record(plan, 1, T0, _state(2, 3.0, 2.0)),          # batch-owned (< C): not written
        _record(plan, 1, cutoff, _state(1, 1.0, 1.0)),
        _record(plan, 1, cutoff, _state(3, 6.0, 3.0)),
        _record(plan, 2, cutoff, _state(4, 8.0, 2.5)),
    ]
    log.produce(topic, [(k, v or b"", ts) for k, v, ts in records])
    log.flush()
    offsets = MemoryOffsets()
    sink = TileSink(store, [plan], log, offsets, cutoffs=lambda p: {H: cutoff})
    while sink.run_once(timeout=0.2):
        pass
    assert offsets.load(plan) == {0: 4}
    assert sink.report.below_cutoff == 1
    assert _tile(store, plan, 1, T0) == {}
    assert _tile(store, plan, 1, cutoff)["count"] == (3,)
    assert _tile(store, plan, 2, cutoff)["count"] == (4,)

    # a restore re-emits older states, then the newer one: the store never goes back
    log2 = LocalLog(tmp_path / "log")
    again = [_record(plan, 1, cutoff, _state(2, 4.0, 2.0)),
             _record(plan, 1, cutoff, _state(5, 9.0, 3.0)),
             _record(plan, 2, cutoff, _state(1, 1.0, 1.0))]
    log2.produce(topic, [(k, v or b"", ts) for k, v, ts in again])
    log2.flush()
    sink2 = TileSink(store, [plan], log2, offsets, cutoffs=lambda p: {H: cutoff})
    while sink2.run_once(timeout=0.2):
        pass
    assert offsets.load(plan) == {0: 7}
    assert _tile(store, plan, 1, cutoff)["count"] == (5,)
    assert _tile(store, plan, 2, cutoff)["count"] == (4,)
    assert sink2.report.records == 3  # resumed from the committed offsets, not from 0
