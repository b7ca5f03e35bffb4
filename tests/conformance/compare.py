"""Comparison helpers of the conformance suite: feature rows and tiles under DESIGN §4.8."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from braid.algebra import AggFunction, Merge
from braid.dtypes import DType
from braid.equality import log_stats, values_equal
from braid.plan import PartialPlan, ViewPlan
from braid.reference import Key, TileKey, prepare_events, window_events
from braid.timeutil import tile_start


def feature_function(plan: ViewPlan, name: str) -> AggFunction | None:
    """The aggregation function of feature ``name``; None for a projection (exact)."""
    for a in plan.aggregations:
        if a.name == name:
            return a.partial.function
    return None


def _check_int_type(plan: ViewPlan, name: str, value: Any, where: str) -> None:
    dtype = next((a.dtype for a in plan.aggregations if a.name == name), None)
    if dtype == DType.INT64 and value is not None:
        assert type(value) is int, f"{where}: {name} should be an int64, got {value!r}"


def assert_features_equal(plan: ViewPlan, events: Sequence[Mapping[str, Any]],
                          queries: Sequence[tuple[Key, int]], got: Sequence[Mapping[str, Any]],
                          expected: Sequence[Mapping[str, Any]], as_of_known: bool = False,
                          label: str = "") -> None:
    """Every feature of every query equal under §4.8, with bounds from the window's log."""
    assert len(got) == len(expected) == len(queries), label
    prepared = prepare_events(plan, events)
    aggs = {a.name: a for a in plan.aggregations}
    for (key, t), g, e in zip(queries, got, expected, strict=True):
        assert set(g) == set(e) == set(plan.feature_names), (label, key, t, g, e)
        for name in plan.feature_names:
            where = f"{label} key={key} t={t}"
            _check_int_type(plan, name, g[name], where)
            function = feature_function(plan, name)
            stats = (0, 0.0, 0.0, 0.0)
            if name in aggs:
                a = aggs[name]
                window = window_events(a, prepared, tuple(key), t, as_of_known)
                stats = log_stats([x.inputs[a.partial.input] for x in window])
            assert values_equal(function, g[name], e[name], *stats), (
                f"{where} {name}: got {g[name]!r}, expected {e[name]!r} (log stats {stats})"
            )


def _field_equal(p: PartialPlan, index: int, a: Any, b: Any, values: list[Any],
                 n: int) -> bool:
    dtype = p.field_types[index]
    if dtype != DType.FLOAT64 or p.spec.merge in (Merge.MIN, Merge.MAX, Merge.LATEST):
        return values_equal(None, a, b)
    stats = log_stats(values)
    field = p.spec.fields[index]
    if p.spec.merge == Merge.SUM:
        return values_equal(AggFunction.SUM, a, b, *stats)
    if field == "mean":
        return values_equal(AggFunction.MEAN, a, b, *stats)
    if a is None or b is None:
        return a is None and b is None
    scale = max(n - 1, 1)  # m2 compares as a variance
    return values_equal(AggFunction.VAR, a / scale, b / scale, *stats)


def assert_tiles_equal(plan: ViewPlan, events: Sequence[Mapping[str, Any]],
                       got: Mapping[TileKey, Mapping[str, Any]],
                       expected: Mapping[TileKey, Mapping[str, Any]], label: str = "") -> None:
    """Same tiles, and every partial field equal (ints exact, floats under §4.8)."""
    assert sorted(got, key=repr) == sorted(expected, key=repr), label
    prepared = prepare_events(plan, events)
    for (key, hop, start), fields in expected.items():
        tile = [e for e in prepared if e.key == key and tile_start(e.ts, hop) == start]
        for p in plan.partials_for_hop(hop):
            values = [e.inputs[p.input] for e in tile if e.inputs[p.input] is not None]
            for i, column in enumerate(p.columns):
                a, b = got[(key, hop, start)][column], fields[column]
                assert _field_equal(p, i, a, b, values, len(values)), (
                    f"{label} tile {key} {hop} {start} {column}: got {a!r}, expected {b!r}"
                )
