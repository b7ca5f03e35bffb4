"""``braid verify parity``: one adversarial log (out-of-order, late, duplicate timestamps,
cancellation, 1e9 offsets, 2 partitions) through DuckDB batch, the embedded runner
(``StreamRunner`` on a temporary repository: local log, SQLite online store) and a bounded
Flink run against Tansu; every tile and sampled feature values agree under DESIGN §4.8."""

from __future__ import annotations

import copy
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from braid.online import SqliteOnlineStore
from braid_streaming.ingest import parse_time
from braid_streaming.parity import run_parity
from braid_streaming.parity.compare import EngineResult, compare_tiles
from braid_streaming.parity.engines import duckdb_tiles, runner_tiles, unique_names
from braid_streaming.parity.events import (
    PARTITIONS,
    accepted,
    generate_log,
    parity_plan,
    refused,
)
from tests.kafka_fixtures import Broker


def test_the_log_is_adversarial() -> None:
    log = generate_log(400, seed=7)
    rows = [e.row for e in log]
    assert {e.partition for e in log} == {0, 1}
    assert any(e.late for e in log) and sum(e.late for e in log) < len(log) // 5
    assert any(a["ts"] > b["ts"] and not b_late for a, b, b_late in
               zip(rows, rows[1:], [e.late for e in log[1:]], strict=False))  # out of order
    assert len({(r["user_id"], r["ts"]) for r in rows}) < len(rows)  # duplicate timestamps
    amounts = {r["amount"] for r in rows}
    assert {1e16, -1e16, 1.0, 3.0} <= amounts and None in amounts
    assert any(isinstance(a, float) and 1e9 - 10 < a < 1e9 + 10 for a in amounts)
    # event times as epoch ms, zoned ISO-8601 in several spellings, and one zoneless
    texts = [e.time_text for e in log if e.time_text is not None and e.reason is None]
    assert len(texts) > len(log) // 10
    assert {t[-1] for t in texts} >= {"Z"} and any("+02:00" in t for t in texts)
    assert any("-05:30" in t for t in texts) and any(" " in t and "+0545" in t for t in texts)
    assert all(parse_time(t, "ts") == e.row["ts"] for e in log
               if (t := e.time_text) is not None and e.reason is None)
    naive = [e for e in log if e.reason is not None]
    assert [e.reason for e in naive] == ["naive_timestamp"]
    assert refused(log) == ({("late", e.partition, e.offset) for e in log if e.late}
                            | {("naive_timestamp", naive[0].partition, naive[0].offset)})


def test_a_changed_tile_is_a_mismatch_and_the_runner_has_none() -> None:
    project, topic = unique_names()
    plan = parity_plan(project, topic)
    log = generate_log(200, seed=3)
    base = duckdb_tiles(plan, log)
    other = copy.deepcopy(base)
    tile = next(iter(other))
    other[tile]["_rows__count__n"] += 1
    result = EngineResult("tampered")
    compare_tiles(plan, base, other, accepted(log), result)
    assert len(result.mismatches) == 1 and "_rows__count__n" in result.mismatches[0]
    run = runner_tiles(plan, log, batch_records=37)
    result = EngineResult("runner")
    compare_tiles(plan, base, run.tiles, accepted(log), result)
    assert result.mismatches == [] and result.tiles == len(base) == len(run.tiles)
    assert run.batches >= -(-len(log) // 37)  # many micro-batches, ranges cut mid-partition
    assert run.late_letters == {(e.partition, e.offset) for e in log if e.late}
    naive = next(e for e in log if e.reason is not None)
    assert run.other_letters == {("naive_timestamp", naive.partition, naive.offset)}
    assert run.problems == []
    ends = {p: sum(e.partition == p for e in log) for p in range(PARTITIONS)}
    assert run.offsets == run.ends == ends


def test_runner_tiles_pruned_by_the_store_are_compared_at_their_last_write() -> None:
    report = run_parity(["duckdb", "runner"], n_events=1000, seed=1)
    duck, runner = report.results
    assert report.ok, report.render()
    assert runner.engine == "runner" and runner.tiles == duck.tiles > 100
    assert "embedded runner" in runner.note and "pruned by GC" in runner.note


def test_the_runner_leg_catches_a_store_that_loses_deltas(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = SqliteOnlineStore.merge_tiles

    def lossy(self: SqliteOnlineStore, plan: object, hop: int, table: pa.Table,
              guard: object = None, cache: object = None) -> int:
        if table.num_rows > 1:
            table = table.slice(1)  # the first tile delta of every chunk goes missing
        return real(self, plan, hop, table, guard, cache)  # type: ignore[arg-type]

    monkeypatch.setattr(SqliteOnlineStore, "merge_tiles", lossy)
    report = run_parity(["duckdb", "runner"], n_events=200, seed=3)
    assert not report.ok
    runner = report.results[1]
    assert runner.mismatches and all(m.startswith("runner: ") for m in runner.mismatches)


def test_verify_parity_command_runs_the_embedded_runner(tmp_path: Path) -> None:
    from braid.cli import flink as _flink  # noqa: F401  (registers the commands)
    from braid.cli.main import cli

    result = CliRunner().invoke(cli, ["--repo", str(tmp_path), "verify", "parity",
                                      "--engines", "duckdb,runner"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    duck = next(x for x in lines if x.strip().startswith("duckdb"))
    runner = next(x for x in lines if x.strip().startswith("runner"))
    assert "OK (embedded runner:" in runner and "14 late dead letters, 1 refused" in runner
    assert int(duck.split()[1]) == int(runner.split()[1]) == 66  # every tile, both engines
    assert "MISMATCH" not in result.output


@pytest.mark.flink
@pytest.mark.kafka
def test_verify_parity_is_green_on_every_engine(tansu: Broker, tmp_path: Path) -> None:
    pytest.importorskip("pyflink")
    from braid.cli import flink as _flink  # noqa: F401  (registers the commands)
    from braid.cli.main import cli

    result = CliRunner().invoke(cli, ["--repo", str(tmp_path), "verify", "parity",
                                      "--bootstrap", tansu.bootstrap], catch_exceptions=False)
    print(result.output)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    tiles = {}
    for engine in ("duckdb", "runner", "flink"):
        line = next(x for x in lines if x.strip().startswith(engine))
        assert line.endswith("OK") or "OK (" in line, line
        tiles[engine] = int(line.split()[1])  # tiles compared
    assert tiles["duckdb"] == tiles["runner"] == tiles["flink"] > 50
    assert "embedded runner" in result.output
    assert "MISMATCH" not in result.output
