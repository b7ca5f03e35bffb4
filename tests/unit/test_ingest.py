"""Ingest validation (DESIGN §4.0, §4.4, §4.5, §7): every reason, lateness across partitions
and batches, the dead-letter record shape."""

from __future__ import annotations

import base64
import datetime as dt
import random
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pytest

from braid.definitions.sources import StreamSource
from braid_streaming.ingest import (
    Decoder,
    IngestError,
    Reason,
    decode,
    default_key_fields,
    dlq_topic,
)
from braid_streaming.log import LocalLog, Record, partition_for
from braid_streaming.push import PushError, PushReport, push

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW = T0 + 3_600_000
HOUR = 3_600_000

SOURCE = StreamSource(
    name="transactions", topic="transactions", timestamp_field="ts",
    schema={"user_id": "int64", "ts": "timestamp", "amount": "float64", "merchant": "string",
            "flag": "bool"},
    allowed_lateness="1h", max_future_skew="5m", partitions=2,
)


def rec(value: bytes | dict, p: int = 0, o: int = 0, key: bytes | None = b"k") -> Record:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return Record("transactions", p, o, T0, key, raw)


def ev(ts: object = T0, **kw: object) -> dict:
    return {"user_id": 7, "ts": ts, "amount": 2.5, "merchant": "m", "flag": True, **kw}


def one(value: bytes | dict, **kw: object) -> tuple[str, str | None, str]:
    """(outcome, field, detail) of a single record."""
    res = decode(SOURCE, [rec(value)], ingest_time_ms=NOW, **kw)  # type: ignore[arg-type]
    assert sum(res.counts.values()) == 1
    if res.dead_letters:
        d = res.dead_letters[0]
        return d.reason.value, d.field, d.detail
    return "accepted", None, ""


def test_valid_events_become_typed_columns() -> None:
    recs = [
        rec(ev(), o=0),
        rec(ev("2026-01-01T02:00:00+02:00", user_id=8, amount=3), o=1),
        rec(ev("2026-01-01T00:00:01.5Z", amount=None, merchant=None, flag=None, extra=[1]), o=2),
        rec({"user_id": 9, "ts": T0 + 7}, p=1, o=0),
    ]
    res = decode(SOURCE, recs, ingest_time_ms=NOW)
    assert res.counts == {"accepted": 4}
    assert res.dead_letters == []
    t = res.table
    assert t.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert t.schema.field("amount").type == pa.float64()
    assert t.column_names == ["user_id", "ts", "amount", "merchant", "flag", "_partition",
                              "_offset", "_ingested_at", "_late"]
    assert t["user_id"].to_pylist() == [7, 8, 7, 9]
    assert t["ts"].cast(pa.int64()).to_pylist() == [T0, T0, T0 + 1500, T0 + 7]
    assert t["amount"].to_pylist() == [2.5, 3.0, None, None]
    assert t["merchant"].to_pylist() == ["m", "m", None, None]
    assert t["_partition"].to_pylist() == [0, 0, 0, 1]
    assert t["_offset"].to_pylist() == [0, 1, 2, 0]
    assert t["_ingested_at"].to_pylist() == [NOW] * 4
    assert t["_late"].to_pylist() == [False] * 4
    assert res.max_ts == {0: T0 + 1500, 1: T0 + 7}


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe{}",
                                 b'{"user_id": 7, "ts": 1', b"null"])
def test_malformed_json(raw: bytes) -> None:
    assert one(raw)[0] == "malformed_json"


@pytest.mark.parametrize(("value", "field"), [
    ({"user_id": 7}, "ts"),
    (ev(None), "ts"),
    ({"ts": T0}, "user_id"),
    (ev(user_id=None), "user_id"),
])
def test_missing_field(value: dict, field: str) -> None:
    reason, got_field, detail = one(value)
    assert (reason, got_field) == ("missing_field", field)
    assert field in detail


def test_optional_fields_may_be_absent_and_keys_are_configurable() -> None:
    assert one({"user_id": 7, "ts": T0})[0] == "accepted"
    assert one({"ts": T0}, key_fields=[])[0] == "accepted"
    assert one({"user_id": 1, "ts": T0}, key_fields=["merchant"])[:2] == (
        "missing_field", "merchant")
    with pytest.raises(IngestError, match="'nope' is not in the schema"):
        Decoder(SOURCE, key_fields=["nope"])


