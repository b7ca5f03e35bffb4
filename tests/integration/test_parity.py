"""``braid verify parity``: one adversarial log (out-of-order, late, duplicate timestamps,
cancellation, 1e9 offsets, 2 partitions) through DuckDB batch, the stream path and a bounded
Flink run against Tansu; every tile and sampled feature values agree under DESIGN §4.8."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from click.testing import CliRunner

from braid_streaming.parity.compare import EngineResult, compare_tiles
from braid_streaming.parity.engines import duckdb_tiles, stream_tiles, unique_names
from braid_streaming.parity.events import accepted, generate_log, parity_plan
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


def test_a_changed_tile_is_a_mismatch() -> None:
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
    result = EngineResult("stream")
    compare_tiles(plan, base, stream_tiles(plan, log), accepted(log), result)
    assert result.mismatches == [] and result.tiles == len(base)


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
    for engine in ("duckdb", "stream", "flink"):
        line = next(x for x in lines if x.strip().startswith(engine))
        assert line.endswith("OK") or "OK (" in line, line
        assert int(line.split()[1]) > 50  # tiles compared
    assert "MISMATCH" not in result.output
