"""Unit tests of log-and-wait pieces: sampling, the logger's counters with a broken sink, and
the streaming join's rules (first/last, window edges, drop/default, late labels)."""

from __future__ import annotations

from typing import Any

import pytest

from braid.definitions import BatchSource, LabelSource
from braid.dtypes import DType
from braid.logging import LoggingError, LogSchema, ServingLogger, sampled
from braid.online.result import FeatureStatus, OnlineResult
from braid_streaming.logwait import LogWaitJoin

SRC = BatchSource(name="labels", path="x/*.parquet", timestamp_field="ts",
                  schema={"user_id": "int64", "y": "int64", "ts": "timestamp"})
SCHEMA = LogSchema("svc", "v1", (("user_id", DType.INT64),), ("v:f",), ("f",), (DType.INT64,))


def label(**kw: Any) -> LabelSource:
    args = {"name": "lab", "source": SRC, "join_on": ["user_id"], "label_fields": ["y"],
            "timestamp_field": "ts", "maturity": 100}
    return LabelSource(**(args | kw))


def request(rid: str, user: int, served: int) -> dict[str, Any]:
    return {"request_id": rid, "row": 0, "served_at": served, "service_version": "v1",
            "entities": {"user_id": user}, "values": {"v:f": user * 10}}


def test_sampling_is_deterministic_and_near_the_rate() -> None:
    ids = [f"r{i}" for i in range(20_000)]
    kept = [sampled(i, 0.25) for i in ids]
    assert kept == [sampled(i, 0.25) for i in ids]
    assert 0.23 < sum(kept) / len(ids) < 0.27
    assert all(sampled(i, 1.0) for i in ids[:10]) and not any(sampled(i, 0.0) for i in ids[:10])


def _result(n: int) -> OnlineResult:
    return OnlineResult({"user_id": (DType.INT64, list(range(n)))}, ["f"], [DType.INT64],
                        [list(range(n))], [[FeatureStatus.PRESENT] * n], [[1] * n])


def test_logger_buffers_to_its_bound_and_counts_drops() -> None:
    def broken() -> Any:
        raise OSError("sink down")

    logger = ServingLogger(SCHEMA, "t", broken, max_buffered=5, max_backoff=0.01)
    ids = [logger.submit(_result(2), 1_000, f"r{i}") for i in range(4)]
    assert ids[0] == ["r0", "r0"]
    assert logger.flush(timeout=0.2) is False
    s = logger.stats()
    assert (s["offered"], s["accepted"], s["dropped"], s["dropped_requests"]) == (8, 4, 4, 2)
    assert s["delivered"] == 0 and s["buffered"] == 4 and "sink down" in s["last_error"]
    logger.close(timeout=0.1)
    assert logger.stats()["dropped_on_close"] == 4
    with pytest.raises(LoggingError):
        ServingLogger(SCHEMA, "t", broken).submit(_result(2), 0, ["only-one"])


def _run(lab: LabelSource, labels: list[tuple[int, int, int]], until: int) -> LogWaitJoin:
    join = LogWaitJoin(SCHEMA, lab)
    join.add_request(request("a", 1, 0))
    join.add_request(request("b", 2, 0))
    join.add_request(request("a", 1, 0))  # a duplicate delivery
    for user, y, ts in labels:
        join.add_label({"user_id": user, "y": y, "ts": ts})
    join.advance(until)
    return join


def test_stream_join_last_first_and_edges() -> None:
    labels = [(1, 1, 0), (2, 9, 50), (1, 2, 100), (1, 3, 101)]  # 101: just past a's window
    last = _run(label(), labels, 200)
    assert [(r["request_id"], r["y"]) for r in last.table().to_pylist()] == [("a", 2), ("b", 9)]
    assert last.stats["duplicates"] == 1
    first = _run(label(duplicates="first"), labels, 200)
    assert [r["y"] for r in first.rows] == [1, 9]


def test_stream_join_policies_and_maturity() -> None:
    assert _run(label(), [(1, 1, 5)], 99).rows == []  # not mature before 100
    drop = _run(label(), [(1, 1, 5)], 100)
    assert [(r["request_id"], r["y"]) for r in drop.rows] == [("a", 1)]
    default = _run(label(missing="default", default_label={"y": 0}), [(1, 1, 5)], 100)
    assert sorted((r["request_id"], r["y"]) for r in default.rows) == [("a", 1), ("b", 0)]


def test_stream_join_counts_labels_arriving_after_emission() -> None:
    join = _run(label(), [(3, 1, 150), (2, 7, 60)], 200)  # 150 releases a and b first
    assert join.stats["late_labels"] == 1
    assert join.rows == []
