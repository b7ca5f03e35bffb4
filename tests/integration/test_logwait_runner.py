"""The resumable streaming log-and-wait join (DESIGN §8): labels arrive in two halves, the
runner steps after each with a restart in between (and a crash between writing its output
and storing its state), and the union of what it emitted is the batch join's training set at
the same cutoff, each row once."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from braid.logging import log_topic
from braid.logging.serving import open_repo_log
from braid.store import FeatureStore
from braid_streaming.logwait_runner import LogWaitRunner, read_output, state_key
from tests.integration.test_log_and_wait import LABELS, T1, T2, C, served  # noqa: F401

# the label log in arrival order; the first half ends past the T1 requests' maturity
FIRST, SECOND = LABELS[:5], LABELS[5:]


def _push(store: FeatureStore, topic: str, labels: list[tuple[int, int, int, int]]) -> None:
    log = open_repo_log(store.config)
    try:
        log.create_topic(topic, 1)
        log.produce(topic, [(str(u).encode(), orjson.dumps(
            {"user_id": u, "is_chargeback": v, "reported_at": ts}), ts)
            for u, v, ts, _ in labels])
        log.flush()
    finally:
        log.close()


def _ids(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(r["request_id"], r["row"]) for r in rows]


class _Crash(Exception):
    pass


class _CrashingRegistry:
    """The registry, but storing state fails once: a crash after the output is written."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def get_state(self, *a: Any, **k: Any) -> Any:
        return self.inner.get_state(*a, **k)

    def set_state(self, *a: Any, **k: Any) -> None:
        raise _Crash


def test_runner_two_steps_with_restart_equals_batch(served: dict[str, Any]) -> None:  # noqa: F811
    store: FeatureStore = served["store"]
    labels, topic = "chargebacks_drop", "lwr_labels_drop"
    batch = store.get_training_set_from_logs("fraud_v1", labels=labels, cutoff=C).to_pylist()
    assert len(batch) == 3

    _push(store, topic, FIRST)
    first = LogWaitRunner.for_store(store, "fraud_v1", labels, topic, until=C)
    r1 = first.step()
    assert (r1.requests, r1.labels, r1.emitted) == (7, 5, 2)  # T1's requests matured
    assert r1.file is not None and r1.file.name == "00000000-log0.0-7_lab0.0-5.parquet"
    assert r1.pending == 2 and not first.done  # T2 (due exactly C) and T3 wait
    first.close()

    _push(store, topic, SECOND)
    # a crash after the second output file is durable but before the state is stored
    crashing = LogWaitRunner.for_store(store, "fraud_v1", labels, topic, until=C)
    crashing.registry = _CrashingRegistry(store.registry)
    with pytest.raises(_Crash):
        crashing.step()
    crashing.close()
    assert len(list(crashing.out_dir.glob("*.parquet"))) == 2

    # restart: the uncommitted file is dropped and its input replayed
    second = LogWaitRunner.for_store(store, "fraud_v1", labels, topic, until=C)
    assert len(list(second.out_dir.glob("*.parquet"))) == 1
    r2 = second.step()
    assert (r2.requests, r2.labels, r2.emitted) == (0, 0, 1)  # labels after C are not read
    assert second.done and r2.pending == 1  # T3 is not mature at C
    again = second.step()  # nothing new: nothing emitted twice
    assert (again.requests, again.labels, again.emitted, again.file) == (0, 0, 0, None)
    second.close()

    files = sorted(second.out_dir.glob("*.parquet"))
    assert len(files) == 2
    raw = [r for f in files for r in pq.read_table(f).to_pylist()]
    assert len(raw) == len(set(_ids(raw))) == 3  # no duplicates, even before dedupe
    stream = read_output(second.out_dir).to_pylist()
    assert stream == batch
    assert {r["request_id"] for r in stream} == {f"req-{T1}", f"req-{T2}"}
    state = store.registry.get_state(store.project, state_key("fraud_v1", labels))
    assert state["log"] == {"0": 7} and state["labels"] == {"0": 5} and state["seq"] == 2


