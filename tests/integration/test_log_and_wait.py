"""Log-and-wait end to end on a copy of the example repo (DESIGN §8): serve with logging at
frozen times, labels early, late, twice and never, the batch and streaming joins, mixed
training sets, the skew report and a log sink outage."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from braid.config import KafkaConfig
from braid.examples.fraud import FraudDataSpec, generate
from braid.logging import LogSchema, log_topic
from braid.logging.serving import make_logger, open_repo_log
from braid.store import FeatureStore
from braid.timeutil import DAY, HOUR
from braid_batch.logjoin_skew import skew_report
from braid_streaming.logwait import run_logwait
from tests.conftest import EXAMPLE_REPO

END = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the last event is before it
T1 = END + 7 * HOUR  # every profile row is loaded by then (loads lag updates by < 6h)
T2, T3 = T1 + DAY, T1 + 2 * DAY
C = T1 + 8 * DAY  # cutoff: requests at T1 and T2 are mature (T2 exactly), T3 is not
EXTRA_LABELS = '''
chargebacks_drop = LabelSource(
    name="chargebacks_drop", source=chargebacks_log, join_on=["user_id"],
    label_fields=["is_chargeback"], timestamp_field="reported_at", maturity="7d",
    duplicates="first", missing="drop")
'''
# (user, is_chargeback, ts, ingested_at), in the order they reach the label log
LABELS = [
    (1, 1, T1 + DAY, T1 + DAY),            # early: counts for u1@T1 and, on its edge, u1@T2
    (2, 1, T1 + DAY, T1 + DAY),            # twice: first
    (2, 0, T1 + 2 * DAY, T1 + 2 * DAY),    # twice: last
    (5, 1, T1 + 3 * DAY, T1 + 3 * DAY),    # for u5@T3, which is not mature at C
    (3, 1, T1 + 7 * DAY + 1, T1 + 7 * DAY + 1),  # late: 1 ms after u3's window
    (3, 1, C + HOUR, C + HOUR),            # after the cutoff
    (6, 1, T1 + 3 * DAY, C + 2 * HOUR),    # in u6's window but ingested after C
]
SERVED = [(T1, [1, 2, 3, 4, 6]), (T2, [1]), (T3, [5])]  # user 4: never labelled


def _rows(users: list[int]) -> list[dict[str, int]]:
    return [{"user_id": u, "merchant_id": (u % 7) + 1} for u in users]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("lw")
    for f in EXAMPLE_REPO.glob("*.py"):
        shutil.copy(f, root / f.name)
    shutil.copy(EXAMPLE_REPO / "braid.yaml", root / "braid.yaml")
    with (root / "services.py").open("a") as fh:
        fh.write(EXTRA_LABELS)
    generate(FraudDataSpec(events=6_000, days=9, end_ms=END, seed=11), root / "data")
    ms = pa.timestamp("ms", tz="UTC")
    pq.write_table(pa.table({
        "user_id": pa.array([x[0] for x in LABELS], pa.int64()),
        "is_chargeback": pa.array([x[1] for x in LABELS], pa.int64()),
        "reported_at": pa.array([x[2] for x in LABELS], pa.int64()).cast(ms),
        "_ingested_at": pa.array([x[3] for x in LABELS], pa.int64()).cast(ms),
    }), root / "data" / "chargebacks" / "part-00000.parquet")
    store = FeatureStore(root)
    store.apply()
    store.backfill(progress=False)
    store.materialize(now=T1)
    results = {}
    for t, users in SERVED:
        r = store.get_online_features(_rows(users), service="fraud_v1", now=t, log=True,
                                      request_id=f"req-{t}")
        plain = store.get_online_features(_rows(users), service="fraud_v1", now=t)
        assert r.to_dict() == plain.to_dict()  # logging changes nothing served
        assert r.request_ids == [f"req-{t}"] * len(users)
        for i, u in enumerate(users):
            results[(f"req-{t}", u)] = {k: v[i] for k, v in r.to_dict().items()}
    assert store.flush_logs("fraud_v1") == 7
    return {"store": store, "root": root, "served": results}


def _label_rows(rows: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return [(r["request_id"], r["user_id"], r["is_chargeback"]) for r in rows]


def test_batch_join_default_last(served: dict[str, Any]) -> None:
    store: FeatureStore = served["store"]
    ts = store.get_training_set_from_logs("fraud_v1", labels="chargebacks", cutoff=C)
    rows = ts.to_pylist()
    assert _label_rows(rows) == [
        (f"req-{T1}", 1, 1), (f"req-{T1}", 2, 0), (f"req-{T1}", 3, 0), (f"req-{T1}", 4, 0),
        (f"req-{T1}", 6, 0), (f"req-{T2}", 1, 1)]
    assert {r["origin"] for r in rows} == {"logged"}
    for r in rows:  # training sees exactly what serving saw
        seen = served["served"][(r["request_id"], r["user_id"])]
        for col in LogSchema.for_service(store.repo, "fraud_v1").columns:
            assert r[col] == seen[col], col
        assert int(r["served_at"].timestamp() * 1000) in (T1, T2)
    edges = {(a.name, b.name) for a, b in store.registry.edges("fraud") if b.kind ==
             "training_set"}
    assert ("fraud_v1", ts.name) in edges


def test_batch_join_first_drop_and_cutoffs(served: dict[str, Any]) -> None:
    store: FeatureStore = served["store"]
    rows = store.get_training_set_from_logs("fraud_v1", labels="chargebacks_drop",
                                            cutoff=C).to_pylist()
    assert _label_rows(rows) == [(f"req-{T1}", 1, 1), (f"req-{T1}", 2, 1), (f"req-{T2}", 1, 1)]
    # one ms before T2's maturity, only T1's requests; labels ingested by then only
    early = store.get_training_set_from_logs("fraud_v1", labels="chargebacks", cutoff=C - 1)
    assert [r["request_id"] for r in early.to_pylist()] == [f"req-{T1}"] * 5
    # after u6's label is ingested, it counts (it is inside u6's window)
    late = store.get_training_set_from_logs("fraud_v1", labels="chargebacks",
                                            cutoff=C + 2 * HOUR).to_pylist()
    assert (f"req-{T1}", 6, 1) in _label_rows(late)


def _stream(store: FeatureStore, labels: str, until: int) -> list[dict[str, Any]]:
    label = store.repo.labels[labels]
    log = open_repo_log(store.config)
    topic = f"labels_{labels}"
    if not log.topic_exists(topic):
        log.create_topic(topic, 1)
        log.produce(topic, [(str(u).encode(), orjson.dumps(
            {"user_id": u, "is_chargeback": v, "reported_at": ts}), ts)
            for u, v, ts, _ in LABELS])
        log.flush()
    schema = LogSchema.for_service(store.repo, "fraud_v1")
    join = run_logwait(log, schema, label, topic, store.project, until=until)
    log.close()
    return join.table().to_pylist()


@pytest.mark.parametrize("labels", ["chargebacks", "chargebacks_drop"])
def test_stream_join_equals_batch(served: dict[str, Any], labels: str) -> None:
    store: FeatureStore = served["store"]
    batch = store.get_training_set_from_logs("fraud_v1", labels=labels, cutoff=C).to_pylist()
    stream = _stream(store, labels, C)
    assert len(stream) == len(batch) > 0
    assert stream == batch


def test_duplicate_log_records_count_once(served: dict[str, Any]) -> None:
    store: FeatureStore = served["store"]
    log = open_repo_log(store.config)
    topic = log_topic("fraud", "fraud_v1")
    first = log.read_range(topic, 0, 0, 1)[0]
    log.produce(topic, [(first.key, first.value, first.timestamp_ms)])  # at-least-once replay
    log.flush()
    log.close()
    rows = store.get_training_set_from_logs("fraud_v1", labels="chargebacks", cutoff=C)
    assert len(rows) == 6
    assert _stream(store, "chargebacks", C) == rows.to_pylist()


def test_mixed_training_set_backfills_before_logging(served: dict[str, Any]) -> None:
    store: FeatureStore = served["store"]
    times = [T1 - 3 * DAY, T1 - 2 * DAY, T1]  # the last is covered by logs: not backfilled
    entity_df = pd.DataFrame({"user_id": [1, 4, 1], "merchant_id": [2, 5, 2],
                              "event_timestamp": pd.to_datetime(times, unit="ms", utc=True)})
    ts = store.get_training_set_from_logs("fraud_v1", labels="chargebacks", cutoff=C,
                                          backfill=entity_df)
    rows = ts.to_pylist()
    back = [r for r in rows if r["origin"] == "backfilled"]
    assert [(r["user_id"], r["is_chargeback"]) for r in back] == [(1, 1), (4, 0)]
    assert all(r["request_id"] is None for r in back)
    assert sum(r["origin"] == "logged" for r in rows) == 6
    pit = store.get_historical_features(entity_df.iloc[:2], service="fraud_v1",
                                        as_of_known=True).to_pandas()
    assert back[0]["amount_count_7d"] == pit["amount_count_7d"][0]
    assert back[1]["age"] == pit["age"][1]


def test_skew_report_healthy_then_detects_a_tampered_value(served: dict[str, Any]) -> None:
    store: FeatureStore = served["store"]
    users = list(range(1, 80))
    for t in (T1, T2):
        store.get_online_features(_rows(users), service="fraud_v1", now=t, log=True)
    store.flush_logs("fraud_v1")
    report = skew_report(store.repo, "fraud_v1")
    assert report.rows >= 2 * len(users)
    assert report.mismatches == 0, report.render()
    assert all(f.count == report.rows for f in report.features)
    assert sum(1 for _ in report.features) == 15
    result = CliRunner().invoke(_cli(), ["--repo", str(served["root"]), "verify", "skew",
                                         "--service", "fraud_v1"])
    assert result.exit_code == 0, result.output
    # a served value that training would not reproduce is reported
    log = open_repo_log(store.config)
    topic = log_topic("fraud", "fraud_v1")
    rec = orjson.loads(log.read_range(topic, 0, 0, 1)[0].value)
    rec["request_id"] = "tampered"
    rec["values"]["user_txn_stats:amount_count_7d"] += 1
    log.produce(topic, [(b"tampered", orjson.dumps(rec), rec["served_at"])])
    log.flush()
    log.close()
    store.flush_logs("fraud_v1")
    bad = skew_report(store.repo, "fraud_v1")
    by = {f.feature: f for f in bad.features}
    assert bad.mismatches == 1
    assert by["user_txn_stats:amount_count_7d"].mismatches == 1
    assert by["user_txn_stats:amount_count_7d"].largest[0]["request_id"] == "tampered"
    out = CliRunner().invoke(_cli(), ["--repo", str(served["root"]), "verify-skew",
                                      "--service", "fraud_v1"])
    assert out.exit_code == 1 and "tampered" in out.output


def _cli() -> Any:
    import braid.cli.training  # noqa: F401  (registers the commands)
    from braid.cli.main import cli

    return cli


def test_cli_training_set(served: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "ts.parquet"
    args = ["--repo", str(served["root"]), "training-set", "--from-logs", "--service",
            "fraud_v1", "--out", str(out), "--cutoff", str(C)]
    ambiguous = CliRunner().invoke(_cli(), args)
    assert ambiguous.exit_code == 1
    assert "2 label sources join" in ambiguous.output and "labels=" in ambiguous.output
    result = CliRunner().invoke(_cli(), [*args, "--labels", "chargebacks_drop"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.column("is_chargeback").to_pylist() == [1] * table.num_rows
    assert table.num_rows >= 3 and set(table.column("origin").to_pylist()) == {"logged"}


def test_sink_outage_loses_no_lookup_and_counts_drops(served: dict[str, Any],
                                                      tmp_path: Path) -> None:
    root: Path = served["root"]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the log folder should be")  # mkdir fails, even as root
    config = served["store"].config.model_copy(
        update={"kafka": KafkaConfig(local_log_path=str(blocked / "log"))})
    store = FeatureStore(root, config=config)
    store._loggers["fraud_v1"] = make_logger(store.repo, "fraud_v1", max_buffered=10,
                                             max_backoff=0.05)
    logger = store.serving_logger("fraud_v1")
    for i in range(15):
        r = store.get_online_features(_rows([i + 1]), service="fraud_v1", now=T1, log=True)
        assert r.to_dict() == store.get_online_features(_rows([i + 1]), service="fraud_v1",
                                                        now=T1).to_dict()
    assert logger.flush(timeout=0.5) is False  # the sink cannot take anything
    s = logger.stats()
    assert (s["accepted"], s["dropped"], s["delivered"], s["buffered"]) == (10, 5, 0, 10)
    assert s["sink_errors"] >= 1 and "log" in (s["last_error"] or "")
    assert 'braid_log_records_total{service="fraud_v1",outcome="dropped"} 5' in \
        logger.prometheus()
    blocked.unlink()  # the sink comes back
    assert logger.flush(timeout=30) is True
    s = logger.stats()
    assert (s["accepted"], s["dropped"], s["delivered"], s["buffered"]) == (10, 5, 10, 0)
    log = open_repo_log(config)
    assert sum(log.end_offsets(log_topic("fraud", "fraud_v1")).values()) == 10
    log.close()
    logger.close()