@pytest.mark.parametrize(("value", "field"), [
    (ev(user_id="7"), "user_id"),
    (ev(user_id=1.5), "user_id"),
    (ev(user_id=7.0), "user_id"),
    (ev(user_id=True), "user_id"),
    (ev(user_id=2**63), "user_id"),
    (ev(amount="2.5"), "amount"),
    (ev(amount=False), "amount"),
    (ev(merchant=5), "merchant"),
    (ev(flag=1), "flag"),
    (ev([T0]), "ts"),
    (ev("yesterday"), "ts"),
    (ev(1.5e12), "ts"),
])
def test_wrong_type_names_the_field(value: dict, field: str) -> None:
    reason, got_field, detail = one(value)
    assert (reason, got_field) == ("wrong_type", field)
    assert f"'{field}'" in detail


@pytest.mark.parametrize(("raw", "field"), [
    (b'{"user_id": 7, "ts": 1767225600000, "amount": NaN}', "amount"),
    (b'{"user_id": 7, "ts": 1767225600000, "amount": Infinity}', "amount"),
    (b'{"user_id": 7, "ts": 1767225600000, "amount": -Infinity}', "amount"),
    (b'{"user_id": 7, "ts": 1767225600000, "amount": 1e400}', "amount"),
    (b'{"user_id": 7, "ts": 1767225600000, "other": [NaN]}', "other.0"),
])
def test_non_finite(raw: bytes, field: str) -> None:
    assert one(raw)[:2] == ("non_finite", field)


def test_naive_timestamp() -> None:
    assert one(ev("2026-01-01T00:00:00"))[:2] == ("naive_timestamp", "ts")
    assert one(ev("2026-01-01"))[:2] == ("naive_timestamp", "ts")


def test_future_is_measured_from_ingest_time() -> None:
    skew = SOURCE.max_future_skew
    assert one(ev(NOW + skew))[0] == "accepted"
    assert one(ev(NOW + skew + 1))[0] == "future"


