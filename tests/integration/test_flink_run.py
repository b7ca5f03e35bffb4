"""A managed local Flink run against a private Tansu broker: ``braid flink run --local``
starts a detached worker, ``braid stream sink`` applies its tiles to the online store,
``braid flink stop`` ends it (pid gone), and a second run resumes from the retained
checkpoint without double counting (tiles equal the Python reference of all events)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from braid.equality import log_stats, values_equal
from braid.online import SqliteOnlineStore
from braid.online.encoding import TileCodec, key_prefix
from braid.plan import ViewPlan
from braid.reference import reference_tiles
from braid.repo import load_repo
from tests.kafka_fixtures import Broker, unique_topic

pytest.importorskip("pyflink")
pytestmark = [pytest.mark.flink, pytest.mark.kafka]

T0 = 1_700_000_100_000
FEATURES = '''
from braid import Aggregation, Entity, FeatureView, StreamSource

user = Entity(name="user", join_keys={{"user_id": "int64"}})
txn = StreamSource(name="txn", topic="{topic}", timestamp_field="ts", allowed_lateness="10m",
                   schema={{"user_id": "int64", "ts": "int64", "amount": "float64"}})
user_txn = FeatureView(name="user_txn", entities=[user], source=txn, aggregations=[
    Aggregation(function="count", window="1h"),
    Aggregation(column="amount", function="sum", window="1h"),
    Aggregation(column="amount", function="var", window="1h"),
])
'''


def _cli(repo: Path, *args: str) -> str:
    from braid.cli import flink as _flink  # noqa: F401  (registers the commands)
    from braid.cli.main import cli

    result = CliRunner().invoke(cli, ["--repo", str(repo), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def repo(tmp_path: Path, tansu: Broker) -> Iterator[Path]:
    topic = unique_topic("txn")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "braid.yaml").write_text(
        "project: fraud\nregistry: sqlite:///data/registry.db\n"
        "online_store: {type: sqlite, path: data/online.db}\n"
        f"kafka: {{bootstrap: '{tansu.bootstrap}'}}\nflink: {{mode: local}}\n")
    (root / "features.py").write_text(FEATURES.format(topic=topic))
    from braid_streaming.log import ConfluentLog

    with ConfluentLog(tansu.bootstrap) as log:
        log.create_topic(topic, partitions=2)
    yield root
    from braid_streaming.flink.manage import FlinkPaths, stop

    stop(FlinkPaths(root / "data" / "flink"), timeout_s=30)


def _events(lo: int, hi: int) -> list[dict[str, Any]]:
    """In order per user, cancellation and large-offset values, several tiles."""
    values = [1e16, 1.0, -1e16, 3.0, 1e9 + 0.5, 1e9 - 0.25, 2.5, None]
    return [{"user_id": i % 3, "ts": T0 + i * 20_000, "amount": values[i % len(values)]}
            for i in range(lo, hi)]


def _produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    from braid_streaming.log import ConfluentLog

    with ConfluentLog(bootstrap) as log:
        log.produce(topic, [(str(e["user_id"]).encode(), json.dumps(e).encode(), e["ts"])
                            for e in events])
        log.flush()


def _online(repo: Path, plan: ViewPlan) -> dict[tuple[int, int], dict[str, Any]]:
    """Every stored tile (user, tile_start) -> {function: state}."""
    store = SqliteOnlineStore(repo / "data" / "online.db")
    out: dict[tuple[int, int], dict[str, Any]] = {}
    try:
        for user in range(3):
            for hop in plan.hops:
                codec = TileCodec(plan, hop)
                for f, raw in store.read_hash(f"{key_prefix(plan)}{user}}}").items():
                    if f.startswith(f"{hop}:"):
                        states = codec.decode(raw)
                        out[(user, int(f.split(":")[1]))] = {
                            str(p.function): s for p, s in zip(codec.partials, states, strict=True)}
    finally:
        store.close()
    return out


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout_s:.0f} s")
        time.sleep(0.5)


def _assert_equal_reference(repo: Path, plan: ViewPlan, events: list[dict[str, Any]]) -> None:
    got = _online(repo, plan)
    want = reference_tiles(plan, events)
    assert {(k[0][0], k[2]) for k in want} == set(got)
    for (key, hop, start), fields in want.items():
        tile = got[(key[0], start)]
        xs = [e["amount"] for e in events if e["user_id"] == key[0]
              and start <= e["ts"] < start + hop]
        n, sum_abs, mean, var = log_stats(xs)
        assert tile["count"] == (fields["_rows__count__n"],)
        if fields["amount__sum__s"] is not None:
            assert values_equal("sum", tile["sum"][0], fields["amount__sum__s"], n, sum_abs)
        if fields["amount__var__n"] is not None:
            assert tile["var"][0] == fields["amount__var__n"]
            assert values_equal("var", tile["var"][2], fields["amount__var__m2"], n, sum_abs,
                                mean, var * max(n - 1, 1))


def _counts_match(repo: Path, plan: ViewPlan, events: list[dict[str, Any]]) -> bool:
    want = {(k[0][0], k[2]): f["_rows__count__n"] for k, f in reference_tiles(plan, events).items()}
    got = {k: v["count"][0] for k, v in _online(repo, plan).items() if v.get("count")}
    return got == want


def test_managed_run_stop_and_resume_without_double_counting(repo: Path, tansu: Broker) -> None:
    from braid_streaming.flink.manage import FlinkPaths, read_pid, status

    plan = load_repo(repo).plan("user_txn")
    topic = plan.source.topic
    assert topic is not None
    paths = FlinkPaths(repo / "data" / "flink")
    first = _events(0, 60)
    _produce(tansu.bootstrap, topic, first)

    assert "EXECUTE STATEMENT SET" in _cli(repo, "flink", "compile")
    started = time.monotonic()
    out = _cli(repo, "flink", "run", "--local")
    print(f"flink run --local returned after {time.monotonic() - started:.1f} s")
    assert "running (pid" in out
    pid = read_pid(paths)
    assert pid is not None and paths.log.is_file()
    assert "running" in _cli(repo, "flink", "status")

    sink = subprocess.Popen([sys.executable, "-c", "from braid.cli.main import main; main()",
                             "--repo", str(repo), "stream", "sink"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait("the first tiles online", lambda: _counts_match(repo, plan, first))
        _assert_equal_reference(repo, plan, first)
        _wait("a retained checkpoint", lambda: status(paths).latest_checkpoint is not None)

        assert "stopped" in _cli(repo, "flink", "stop")
        assert read_pid(paths) is None and not Path(f"/proc/{pid}").exists()
        assert "not running" in _cli(repo, "flink", "status")

        both = first + _events(60, 120)
        _produce(tansu.bootstrap, topic, both[60:])
        out = _cli(repo, "flink", "run", "--local")
        st = status(paths)
        assert st.running and st.restored_from is not None, out
        _wait("the resumed tiles online", lambda: _counts_match(repo, plan, both))
        _assert_equal_reference(repo, plan, both)
        assert "stopped" in _cli(repo, "flink", "stop")
    finally:
        sink.terminate()
        text = sink.communicate(timeout=30)[0].decode()
    assert sink.returncode == 0, text
    assert "tiles written" in text
