"""The compiled DuckDB SQL on two threads stays within DESIGN §4.8 of the Python reference.

DuckDB's multi-threaded ``sum(double)`` varies from run to run (STACK.md), which is why §4.8
never compares floats exactly; small Parquet row groups make the scan and the aggregation
actually parallel.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from braid.reference import reference_features, reference_tiles
from tests.conformance.compare import assert_features_equal, assert_tiles_equal
from tests.conformance.duck_engine import DuckRun
from tests.conformance.test_algebra_property import FLOAT_PLAN

N_EVENTS = 8_000


def adversarial_events(seed: int) -> list[dict[str, Any]]:
    """1e9 + N(0, 1) values, [1e16, 1, -1e16, 3] runs, NULLs, duplicate and pre-epoch times."""
    rng = random.Random(seed)
    out = []
    for i in range(N_EVENTS):
        kind = rng.random()
        if kind < 0.5:
            v: float | None = 1e9 + rng.gauss(0.0, 1.0)
        elif kind < 0.9:
            v = [1e16, 1.0, -1e16, 3.0][i % 4]
        else:
            v = None
        out.append({"user_id": rng.choice([1, 2]), "ts": rng.randrange(-600_000, 900_000, 7),
                    "created": rng.choice([None, 1, 2]), "v": v})
    return out


def test_two_threads_within_bounds(tmp_path: Path) -> None:
    events = adversarial_events(20261122)
    queries = [((k,), t) for k in (1, 2) for t in (-300_001, -1, 299_999, 600_000, 899_999)]
    expected = reference_features(FLOAT_PLAN, events, queries)
    ref_tiles = reference_tiles(FLOAT_PLAN, events)
    for attempt in range(2):
        workdir = tmp_path / str(attempt)
        workdir.mkdir()
        run = DuckRun(FLOAT_PLAN, events, workdir, threads=2, row_group_size=500)
        try:
            assert run.con.execute("SELECT current_setting('threads')").fetchall() == [(2,)]
            got = run.features(queries)
            tiles = run.tiles()
        finally:
            run.close()
        assert_features_equal(FLOAT_PLAN, events, queries, got, expected,
                              label=f"threads=2 run {attempt}")
        assert_tiles_equal(FLOAT_PLAN, events, tiles, ref_tiles, f"threads=2 run {attempt}")
