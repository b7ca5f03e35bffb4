"""The batch commands end to end: ``braid backfill`` then ``braid get-historical`` (CSV and
Parquet entity rows), and ``--require-backfill`` refusing uncovered times with a one-line
reason and a non-zero exit (DESIGN §10, §12)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from click.testing import CliRunner

import braid.cli.batch  # noqa: F401  (registers the batch commands)
from braid.cli.main import cli
from braid.repo import load_repo
from braid_batch.pit import get_historical_features
from braid_batch.testing import (
    T0,
    TRICKY_DEFS,
    TRICKY_TYPES,
    make_repo,
    tricky_events,
    write_events,
)

FEATURES = "user_tx:amount,user_tx:count_1h,pair:score"


def entity_rows(path: Path) -> pd.DataFrame:
    frame = pd.DataFrame({"user_id": [1, 2, 1], "merchant_id": ["m1", "m1", "m2"],
                          "event_timestamp": pd.to_datetime([T0 + 3000, T0 + 90_000, T0 - 5],
                                                            unit="ms", utc=True)})
    frame.to_csv(path, index=False)
    return frame


def test_backfill_then_get_historical_writes_the_point_in_time_rows(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", TRICKY_DEFS)
    write_events(root / "data" / "tx.parquet", tricky_events(n_random=40), TRICKY_TYPES)
    runner = CliRunner()
    frame = entity_rows(tmp_path / "entities.csv")
    refused = runner.invoke(cli, ["--repo", str(root), "get-historical", "--entities",
                                  str(tmp_path / "entities.csv"), "--features", FEATURES,
                                  "--out", str(tmp_path / "x.parquet"), "--require-backfill"])
    assert refused.exit_code != 0
    assert "never backfilled" in refused.output and "braid backfill --views" in refused.output
    assert not (tmp_path / "x.parquet").exists()

    done = runner.invoke(cli, ["--repo", str(root), "backfill"])
    assert done.exit_code == 0, done.output
    out = runner.invoke(cli, ["--repo", str(root), "get-historical", "--entities",
                              str(tmp_path / "entities.csv"), "--features", FEATURES,
                              "--out", str(tmp_path / "train.parquet"), "--require-backfill"])
    assert out.exit_code == 0, out.output
    got = pq.read_table(tmp_path / "train.parquet")
    want = get_historical_features(load_repo(root), frame, FEATURES.split(",")).to_arrow()
    assert got.column_names == want.column_names
    assert got.column("user_id").to_pylist() == [1, 2, 1]  # input order kept
    for name in ("amount", "count_1h", "score"):
        assert got.column(name).to_pylist() == want.column(name).to_pylist()


def test_csv_entity_times_need_a_zone_or_epoch_ms(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", TRICKY_DEFS)
    write_events(root / "data" / "tx.parquet", tricky_events(n_random=10), TRICKY_TYPES)
    runner = CliRunner()
    args = ["--repo", str(root), "get-historical", "--features", "user_tx:amount", "--out",
            str(tmp_path / "out.parquet"), "--entities"]
    (tmp_path / "naive.csv").write_text("user_id,event_timestamp\n1,2023-11-14T00:00:03Z\n"
                                        "1,2023-11-14 00:00:04\n")
    out = runner.invoke(cli, [*args, str(tmp_path / "naive.csv")])
    assert out.exit_code != 0 and "row 3" in out.output and "without a zone" in out.output
    (tmp_path / "ms.csv").write_text(f"user_id,event_timestamp\n1,{T0 + 3000}\n")
    (tmp_path / "iso.csv").write_text("user_id,event_timestamp\n1,2023-11-14T00:50:03+00:50\n")
    for name in ("ms.csv", "iso.csv"):  # the same instant, T0 + 3 s
        out = runner.invoke(cli, [*args, str(tmp_path / name)])
        assert out.exit_code == 0, out.output
        assert pq.read_table(tmp_path / "out.parquet").column("amount").to_pylist() == [2.0]
