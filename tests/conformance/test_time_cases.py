"""The golden time vectors (tests/golden/time_cases.json) through the Python reference and
through the compiled DuckDB SQL (DESIGN §4, §5), compared under DESIGN §4.8."""

from __future__ import annotations

from pathlib import Path

import pytest

from braid.reference import reference_features, reference_tiles
from tests.conformance.compare import assert_features_equal, assert_tiles_equal
from tests.conformance.duck_engine import DuckRun
from tests.golden.time_cases import TimeCase, load_cases

CASES = load_cases()
REQUIRED = {
    "tile_boundaries", "effective_window_length", "pre_epoch", "duplicate_timestamps",
    "ttl_boundaries", "null_values", "empty_windows", "validation_and_filter", "int_sum_exact",
    "as_of_known", "default_hop", "composite_key", "cancellation", "large_offset_variance",
}


def test_golden_file_is_complete() -> None:
    """Every required case is present, names are unique, and each expected row lists exactly
    the view's features, one row per query."""
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert REQUIRED <= set(names), REQUIRED - set(names)
    for case in CASES:
        plan = case.plan()
        assert len(case.expected) == len(case.queries) > 0, case.name
        for row in case.expected:
            assert set(row) == set(plan.feature_names), case.name
        assert case.description.strip(), case.name


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_reference(case: TimeCase) -> None:
    plan = case.plan()
    got = reference_features(plan, case.events, case.queries, case.as_of_known)
    assert_features_equal(plan, case.events, case.queries, got, case.expected,
                          case.as_of_known, f"reference/{case.name}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_duckdb(case: TimeCase, tmp_path: Path) -> None:
    plan = case.plan()
    run = DuckRun(plan, case.events, tmp_path)
    try:
        got = run.features(case.queries, case.as_of_known)
        tiles = run.tiles()
    finally:
        run.close()
    assert_features_equal(plan, case.events, case.queries, got, case.expected,
                          case.as_of_known, f"duckdb/{case.name}")
    assert_tiles_equal(plan, case.events, tiles, reference_tiles(plan, case.events),
                       f"duckdb/{case.name}")


def test_pre_epoch_tiles_use_positive_modulo() -> None:
    """ts=-1 lies in the tile starting at -h, never in tile 0 (truncating % would say 0)."""
    case = next(c for c in CASES if c.name == "pre_epoch")
    plan = case.plan()
    starts = sorted({start for (_, _, start) in reference_tiles(plan, case.events)})
    assert starts == [-600_000, -300_000]


def test_duplicate_timestamps_projection_differs_from_last() -> None:
    """The projection tie-break is bytewise on the encoding, last's is numeric: 9.0 vs 10.0."""
    case = next(c for c in CASES if c.name == "duplicate_timestamps")
    got = reference_features(case.plan(), case.events, [((2,), 2000)])[0]
    assert (got["v"], got["label"], got["v_last_10m"]) == (9.0, "x", 10.0)