def _late_flags(ts: list[int], p: list[int], max_ts: dict[int, int] | None = None,
                chunks: int = 1) -> tuple[list[bool], dict[int, int]]:
    offs = {0: 0, 1: 0}
    recs = []
    for t, part in zip(ts, p, strict=True):
        recs.append(rec(ev(t), p=part, o=offs[part]))
        offs[part] += 1
    dec = Decoder(SOURCE)
    flags: list[bool] = []
    m = dict(max_ts or {})
    size = -(-len(recs) // chunks)
    for i in range(0, len(recs), size):
        res = dec.decode(recs[i:i + size], max_ts=m, ingest_time_ms=T0 + 100 * HOUR)
        assert sum(res.counts.values()) == len(recs[i:i + size])
        flags += res.table["_late"].to_pylist()
        m = res.max_ts
    return flags, m


def test_lateness_boundary_and_what_raises_m() -> None:
    # M starts at T0; T0 - 1h is exactly allowed; one ms more is late.
    flags, m = _late_flags([T0, T0 - HOUR, T0 - HOUR - 1, T0 - 2 * HOUR], [0, 0, 0, 0])
    assert flags == [False, False, True, True]
    assert m == {0: T0}
    # Invalid (future) events do not raise M; late events are in the table, flagged.
    recs = [rec(ev(T0), o=0), rec(ev(NOW + HOUR), o=1), rec(ev(T0 - HOUR), o=2),
            rec(ev(T0 + HOUR), o=3), rec(ev(T0 - 1), o=4)]
    res = decode(SOURCE, recs, ingest_time_ms=NOW)
    assert res.counts == {"accepted": 3, "future": 1, "late": 1}
    assert res.table["_offset"].to_pylist() == [0, 2, 3, 4]
    assert res.table["_late"].to_pylist() == [False, False, False, True]
    assert res.on_time["_offset"].to_pylist() == [0, 2, 3]
    assert res.late["_offset"].to_pylist() == [4]
    late = [d for d in res.dead_letters if d.reason == Reason.LATE]
    assert [(d.partition, d.offset) for d in late] == [(0, 4)]
    assert res.max_ts == {0: T0 + HOUR}


def test_lateness_is_per_partition() -> None:
    flags, m = _late_flags([T0 + 5 * HOUR, T0, T0 + 5 * HOUR - 2 * HOUR, T0 - 2 * HOUR],
                           [0, 1, 1, 0])
    assert flags == [False, False, False, True]
    assert m == {0: T0 + 5 * HOUR, 1: T0 + 3 * HOUR}


def test_lateness_carried_across_batches_equals_one_batch() -> None:
    rng = random.Random(7)
    ts = [T0 + rng.randint(-3 * HOUR, 3 * HOUR) + i * 60_000 for i in range(400)]
    parts = [rng.randint(0, 1) for _ in ts]
    whole, m_whole = _late_flags(ts, parts)
    split, m_split = _late_flags(ts, parts, chunks=7)
    assert whole == split and m_whole == m_split
    # the reference, written out: late iff ts < max(earlier valid ts in p) - L
    ref, seen = [], {}
    for t, p in zip(ts, parts, strict=True):
        mp = seen.get(p)
        ref.append(mp is not None and t < mp - HOUR)
        seen[p] = t if mp is None else max(mp, t)
    assert whole == ref and any(ref) and not all(ref)
    # M from before the batch is honoured
    assert _late_flags([T0], [0], max_ts={0: T0 + 2 * HOUR})[0] == [True]


def test_dead_letter_record_shape_and_counts() -> None:
    recs = [rec(b"{oops", o=0, key=b"user-7"), rec(b"\xff{", o=1, key=None),
            rec(ev(user_id="x"), o=2), rec(ev(), o=3)]
    res = decode(SOURCE, recs, ingest_time_ms=NOW)
    assert res.counts == {"accepted": 1, "malformed_json": 2, "wrong_type": 1}
    key, value, ts = res.dead_letters[0].to_record(now_ms=NOW)
    assert key == b"transactions/0/0" and ts == NOW
    body = orjson.loads(value)
    assert body == {"reason": "malformed_json", "detail": body["detail"], "field": None,
                    "topic": "transactions", "partition": 0, "offset": 0, "timestamp": T0,
                    "payload": "{oops", "payload_encoding": "utf-8", "key": "user-7",
                    "key_encoding": "utf-8"}
    body = orjson.loads(res.dead_letters[1].to_json())
    assert body["payload_encoding"] == "base64"
    assert base64.b64decode(body["payload"]) == b"\xff{"
    assert body["key"] is None
    assert orjson.loads(res.dead_letters[2].to_json())["field"] == "user_id"
    assert dlq_topic("fraud") == "braid.fraud.dlq"


def test_empty_batch_and_offset_order() -> None:
    res = decode(SOURCE, [], max_ts={0: 5})
    assert res.table.num_rows == 0 and res.max_ts == {0: 5} and res.counts == {"accepted": 0}
    assert res.table.schema == Decoder(SOURCE).schema
    with pytest.raises(IngestError, match="offset order"):
        decode(SOURCE, [rec(ev(), o=3), rec(ev(), o=3)])


def test_default_key_fields() -> None:
    assert default_key_fields(SOURCE) == ["user_id"]
    src = StreamSource(name="s", topic="s", timestamp_field="ts",
                       schema={"ts": "int64", "score_id": "float64", "card_id": "string"})
    assert default_key_fields(src) == ["card_id"]
    src = StreamSource(name="s", topic="s", timestamp_field="ts", schema={"ts": "int64"})
    assert default_key_fields(src) == []


def test_int64_time_field_accepts_iso_and_stays_int() -> None:
    src = StreamSource(name="s", topic="s", timestamp_field="ts",
                       schema={"ts": "int64", "x": "int64"})
    res = decode(src, [rec({"ts": "1970-01-01T00:00:00.010Z"}), rec({"ts": -5}, o=1)],
                 ingest_time_ms=NOW)
    assert res.table["ts"].type == pa.int64()
    assert res.table["ts"].to_pylist() == [10, -5]


# ------------------------------------------------------------------ push
def _read_all(log: object, topic: str) -> list[Record]:
    ends = log.end_offsets(topic)  # type: ignore[attr-defined]
    return [r for p, end in ends.items() for r in log.read_range(topic, p, 0, end)]  # type: ignore[attr-defined]


def test_push_round_trips_through_the_decoder(tmp_path: Path) -> None:
    log = LocalLog(tmp_path)
    rows = [
        {"user_id": 7, "ts": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "amount": 1},
        {"user_id": 8, "ts": "2026-01-01T01:00:00+01:00", "merchant": "m", "flag": False},
        {"user_id": 7, "ts": T0 + 5, "amount": 2.5},
    ]
    report = push(log, SOURCE, rows)
    assert report == PushReport("transactions", 3, ("user_id",), T0, T0 + 5)
    assert log.partitions("transactions") == SOURCE.partitions
    recs = _read_all(log, "transactions")
    assert sorted(r.timestamp_ms for r in recs) == [T0, T0, T0 + 5]
    for r in recs:
        assert r.key == orjson.dumps({"user_id": orjson.loads(r.value)["user_id"]})
        assert r.partition == partition_for(r.key, 2)  # type: ignore[arg-type]
    res = decode(SOURCE, sorted(recs, key=lambda r: (r.partition, r.offset)),
                 ingest_time_ms=NOW)
    assert res.counts == {"accepted": 3}
    got = sorted(zip(res.table["user_id"].to_pylist(), res.table["amount"].to_pylist(),
                     strict=True), key=str)
    assert got == sorted([(7, 1.0), (8, None), (7, 2.5)], key=str)


def test_push_accepts_pandas_and_arrow(tmp_path: Path) -> None:
    log = LocalLog(tmp_path)
    df = pd.DataFrame({"user_id": [1, 2], "amount": [1.5, float("nan")],
                       "ts": pd.to_datetime([T0, T0 + 1], unit="ms").tz_localize("UTC")})
    assert push(log, SOURCE, df).records == 2
    assert push(log, SOURCE, pa.Table.from_pandas(df)).records == 2
    values = [orjson.loads(r.value) for r in _read_all(log, "transactions")]
    assert sorted((v["user_id"], v["ts"], v["amount"]) for v in values) == [
        (1, T0, 1.5), (1, T0, 1.5), (2, T0 + 1, None), (2, T0 + 1, None)]


@pytest.mark.parametrize(("row", "field", "reason"), [
    ({"user_id": 1, "ts": dt.datetime(2026, 1, 1)}, "ts", "naive_timestamp"),
    ({"user_id": 1, "ts": "2026-01-01T00:00:00"}, "ts", "naive_timestamp"),
    ({"user_id": 1, "ts": "soon"}, "ts", "wrong_type"),
    ({"user_id": 1}, "ts", "missing_field"),
    ({"ts": T0}, "user_id", "missing_field"),
    ({"user_id": "1", "ts": T0}, "user_id", "wrong_type"),
    ({"user_id": True, "ts": T0}, "user_id", "wrong_type"),
    ({"user_id": 1, "ts": T0, "amount": float("nan")}, "amount", "non_finite"),
    ({"user_id": 1, "ts": T0, "flag": 1}, "flag", "wrong_type"),
    ({"user_id": 1, "ts": T0, "colour": "red"}, "colour", "unknown_field"),
])
def test_push_is_all_or_nothing(tmp_path: Path, row: dict, field: str, reason: str) -> None:
    log = LocalLog(tmp_path)
    good = {"user_id": 5, "ts": T0}
    with pytest.raises(PushError) as info:
        push(log, SOURCE, [good, row, good, row])
    err = info.value
    assert (err.row, err.field, err.reason, err.bad_rows) == (1, field, reason, 2)
    assert "nothing was pushed" in str(err)
    if reason == "naive_timestamp":
        assert "tz_localize" in str(err)
    assert not log.topic_exists("transactions")


def test_push_naive_dataframe_column_is_refused_with_the_fix(tmp_path: Path) -> None:
    df = pd.DataFrame({"user_id": [1], "ts": pd.to_datetime([T0], unit="ms")})
    with pytest.raises(PushError, match="tz_localize"):
        push(LocalLog(tmp_path), SOURCE, df)


def test_push_key_fields(tmp_path: Path) -> None:
    log = LocalLog(tmp_path)
    push(log, SOURCE, [{"user_id": 1, "ts": T0, "merchant": "m"}],
         key_fields=["merchant", "user_id"])
    (r,) = _read_all(log, "transactions")
    assert r.key == b'{"merchant":"m","user_id":1}'
    with pytest.raises(PushError, match="key field not in the schema"):
        push(log, SOURCE, [], key_fields=["nope"])
