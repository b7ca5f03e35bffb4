"""The embedded runner on the local log + SQLite (DESIGN §7): values, DLQ, archive, crash
recovery, refusal to start without offsets, handoff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest

from braid.store import FeatureStore
from braid.timeutil import MINUTE
from braid_streaming.ingest import dlq_topic
from braid_streaming.log import open_log
from braid_streaming.runner import STREAM_OWNS_ALL, RunnerError, handoff
from braid_streaming.runner.handoff import HandoffError
from tests.integration.test_runner_repo import (
    MERCHANTS,
    USERS,
    assert_close,
    bad_records,
    base_time,
    events,
    expected,
    late_event,
    make_stream_repo,
    online,
    produce_bad,
)


class Crash(Exception):
    """Injected by a chunk hook: the process 'dies' mid-batch."""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_stream_repo(tmp_path / "repo")


def run_once(root: Path, **options: Any) -> FeatureStore:
    fs = FeatureStore(root)
    with fs.stream_runner(max_wait_ms=20, **options) as runner:
        runner.run(once=True, install_signals=False)
    return fs


def check_values(fs: FeatureStore, evs: list[dict[str, Any]], t: int) -> None:
    assert_close(online(fs, "user_txn", "user_id", USERS, t),
                 expected(fs, "user_txn", evs, USERS, t))
    assert_close(online(fs, "merchant_big", "merchant_id", MERCHANTS, t),
                 expected(fs, "merchant_big", evs, MERCHANTS, t))
    assert_close(online(fs, "user_last", "user_id", USERS, t),
                 expected(fs, "user_last", evs, USERS, t))


def test_online_equals_reference_and_point_in_time(repo: Path) -> None:
    t0 = base_time()
    evs = events(t0)
    fs = FeatureStore(repo)
    fs.push("txns", evs[:300])
    fs.push("txns", evs[300:])
    fs.push("txns", [late_event(t0)])
    produce_bad(fs, bad_records(t0))
    fs = run_once(repo, max_batch=97)  # many batches, ranges cut mid-stream
    for t in (t0 + 95 * MINUTE, t0 + 90 * MINUTE + 1):  # older t: tiles pruned (GC)
        check_values(fs, evs, t)
    # The archive feeds batch: point-in-time values equal what the stream served.
    t = t0 + 95 * MINUTE
    df = pd.DataFrame({"user_id": USERS, "event_timestamp": pd.to_datetime(t, unit="ms", utc=True)})
    hist = fs.get_historical_features(df, features=["user_txn:count_1h", "user_txn:amount_sum_1h",
                                                    "user_last:last_amount"]).to_pandas()
    served = online(fs, "user_txn", "user_id", USERS, t)
    assert list(hist["count_1h"]) == [s["count_1h"] for s in served]
    assert list(hist["amount_sum_1h"]) == pytest.approx([s["amount_sum_1h"] for s in served])
    last = online(fs, "user_last", "user_id", USERS, t)
    assert list(hist["last_amount"]) == pytest.approx([s["last_amount"] for s in last])


def test_archive_holds_accepted_and_late_events(repo: Path) -> None:
    t0 = base_time()
    evs = events(t0, n=50)
    fs = FeatureStore(repo)
    fs.push("txns", evs)
    fs.push("txns", [late_event(t0)])
    produce_bad(fs, bad_records(t0))
    run_once(repo)
    files = sorted((repo / "data" / "txns").glob("stream-p*-*-*.parquet"))
    assert files
    table = pq.read_table(files).to_pandas()  # type: ignore[arg-type]
    assert len(table) == len(evs) + 1
    assert int(table["_late"].sum()) == 1
    assert set(table.columns) >= {"_partition", "_offset", "_ingested_at", "_late"}
    schema = pq.read_schema(files[0])
    assert str(schema.field("ts").type) == "timestamp[ms, tz=UTC]"
    assert str(schema.field("_ingested_at").type) == "timestamp[ms, tz=UTC]"


def test_dead_letters_carry_reason_place_and_bytes(repo: Path) -> None:
    t0 = base_time()
    fs = FeatureStore(repo)
    fs.push("txns", events(t0, n=20))
    fs.push("txns", [late_event(t0)])
    bad = bad_records(t0)
    produce_bad(fs, bad)
    run_once(repo)
    run_once(repo)  # a second run finds nothing new and writes no letter twice
    with open_log(fs.config.kafka, fs.config.root) as log:
        end = log.end_offsets(dlq_topic("shop"))[0]
        letters = [orjson.loads(r.value) for r in log.read_range(dlq_topic("shop"), 0, 0, end)]
        keys = [r.key for r in log.read_range(dlq_topic("shop"), 0, 0, end)]
    assert sorted(d["reason"] for d in letters) == sorted([r for _, r in bad] + ["late"])
    assert len(set(keys)) == len(keys)
    by_reason = {d["reason"]: d for d in letters}
    for value, reason in bad:
        d = by_reason[reason]
        assert d["payload"].encode() == value
        assert d["topic"] == "txns" and d["partition"] in (0, 1) and d["offset"] >= 0
        assert keys[letters.index(d)] == f"txns/{d['partition']}/{d['offset']}".encode()


def test_crash_mid_batch_replays_without_double_counting(repo: Path) -> None:
    t0 = base_time()
    evs = events(t0)
    fs = FeatureStore(repo)
    fs.push("txns", evs)
    calls = {"n": 0}

    def die_after_three_chunks(view: str, hop: int | None, chunk: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash()

    with pytest.raises(Crash):
        run_once(repo, chunk_keys=4, max_batch=10_000, hook=die_after_three_chunks)
    fs = FeatureStore(repo)
    docs = [v for k, v in _meta_items(fs) if k.startswith("runner:")]
    assert docs and '"intent": {' in docs[0]  # the crash left an intent behind
    fs = run_once(repo, chunk_keys=4)
    t = t0 + 95 * MINUTE
    check_values(fs, evs, t)
    assert all('"intent": null' in v for k, v in _meta_items(fs) if k.startswith("runner:"))


def _meta_items(fs: FeatureStore) -> list[tuple[str, str]]:
    import sqlite3

    con = sqlite3.connect(fs.config.resolve("data/online.db"))
    try:
        return [(str(k), str(v)) for k, v in con.execute("SELECT key, value FROM braid_runner_meta")]
    finally:
        con.close()


def test_refuses_to_start_when_state_exists_without_offsets(repo: Path) -> None:
    t0 = base_time()
    fs = FeatureStore(repo)
    fs.push("txns", events(t0, n=30))
    run_once(repo)
    import sqlite3

    con = sqlite3.connect(fs.config.resolve("data/online.db"))
    con.execute("DELETE FROM braid_runner_meta")
    con.commit()
    con.close()
    with pytest.raises(RunnerError, match="no offsets for runner"):
        run_once(repo)


def test_refuses_views_owned_by_another_runner_group(repo: Path) -> None:
    fs = FeatureStore(repo)
    fs.push("txns", events(base_time(), n=10))
    run_once(repo)
    fs = FeatureStore(repo)
    with pytest.raises(RunnerError, match="another --views selection"):
        fs.stream_runner(["user_txn"]).start()


def test_handoff_needs_a_backfill_then_moves_the_cutoff(repo: Path) -> None:
    t0 = base_time()
    evs = events(t0)
    fs = FeatureStore(repo)
    fs.push("txns", evs)
    run_once(repo)
    plan = fs.repo.plan("user_txn")
    assert min(fs.registry.cutoffs("shop", plan.namespace).values()) < STREAM_OWNS_ALL + 10**9
    at = t0 + 60 * MINUTE
    with pytest.raises(HandoffError, match="braid backfill"):
        handoff(fs, "user_txn", at=at)
    fs.backfill(views=["user_txn"], end=at, progress=False)
    report = handoff(fs, "user_txn", at=at)
    assert set(fs.registry.cutoffs("shop", plan.namespace).values()) == {at - at % (60 * MINUTE)}
    assert "batch owns tiles before" in report.render()
    # Batch serves the tiles before C, the stream keeps the rest: values unchanged.
    fs.materialize(views=["user_txn"], now=t0 + 95 * MINUTE)
    assert_close(online(fs, "user_txn", "user_id", USERS, t0 + 95 * MINUTE),
                 expected(fs, "user_txn", evs, USERS, t0 + 95 * MINUTE))
