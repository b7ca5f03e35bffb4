"""The CLI: ``braid push --json``, ``braid stream run --once``, SIGTERM finishes the batch in
flight and commits, ``braid handoff`` refuses without a backfill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import braid.cli.streaming  # noqa: F401  (registers the commands)
from braid.cli.main import cli
from braid.store import FeatureStore
from tests.integration.test_runner_repo import base_time, events, make_stream_repo


def test_push_then_run_once(tmp_path: Path) -> None:
    root = make_stream_repo(tmp_path / "repo")
    t0 = base_time()
    rows = [{"user_id": 1, "merchant_id": 100, "amount": 2.5, "ts": t0 + i} for i in range(5)]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    cli_runner = CliRunner()
    out = cli_runner.invoke(cli, ["--repo", str(root), "push", "txns", "--json",
                                  str(tmp_path / "rows.json")])
    assert out.exit_code == 0, out.output
    assert "pushed 5 records" in out.output
    out = cli_runner.invoke(cli, ["--repo", str(root), "stream", "run", "--once",
                                  "--max-wait-ms", "20"])
    assert out.exit_code == 0, out.output
    assert "processed 5 records" in out.output
    res = FeatureStore(root).get_online_features([{"user_id": 1}], ["user_txn:count_1h"],
                                                 now=t0 + 10)
    assert res.to_dict()["count_1h"] == [5]
    bad = cli_runner.invoke(cli, ["--repo", str(root), "push", "txns", "--json", "-"],
                            input='[{"user_id": "x", "ts": 0}]')
    assert bad.exit_code == 1 and "nothing was pushed" in bad.output
    refused = cli_runner.invoke(cli, ["--repo", str(root), "handoff", "--view", "user_txn"])
    assert refused.exit_code == 1 and "braid backfill" in refused.output


def test_sigterm_commits_the_batch_in_flight(tmp_path: Path) -> None:
    root = make_stream_repo(tmp_path / "repo")
    evs = events(base_time(), n=3000)
    FeatureStore(root).push("txns", evs)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from braid.cli.main import main; main()", "--repo", str(root),
         "stream", "run", "--max-batch", "200", "--max-wait-ms", "50", "--status-every", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "ev/s" in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "finishing the current batch" in err
    processed = int(out.split("processed ")[1].split(" ")[0].replace(",", ""))
    fs = FeatureStore(root)
    import sqlite3

    con = sqlite3.connect(fs.config.resolve("data/online.db"))
    (doc,) = con.execute("SELECT value FROM braid_runner_meta").fetchone()
    con.close()
    state = json.loads(doc)
    assert state["intent"] is None  # committed, nothing half-applied
    assert sum(state["offsets"].values()) == processed
