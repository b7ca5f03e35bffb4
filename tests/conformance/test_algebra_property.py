"""Property tests of the algebra (DESIGN §5): every function through the DuckDB renderer
(tiles built by the compiled SQL, merged by ``algebra_sql.merge``) against the Python
reference, on adversarial data, under DESIGN §4.8; and the Python merge is associative and
commutative."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braid.algebra import ALGEBRA, AggFunction, build, finalize, merge, merge_all
from braid.dtypes import DType
from braid.equality import log_stats, values_equal
from braid.plan import ViewPlan
from braid.reference import reference_features, reference_tiles
from tests.conformance.compare import assert_features_equal, assert_tiles_equal
from tests.conformance.duck_engine import DuckRun
from tests.golden.time_cases import decode_case

H = 300_000
BOUNDARY_TIMES = [-600_001, -600_000, -300_001, -300_000, -1, 0, 1, 299_999, 300_000,
                  599_999, 600_000, 900_000]
CANCELLATION = [1e16, 1.0, -1e16, 3.0]

times = st.one_of(st.sampled_from(BOUNDARY_TIMES), st.integers(-900_000, 900_000))
created = st.one_of(st.none(), st.sampled_from([0, 7, 5_000]))
float_values = st.one_of(
    st.sampled_from(CANCELLATION),
    st.floats(-3, 3, allow_nan=False).map(lambda x: 1e9 + x),  # 1e9 offset + O(1) noise
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)
int_values = st.one_of(st.sampled_from([2**53 + 1, -(2**53), 1, -1, 0]),
                       st.integers(-(2**56), 2**56))
SETTINGS = settings(max_examples=18, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def all_functions_plan(value_type: str) -> ViewPlan:
    """A view with every aggregation function over ``v`` (10m window, 5m hop) plus count()."""
    functions = [f.value for f in AggFunction]
    raw: dict[str, Any] = {
        "name": f"all_functions_{value_type}", "description": "property test view",
        "view": {
            "entities": [{"name": "user", "join_keys": {"user_id": "int64"}}],
            "source": {"timestamp_field": "ts", "created_timestamp_field": "created",
                       "schema": {"user_id": "int64", "ts": "timestamp",
                                  "created": "timestamp", "v": value_type}},
            "features": [{"name": "v", "dtype": value_type}],
            "aggregations": [{"column": "v", "function": f, "window": "10m", "hop": "5m"}
                             for f in functions]
            + [{"function": "count", "window": "10m", "hop": "5m"}],
        },
        "events": [], "queries": [], "expected": [],
    }
    return decode_case(raw).plan()


FLOAT_PLAN = all_functions_plan("float64")
INT_PLAN = all_functions_plan("int64")


def event_lists(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[dict[str, Any]]]:
    row = st.fixed_dictionaries({
        "user_id": st.sampled_from([1, 2]), "ts": times, "created": created,
        "v": st.one_of(st.none(), values),
    })
    return st.lists(row, min_size=0, max_size=24)


def with_duplicates(events: list[dict[str, Any]], dup: int) -> list[dict[str, Any]]:
    """Copies of one event with the same ts (and created), other values: ties on purpose."""
    if not events or dup == 0:
        return events
    base = events[0]
    extra = [{**base, "v": CANCELLATION[i % 4] if isinstance(base["v"], float) else i}
             for i in range(dup)]
    return events + extra


def queries_for(events: list[dict[str, Any]]) -> list[tuple[tuple[int], int]]:
    """Each key at a few event times (exactly at t) and at two tile boundaries."""
    ts = sorted({e["ts"] for e in events})
    picked = ts[:1] + ts[len(ts) // 2:len(ts) // 2 + 1] + ts[-1:]
    return [((k,), t) for k in (1, 2) for t in sorted({*picked, -1, 300_000})]


def check_duckdb_against_reference(plan: ViewPlan, events: list[dict[str, Any]]) -> None:
    queries = queries_for(events)
    expected = reference_features(plan, events, queries)
    with tempfile.TemporaryDirectory() as tmp:
        run = DuckRun(plan, events, Path(tmp))
        try:
            got = run.features(queries)
            tiles = run.tiles()
        finally:
            run.close()
    assert_features_equal(plan, events, queries, got, expected, label="duckdb vs reference")
    assert_tiles_equal(plan, events, tiles, reference_tiles(plan, events), "tiles")


@SETTINGS
@given(events=event_lists(float_values), dup=st.integers(0, 3))
def test_float_functions_duckdb_match_reference(events: list[dict[str, Any]], dup: int) -> None:
    check_duckdb_against_reference(FLOAT_PLAN, with_duplicates(events, dup))


@SETTINGS
@given(events=event_lists(int_values), dup=st.integers(0, 3))
def test_int_functions_duckdb_match_reference(events: list[dict[str, Any]], dup: int) -> None:
    """Integer sums are exact int64 (compare_features checks the type and the value)."""
    check_duckdb_against_reference(INT_PLAN, with_duplicates(events, dup))


@settings(max_examples=8, deadline=None)
@given(reps=st.integers(1, 50), ts=st.sampled_from([-1, 0, 299_999]))
def test_cancellation_pattern_duckdb(reps: int, ts: int) -> None:
    """[1e16, 1, -1e16, 3] x reps in one tile and across tiles: the exact sum is 4*reps."""
    events = [{"user_id": 1, "ts": ts + (i % 2) * H, "created": None, "v": CANCELLATION[i % 4]}
              for i in range(4 * reps)]
    check_duckdb_against_reference(FLOAT_PLAN, events)


# ---------------------------------------------------------------- Python merge laws


@settings(max_examples=60, deadline=None)
@given(
    function=st.sampled_from(list(AggFunction)),
    values=st.lists(st.one_of(st.none(), float_values), min_size=1, max_size=30),
    seed=st.integers(0, 2**32 - 1),
    parts=st.integers(1, 6),
)
def test_python_merge_associative_commutative_floats(
        function: AggFunction, values: list[Any], seed: int, parts: int) -> None:
    check_merge_laws(function, values, seed, parts, DType.FLOAT64)


@settings(max_examples=60, deadline=None)
@given(
    function=st.sampled_from(list(AggFunction)),
    values=st.lists(st.one_of(st.none(), int_values), min_size=1, max_size=30),
    seed=st.integers(0, 2**32 - 1),
    parts=st.integers(1, 6),
)
def test_python_merge_associative_commutative_ints(
        function: AggFunction, values: list[Any], seed: int, parts: int) -> None:
    check_merge_laws(function, values, seed, parts, DType.INT64)


def check_merge_laws(function: AggFunction, values: list[Any], seed: int, parts: int,
                     dtype: DType) -> None:
    """Random splits merged left-to-right, right-to-left and shuffled all finalize alike
    (exact for ints, counts, min, max, last; DESIGN §4.8 for float sums and moments)."""
    spec = ALGEBRA[function]
    rng = random.Random(seed)
    # (ts, created, v): duplicate timestamps and created times on purpose
    events = [(rng.choice([-1, 0, 1]), rng.choice([None, 0, 5]), v) for v in values]
    cuts = sorted(rng.sample(range(1, len(events)), min(parts - 1, len(events) - 1)))
    chunks = [events[i:j] for i, j in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    partials = [build(spec, c) for c in chunks]
    whole = finalize(spec, build(spec, events), dtype)
    left = finalize(spec, merge_all(spec, partials), dtype)
    right_fold = None
    for p in reversed(partials):
        right_fold = merge(spec, p, right_fold)
    right = finalize(spec, right_fold, dtype)
    shuffled = partials[:]
    rng.shuffle(shuffled)
    mixed = finalize(spec, merge_all(spec, shuffled), dtype)
    stats = log_stats(values)
    for other in (left, right, mixed):
        assert values_equal(function, whole, other, *stats), (function, whole, other, stats)
        if dtype == DType.INT64 and function in (AggFunction.SUM, AggFunction.COUNT):
            assert whole == other and type(whole) is type(other)
