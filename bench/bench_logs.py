"""Log throughput: each braid Log against a raw client loop measured in the same run.

Run: ``python bench/bench_logs.py [--n 200000] [--n-slow 30000]``. Uses BRAID_KAFKA_BOOTSTRAP
if set, else starts a private Tansu broker. Prints records/s and braid/raw ratios; not a test.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from braid.definitions.sources import StreamSource  # noqa: E402
from braid_streaming.ingest import Decoder  # noqa: E402
from braid_streaming.log import LocalLog, Log, Record  # noqa: E402
from braid_streaming.log.confluent import ConfluentLog  # noqa: E402
from braid_streaming.log.kafka_python import KafkaPythonLog  # noqa: E402

T0 = 1_767_225_600_000


def records(n: int) -> list[tuple[bytes, bytes, int]]:
    out = []
    for i in range(n):
        uid = i % 1000
        value = orjson.dumps({"user_id": uid, "ts": T0 + i, "amount": i * 0.25,
                              "merchant": f"m{i % 50}", "flag": i % 2 == 0})
        out.append((b'{"user_id":%d}' % uid, value, T0 + i))
    return out


def rate(n: int, fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def topic() -> str:
    return f"bench.{uuid.uuid4().hex[:10]}"


def braid_produce(log: Log, t: str, recs: list[tuple[bytes, bytes, int]]) -> None:
    for i in range(0, len(recs), 10_000):
        log.produce(t, recs[i:i + 10_000])
    log.flush()


def braid_consume(log: Log, t: str, n: int, parts: int) -> None:
    log.assign(t, list(range(parts)))
    got = 0
    while got < n:
        got += len(log.poll(10_000, 1.0))


def raw_confluent(bootstrap: str, recs: list[tuple[bytes, bytes, int]],
                  parts: int) -> tuple[float, float]:
    from confluent_kafka import Consumer, Producer, TopicPartition

    t = topic()
    ConfluentLog(bootstrap).create_topic(t, parts)
    prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                     "queue.buffering.max.messages": 1_000_000})

    def produce() -> None:
        for i, (k, v, ts) in enumerate(recs):
            prod.produce(t, v, k, i % parts, timestamp=ts)
        prod.flush()

    p_rate = rate(len(recs), produce)
    cons = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench",
                     "enable.auto.commit": False})
    cons.assign([TopicPartition(t, p, 0) for p in range(parts)])

    def consume() -> None:
        got = 0
        while got < len(recs):
            msgs = cons.consume(10_000, 1.0)
            got += len([(m.key(), m.value(), m.offset(), m.timestamp()) for m in msgs])

    c_rate = rate(len(recs), consume)
    cons.close()
    return p_rate, c_rate


def raw_kafka_python(bootstrap: str, recs: list[tuple[bytes, bytes, int]],
                     parts: int) -> tuple[float, float]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    t = topic()
    KafkaPythonLog(bootstrap).create_topic(t, parts)
    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                         batch_size=256 * 1024)

    def produce() -> None:
        for i, (k, v, ts) in enumerate(recs):
            prod.send(t, v, k, None, i % parts, ts)
        prod.flush()

    p_rate = rate(len(recs), produce)
    prod.close()
    cons = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(t, p) for p in range(parts)]
    cons.assign(tps)
    for tp in tps:
        cons.seek(tp, 0)

    def consume() -> None:
        got = 0
        while got < len(recs):
            for msgs in cons.poll(timeout_ms=1000, max_records=10_000).values():
                got += len(msgs)

    c_rate = rate(len(recs), consume)
    cons.close()
    return p_rate, c_rate


def raw_sqlite(path: Path, recs: list[tuple[bytes, bytes, int]]) -> tuple[float, float]:
    con = sqlite3.connect(path / "raw.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE t (o INTEGER PRIMARY KEY, ts INTEGER, key BLOB, value BLOB)")

    def produce() -> None:
        for i in range(0, len(recs), 10_000):
            con.execute("BEGIN")
            con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)",
                            ((i + j, ts, k, v) for j, (k, v, ts) in
                             enumerate(recs[i:i + 10_000])))
            con.execute("COMMIT")

    p_rate = rate(len(recs), produce)

    def consume() -> None:
        for i in range(0, len(recs), 10_000):
            con.execute("SELECT o, ts, key, value FROM t WHERE o >= ? AND o < ?",
                        (i, i + 10_000)).fetchall()

    return p_rate, rate(len(recs), consume)


def bench_log(name: str, log: Log, recs: list[tuple[bytes, bytes, int]],
              parts: int) -> tuple[float, float]:
    t = topic()
    log.create_topic(t, parts)
    p_rate = rate(len(recs), lambda: braid_produce(log, t, recs))
    c_rate = rate(len(recs), lambda: braid_consume(log, t, len(recs), parts))
    log.close()
    return p_rate, c_rate


def bench_decode(recs: list[tuple[bytes, bytes, int]]) -> tuple[float, float]:
    source = StreamSource(name="tx", topic="tx", timestamp_field="ts",
                          schema={"user_id": "int64", "ts": "timestamp",
                                  "amount": "float64", "merchant": "string", "flag": "bool"})
    raw = [Record("tx", 0, i, ts, k, v) for i, (k, v, ts) in enumerate(recs)]
    dec = Decoder(source)
    braid = rate(len(raw), lambda: dec.decode(raw, ingest_time_ms=T0 + 10**9))
    baseline = rate(len(raw), lambda: [orjson.loads(r.value) for r in raw])
    return braid, baseline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000, help="records for confluent and local")
    ap.add_argument("--n-slow", type=int, default=30_000, help="records for kafka-python")
    ap.add_argument("--partitions", type=int, default=4)
    args = ap.parse_args()
    fast, slow, parts = records(args.n), records(args.n_slow), args.partitions

    bootstrap = os.environ.get("BRAID_KAFKA_BOOTSTRAP")
    broker = None
    if not bootstrap:
        from tests.conftest import free_port
        from tests.kafka_fixtures import start_tansu

        broker = start_tansu(free_port())
        bootstrap = broker.bootstrap
    rows: list[tuple[str, int, float, float, float, float]] = []
    try:
        rc = raw_confluent(bootstrap, fast, parts)
        bc = bench_log("confluent", ConfluentLog(bootstrap), fast, parts)
        rows.append(("ConfluentLog vs confluent-kafka", args.n, *bc, *rc))
        rk = raw_kafka_python(bootstrap, slow, parts)
        bk = bench_log("kafka-python", KafkaPythonLog(bootstrap), slow, parts)
        rows.append(("KafkaPythonLog vs kafka-python", args.n_slow, *bk, *rk))
        with tempfile.TemporaryDirectory() as d:
            rs = raw_sqlite(Path(d), fast)
            bl = bench_log("local", LocalLog(Path(d) / "log"), fast, parts)
        rows.append(("LocalLog vs raw sqlite3", args.n, *bl, *rs))
    finally:
        if broker is not None:
            broker.stop()
    dec, base = bench_decode(fast)

    print(f"{'log':34} {'n':>7} {'produce/s':>10} {'raw':>10} {'ratio':>6} "
          f"{'consume/s':>10} {'raw':>10} {'ratio':>6}")
    for name, n, bp, bc_, rp, rc_ in rows:
        print(f"{name:34} {n:>7} {bp:>10,.0f} {rp:>10,.0f} {bp / rp:>6.2f} "
              f"{bc_:>10,.0f} {rc_:>10,.0f} {bc_ / rc_:>6.2f}")
    print(f"{'ingest decode vs orjson.loads loop':34} {args.n:>7} {dec:>10,.0f} "
          f"{base:>10,.0f} {dec / base:>6.2f}")


if __name__ == "__main__":
    main()