def test_cli_stream_once_twice_equals_batch(served: dict[str, Any]) -> None:  # noqa: F811
    import braid.cli.training  # noqa: F401  (registers the commands)
    from braid.cli.main import cli

    store: FeatureStore = served["store"]
    labels, topic = "chargebacks", "lwr_labels_last"
    args = ["--repo", str(served["root"]), "training-set", "--stream", "--service", "fraud_v1",
            "--labels", labels, "--label-topic", topic, "--cutoff", str(C), "--once"]
    _push(store, topic, FIRST)
    one = CliRunner().invoke(cli, args)
    assert one.exit_code == 0, one.output
    assert "emitted 5 rows" in one.output
    _push(store, topic, SECOND)
    two = CliRunner().invoke(cli, args)
    assert two.exit_code == 0, two.output
    assert "emitted 1 rows" in two.output
    three = CliRunner().invoke(cli, args)
    assert three.exit_code == 0 and "emitted 0 rows" in three.output

    runner = LogWaitRunner.for_store(store, "fraud_v1", labels, topic, until=C)
    runner.close()
    stream = read_output(runner.out_dir).to_pylist()
    batch = store.get_training_set_from_logs("fraud_v1", labels=labels, cutoff=C).to_pylist()
    assert len(stream) == len(batch) == 6
    assert stream == batch
    log = open_repo_log(store.config)
    try:  # the runner consumed the whole service log
        assert log.end_offsets(log_topic("fraud", "fraud_v1")) == {0: 7}
    finally:
        log.close()


def test_cli_stream_refuses_mixed_options(served: dict[str, Any]) -> None:  # noqa: F811
    import braid.cli.training  # noqa: F401
    from braid.cli.main import cli

    result = CliRunner().invoke(cli, ["--repo", str(served["root"]), "training-set",
                                      "--stream", "--from-logs", "--service", "fraud_v1"])
    assert result.exit_code != 0 and "--stream does not take" in result.output
    no_topic = CliRunner().invoke(cli, ["--repo", str(served["root"]), "training-set",
                                        "--stream", "--service", "fraud_v1", "--labels",
                                        "chargebacks", "--once"])
    assert no_topic.exit_code != 0 and "label_topic" in no_topic.output


class _MemoryRegistry:
    def __init__(self) -> None:
        self.states: dict[tuple[str, str], Any] = {}

    def get_state(self, project: str, key: str, default: Any = None) -> Any:
        return self.states.get((project, key), default)

    def set_state(self, project: str, key: str, value: Any) -> None:
        self.states[(project, key)] = orjson.loads(orjson.dumps(value))  # JSON, as stored


def test_unbounded_runner_emits_past_maturity_on_the_label_log(
        served: dict[str, Any], tmp_path: Any) -> None:  # noqa: F811
    """Without a cutoff, a request is emitted once the label log's time is past its
    maturity: the batch join at (label-log time - 1 ms), label by label."""
    from braid.logging import LogSchema

    store: FeatureStore = served["store"]
    topic, registry = "lwr_labels_unbounded", _MemoryRegistry()
    schema = LogSchema.for_service(store.repo, "fraud_v1")
    label = store.repo.labels["chargebacks"]
    store.flush_logs("fraud_v1")
    for i, item in enumerate(LABELS):
        _push(store, topic, [item])
        runner = LogWaitRunner(open_repo_log(store.config), registry, store.project, schema,
                               label, topic, tmp_path)  # a restart after every label
        report = runner.step()
        runner.close()
        assert report.labels == 1
        time = max(x[2] for x in LABELS[:i + 1])
        batch = store.get_training_set_from_logs("fraud_v1", labels="chargebacks",
                                                 cutoff=time - 1).to_pylist()
        assert read_output(tmp_path).to_pylist() == batch, i
    assert registry.states[(store.project, state_key("fraud_v1", "chargebacks"))][
        "stats"]["late_labels"] == 1  # u6's label came after u6's request was emitted
