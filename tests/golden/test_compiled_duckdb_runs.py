"""The compiled DuckDB files of the example repository run as written and produce the tiles
and rows of the Python reference (issue: "execute the DuckDB SQL in tests")."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from braid.compile.artifacts import render_artifacts
from braid.duck import connect
from braid.equality import values_equal
from braid.examples.fraud import FraudDataSpec, generate
from braid.reference import reference_tiles
from braid.repo import load_repo
from braid.timeutil import DAY
from tests.conftest import EXAMPLE_REPO

END = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    for f in EXAMPLE_REPO.glob("*.py"):
        shutil.copy(f, root / f.name)
    shutil.copy(EXAMPLE_REPO / "braid.yaml", root / "braid.yaml")
    generate(FraudDataSpec(events=3_000, days=3, end_ms=END, seed=11), root / "data")
    return root


def _events(path_glob: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for f in sorted(path_glob.parent.glob(path_glob.name)):
        table = pq.read_table(f)
        for name in table.column_names:
            if str(table.schema.field(name).type).startswith("timestamp"):
                table = table.set_column(table.column_names.index(name), name,
                                         table[name].cast("int64"))
        rows += table.to_pylist()
    return rows


def _statements(script: str) -> list[str]:
    out = []
    for chunk in script.split(";\n"):
        body = "\n".join(ln for ln in chunk.splitlines() if not ln.startswith("--")).strip()
        if body.upper().startswith("SELECT"):
            out.append(body)
    return out


def test_compiled_files_match_the_reference(example: Path) -> None:
    repo = load_repo(example)
    artifacts = render_artifacts(repo, "duckdb")
    cwd = os.getcwd()
    os.chdir(example)  # the files use paths relative to the repository root
    try:
        con = connect(threads=2)
        for view in ("user_txn_stats", "merchant_risk"):
            plan = repo.plan(view)
            src = repo.views[view].batch_source
            assert src is not None and src.path is not None
            events = _events(example / src.path)
            expected = reference_tiles(plan, events)
            got: dict[tuple[Any, ...], dict[str, Any]] = {}
            for hop, sql in zip(plan.hops, _statements(artifacts[f"duckdb/{view}.sql"]),
                                strict=True):
                table = con.sql(sql).to_arrow_table().to_pylist()
                for row in table:
                    key = tuple(row[k] for k in plan.key_names)
                    got[(key, hop, row["tile_start"])] = row
            assert set(got) == set(expected), view
            checked = 0
            for tile, fields in expected.items():
                for p in plan.partials_for_hop(tile[1]):
                    for col in p.columns:
                        a, b = got[tile][col], fields[col]
                        if isinstance(a, float) or isinstance(b, float):
                            assert a is not None and b is not None, (tile, col)
                            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6), (tile, col)
                        else:
                            assert a == b, (tile, col, a, b)
                        checked += 1
            assert checked > 1000
    finally:
        os.chdir(cwd)


def test_compiled_rows_match_latest_rows(example: Path) -> None:
    repo = load_repo(example)
    plan = repo.plan("user_profile")
    script = render_artifacts(repo, "duckdb")["duckdb/user_profile.sql"]
    cwd = os.getcwd()
    os.chdir(example)
    try:
        rows = connect().sql(_statements(script)[0]).to_arrow_table().to_pylist()
    finally:
        os.chdir(cwd)
    events = _events(example / "data/user_profiles/*.parquet")
    assert len(rows) == len(events)
    by_key = {(r["user_id"], r["_ts"]): r for r in rows}
    for e in events:
        r = by_key[(e["user_id"], e["updated_at"])]
        assert r["_ct"] == e["loaded_at"]
        assert r["is_premium"] == (e["account_tier"] == "premium")
        assert values_equal(None, r["limit_per_year_of_age"], e["credit_limit"] / e["age"]) \
            or math.isclose(r["limit_per_year_of_age"], e["credit_limit"] / e["age"])
    assert plan.ttl == 30 * DAY
