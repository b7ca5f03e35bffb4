"""Compare tile maps and feature values under DESIGN §4.8 (:func:`braid.equality.values_equal`).

Tiles: every partial field. Counts (``n``), min, max, last (ts, created, value) compare
exactly; sums under the sum bound; the Welford mean under the mean bound; ``m2`` as
``m2 / (n - 1)`` under the var bound. Bounds use the tile's inputs from the log.

Features: at sampled ``(entity, t)`` with ``t`` the last millisecond of a tile (so
every tile in the window is complete and tiles alone determine the value; aggregations whose
hop's tile does not end at t are not compared there), each engine's
tiles are folded with the algebra (merge, finalize) and compared with the Python reference
(:func:`braid.reference.reference_features`) over the accepted events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from braid.algebra import finalize, merge_all
from braid.equality import log_stats, values_equal
from braid.plan import PartialPlan, ViewPlan
from braid.reference import reference_features
from braid.timeutil import tile_start

TileMap = dict[tuple[tuple[Any, ...], int, int], dict[str, Any]]


@dataclass
class EngineResult:
    """One engine's comparison against the baseline."""

    engine: str
    tiles: int = 0
    features: int = 0
    mismatches: list[str] = field(default_factory=list)
    note: str = ""


def _field_rule(p: PartialPlan, name: str) -> str | None:
    if name == "n" or p.spec.merge.value in ("min", "max", "latest"):
        return None
    if name == "s":
        return "sum"
    if name == "mean":
        return "mean"
    return "m2"


def _inputs(plan: ViewPlan, events: Sequence[dict[str, Any]], key: tuple[Any, ...], hop: int,
            start: int, p: PartialPlan) -> list[Any]:
    column = p.input
    return [e.get(column) for e in events
            if tuple(e[k] for k in plan.key_names) == key and tile_start(e["ts"], hop) == start
            and e.get(column) is not None]


def compare_tiles(plan: ViewPlan, base: TileMap, other: TileMap,
                  events: Sequence[dict[str, Any]], result: EngineResult) -> None:
    """Every tile of either map, every partial field."""
    for tile in sorted(set(base) | set(other), key=repr):
        if tile not in other or tile not in base:
            side = "missing" if tile not in other else "extra"
            result.mismatches.append(f"{result.engine}: tile {tile} {side}")
            continue
        result.tiles += 1
        key, hop, start = tile
        for p in plan.partials_for_hop(hop):
            xs = _inputs(plan, events, key, hop, start, p) if p.input_type else []
            n, sum_abs, mean, var = log_stats(xs) if xs and isinstance(xs[0], float) \
                else (len(xs), 0.0, 0.0, 0.0)
            for name, column in zip(p.spec.fields, p.columns, strict=True):
                a, b = base[tile].get(column), other[tile].get(column)
                rule = _field_rule(p, name)
                if rule == "m2" and a is not None and b is not None:
                    d = max(n - 1, 1)
                    ok = values_equal("var", a / d, b / d, n, sum_abs, mean, var)
                else:
                    ok = values_equal(rule, a, b, n, sum_abs, mean, var)
                if not ok:
                    result.mismatches.append(
                        f"{result.engine}: tile {tile} {column}: batch={a!r} {result.engine}={b!r}")


def _features_from_tiles(plan: ViewPlan, tiles: TileMap, key: tuple[Any, ...],
                         t: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in plan.aggregations:
        p, h = a.partial, a.hop
        k = tile_start(t, h)
        partials = []
        for i in range(a.tiles - 1, -1, -1):
            fields = tiles.get((key, h, k - i * h))
            if fields is None:
                continue
            state = tuple(fields.get(c) for c in p.columns)
            partials.append(None if all(v is None for v in state) else state)
        value = finalize(p.spec, merge_all(p.spec, partials), p.input_type)
        out[a.name] = a.default if value is None and a.default is not None else value
    return out


def sample_queries(plan: ViewPlan, tiles: TileMap, limit: int = 40) -> list[tuple[tuple[Any, ...], int]]:
    """Deterministic (entity, t) samples: last milliseconds of tiles of every hop (a hop's
    samples come first, so the largest hop's few tile ends are always included)."""
    out: list[tuple[tuple[Any, ...], int]] = []
    for hop in sorted(plan.hops, reverse=True):
        found = sorted({(key, start + hop - 1) for key, h, start in tiles if h == hop})
        step = max(1, len(found) // max(limit - len(out), 1))
        out += [q for q in found[::step] if q not in out][:max(limit - len(out), 0)]
    return out


def compare_features(plan: ViewPlan, tiles: TileMap, events: Sequence[dict[str, Any]],
                     queries: Sequence[tuple[tuple[Any, ...], int]],
                     result: EngineResult) -> None:
    """Feature values from an engine's tiles against the Python reference."""
    from braid.reference import window_values

    want = reference_features(plan, events, queries)
    for (key, t), expected in zip(queries, want, strict=True):
        got = _features_from_tiles(plan, tiles, key, t)
        for a in plan.aggregations:
            if (t + 1) % a.hop:
                continue  # the head tile is partial at t: tiles alone do not decide it
            result.features += 1
            xs = window_values(plan, events, key, t, a.name)
            floats = [x for x in xs if isinstance(x, float)]
            stats = log_stats(floats) if floats else (len(xs), 0.0, 0.0, 0.0)
            if not values_equal(a.partial.function, expected[a.name], got[a.name], *stats):
                result.mismatches.append(f"{result.engine}: {a.name} at user={key[0]} t={t}: "
                                         f"reference={expected[a.name]!r} "
                                         f"{result.engine}={got[a.name]!r}")
