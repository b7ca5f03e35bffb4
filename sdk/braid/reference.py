"""The Python reference of DESIGN §4: slow, loop-based, and meant to be obviously correct.

Every engine's tests compare against it (DESIGN §5). It never touches an engine: user
expressions (filter, projections, aggregation inputs) are evaluated by :func:`evaluate`, a
small interpreter over exactly the normalized sqlglot subset that :mod:`braid.expr` accepts,
with SQL three-valued logic. Choosing an interpreter over "ask DuckDB per row" keeps the
reference independent of the engines it judges.

Events are dicts of source columns; time columns (event time, created time, ``_ingested_at``)
are already int epoch milliseconds or None. Float columns may hold NaN or infinities: such a
row is dropped, like a NULL key or event time (DESIGN §4.0, §4.3).

Example:
    >>> tiles = reference_tiles(plan, [{"user_id": 1, "ts": 0, "amount": 2.5}])
    >>> reference_features(plan, events, [((1,), 60_000)])
    [{'amount': 2.5, 'amount_sum_1h': 2.5}]
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from braid.algebra import build, finalize, merge_all
from braid.dtypes import DType
from braid.plan import AggregationPlan, PartialPlan, SourcePlan, ViewPlan
from braid.timeutil import tile_start

#: Availability-time column of archived events (DESIGN §4.7).
INGESTED_AT = "_ingested_at"
#: Separator of the canonical value encoding (DESIGN §4.1).
UNIT_SEPARATOR = "\x1f"

Key = tuple[Any, ...]
TileKey = tuple[Key, int, int]  # (entity key, hop, tile_start)


class ReferenceError(Exception):
    """An expression the reference cannot evaluate (outside braid's subset, or 1 % 0)."""


@dataclass(frozen=True)
class Event:
    """One validated, filtered event with its expressions evaluated."""

    key: Key
    ts: int
    ct: int | None
    ingested_at: int | None
    projections: tuple[Any, ...]
    inputs: Mapping[str, Any]


# ------------------------------------------------------------------ events


def source_of(plan: ViewPlan) -> SourcePlan:
    """The source a backfill reads (the batch twin of a stream, else the source)."""
    return plan.batch_source or plan.source


def prepare_events(plan: ViewPlan, events: Sequence[Mapping[str, Any]]) -> list[Event]:
    """Validate (DESIGN §4.0/§4.3), filter and evaluate ``events``; order is kept."""
    source = source_of(plan)
    floats = [c for c, t in source.schema if t == DType.FLOAT64]
    out: list[Event] = []
    for row in events:
        key = tuple(row.get(k) for k in plan.key_names)
        ts = row.get(source.timestamp_field)
        if ts is None or any(k is None for k in key):
            continue
        if any(isinstance(row.get(c), float) and not math.isfinite(row[c]) for c in floats):
            continue
        if plan.filter is not None and evaluate(plan.filter.tree, row) is not True:
            continue
        ct = row.get(source.created_field) if source.created_field else None
        out.append(Event(
            key=key, ts=int(ts), ct=None if ct is None else int(ct),
            ingested_at=row.get(INGESTED_AT),
            projections=tuple(evaluate(p.expr.tree, row) for p in plan.projections),
            inputs={name: (True if typed is None else evaluate(typed.tree, row))
                    for name, typed in plan.inputs},
        ))
    return out


# ------------------------------------------------------------------ tiles


def _partial_fields(p: PartialPlan, events: Sequence[Event]) -> dict[str, Any]:
    ordered = sorted(events, key=lambda e: (e.ts, -(2**63) if e.ct is None else e.ct))
    partial = build(p.spec, [(e.ts, e.ct, e.inputs[p.input]) for e in ordered])
    values = partial if partial is not None else (None,) * len(p.columns)
    return dict(zip(p.columns, values, strict=True))


def reference_tiles(plan: ViewPlan, events: Sequence[Mapping[str, Any]]
                    ) -> dict[TileKey, dict[str, Any]]:
    """Partials per (entity key, hop, tile_start), built with :func:`braid.algebra.build`.

    A tile exists when its entity has at least one valid event in it; a partial with no
    non-null input is all NULL (the canonical empty partial of the SQL renderers).
    """
    prepared = prepare_events(plan, events)
    groups: dict[TileKey, list[Event]] = {}
    for hop in plan.hops:
        for e in prepared:
            groups.setdefault((e.key, hop, tile_start(e.ts, hop)), []).append(e)
    out: dict[TileKey, dict[str, Any]] = {}
    for (key, hop, start), evs in groups.items():
        fields: dict[str, Any] = {}
        for p in plan.partials_for_hop(hop):
            fields.update(_partial_fields(p, evs))
        out[(key, hop, start)] = fields
    return out


# ------------------------------------------------------------------ features


def canonical_encoding(plan: ViewPlan, values: Sequence[Any]) -> bytes:
    """Projection values as text (int decimal, float repr, bool 1/0, string raw, NULL empty),
    joined with U+001F in plan order, UTF-8: the last tie-break of DESIGN §4.1."""
    parts = []
    for p, v in zip(plan.projections, values, strict=True):
        if v is None:
            parts.append("")
        elif isinstance(v, bool):
            parts.append("1" if v else "0")
        elif p.dtype == DType.FLOAT64 or isinstance(v, float):
            parts.append(repr(float(v)))
        else:
            parts.append(str(v))
    return UNIT_SEPARATOR.join(parts).encode()


def latest_row(plan: ViewPlan, rows: Sequence[Event]) -> Event | None:
    """The winner of DESIGN §4.1 among ``rows``: greatest ts, created (missing lowest), then
    canonical encoding."""
    best: Event | None = None
    best_key: tuple[int, int, bytes] | None = None
    for e in rows:
        key = (e.ts, -(2**63) if e.ct is None else e.ct, canonical_encoding(plan, e.projections))
        if best_key is None or key > best_key:
            best, best_key = e, key
    return best


def window_events(a: AggregationPlan, events: Sequence[Event], key: Key, t: int,
                  as_of_known: bool = False) -> list[Event]:
    """Events of ``key`` aggregated at ``t`` (DESIGN §4.2): complete tiles
    k(t)-W/h+1 .. k(t)-1 and the events of tile k(t) with ts <= t."""
    h = a.hop
    k = tile_start(t, h) // h  # floor(t / h), with pmod arithmetic
    lo = (k - a.tiles + 1) * h
    out = []
    for e in events:
        if e.key != key or not lo <= e.ts <= t:
            continue
        if as_of_known and e.ingested_at is not None and e.ingested_at > t:
            continue
        out.append(e)
    return out


def window_values(plan: ViewPlan, events: Sequence[Mapping[str, Any]], key: Key, t: int,
                  aggregation: str, as_of_known: bool = False) -> list[Any]:
    """Non-null input values an aggregation sees at ``t`` (for the bounds of DESIGN §4.8)."""
    a = next(x for x in plan.aggregations if x.name == aggregation)
    evs = window_events(a, prepare_events(plan, events), key, t, as_of_known)
    return [e.inputs[a.partial.input] for e in evs if e.inputs[a.partial.input] is not None]


def _aggregate(a: AggregationPlan, events: Sequence[Event]) -> Any:
    p = a.partial
    tiles: dict[int, list[Event]] = {}
    for e in events:
        tiles.setdefault(tile_start(e.ts, a.hop), []).append(e)
    partials = []
    for start in sorted(tiles):
        ordered = sorted(tiles[start], key=lambda e: (e.ts, -(2**63) if e.ct is None else e.ct))
        partials.append(build(p.spec, [(e.ts, e.ct, e.inputs[p.input]) for e in ordered]))
    value = finalize(p.spec, merge_all(p.spec, partials), p.input_type)
    return a.default if value is None and a.default is not None else value


def reference_features(plan: ViewPlan, events: Sequence[Mapping[str, Any]],
                       queries: Sequence[tuple[Key, int]], as_of_known: bool = False
                       ) -> list[dict[str, Any]]:
    """Feature values at each (entity key, t) by DESIGN §4.1-4.3 and §4.7.

    Projections: the latest row with ts <= t (and created <= t with ``as_of_known``), NULL if
    none or ``ts < t - ttl``; a declared default replaces NULL. Aggregations: the window of
    :func:`window_events` (with ``as_of_known``, only events with ``_ingested_at <= t`` when the
    column exists), finalized with the empty values of §4.3 and the declared default.
    """
    prepared = prepare_events(plan, events)
    out = []
    for key, t in queries:
        key = tuple(key)
        row: dict[str, Any] = {}
        candidates = [e for e in prepared if e.key == key and e.ts <= t
                      and not (as_of_known and e.ct is not None and e.ct > t)]
        best = latest_row(plan, candidates)
        fresh = best is not None and (plan.ttl is None or best.ts >= t - plan.ttl)
        for i, p in enumerate(plan.projections):
            value = best.projections[i] if fresh and best is not None else None
            row[p.name] = p.default if value is None and p.default is not None else value
        for a in plan.aggregations:
            row[a.name] = _aggregate(a, window_events(a, prepared, key, t, as_of_known))
        out.append(row)
    return out


# ------------------------------------------------------------------ expressions


def evaluate(tree: exp.Expr, row: Mapping[str, Any]) -> Any:
    """Value of a normalized :mod:`braid.expr` tree on one row, with SQL NULL semantics."""
    method = _EVAL.get(type(tree))
    if method is None:
        raise ReferenceError(f"the reference cannot evaluate {type(tree).__name__}: {tree.sql()}")
    return method(tree, row)


def _args(node: exp.Expr, row: Mapping[str, Any]) -> tuple[Any, Any]:
    return evaluate(node.this, row), evaluate(node.expression, row)


def _literal(node: exp.Expr, row: Mapping[str, Any]) -> Any:
    assert isinstance(node, exp.Literal)
    if node.is_string:
        return node.this
    text = node.this
    return float(text) if any(c in text for c in ".eE") else int(text)


def _arith(op: str) -> Any:
    def run(node: exp.Expr, row: Mapping[str, Any]) -> Any:
        a, b = _args(node, row)
        if a is None or b is None:
            return None
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b  # the tree already casts the numerator to DOUBLE and NULLIFs b
        if b == 0:
            raise ReferenceError(f"modulo by zero in {node.sql()}")
        if isinstance(a, float) or isinstance(b, float):
            return math.fmod(a, b)
        return int(math.copysign(abs(a) % abs(b), a))  # SQL %: sign of the dividend
    return run


def _compare(op: str) -> Any:
    def run(node: exp.Expr, row: Mapping[str, Any]) -> Any:
        a, b = _args(node, row)
        if a is None or b is None:
            return None
        return {"=": a == b, "<>": a != b, ">": a > b, ">=": a >= b, "<": a < b,
                "<=": a <= b}[op]
    return run


def _and(node: exp.Expr, row: Mapping[str, Any]) -> Any:
    a, b = _args(node, row)
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(node: exp.Expr, row: Mapping[str, Any]) -> Any:
    a, b = _args(node, row)
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _not(node: exp.Expr, row: Mapping[str, Any]) -> Any:
    v = evaluate(node.this, row)
    return None if v is None else not v


def _in(node: exp.Expr, row: Mapping[str, Any]) -> Any:
    v = evaluate(node.this, row)
    items = [evaluate(i, row) for i in node.expressions]
    if v is None:
        return None
    if any(i is not None and i == v for i in items):
        return True
    return None if any(i is None for i in items) else False


def _between(node: exp.Expr, row: Mapping[str, Any]) -> Any:
    v, lo, hi = (evaluate(node.args[k], row) for k in ("this", "low", "high"))
    ge = None if v is None or lo is None else v >= lo
    le = None if v is None or hi is None else v <= hi
    if ge is False or le is False:
        return False
    return None if ge is None or le is None else True


def _like(node: exp.Expr, row: Mapping[str, Any]) -> Any:
    s, pattern = _args(node, row)
    if s is None or pattern is None:
        return None
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, s, flags=re.DOTALL) is not None


def _case(node: exp.Expr, row: Mapping[str, Any]) -> Any:
    for branch in node.args.get("ifs") or []:
        if evaluate(branch.this, row) is True:
            return evaluate(branch.args["true"], row)
    default = node.args.get("default")
    return None if default is None else evaluate(default, row)


def _coalesce(node: exp.Expr, row: Mapping[str, Any]) -> Any:
    for arg in [node.this, *node.expressions]:
        v = evaluate(arg, row)
        if v is not None:
            return v
    return None


def _nullif(node: exp.Expr, row: Mapping[str, Any]) -> Any:
    a, b = _args(node, row)
    return None if a is not None and b is not None and a == b else a


def _unary(fn: Any) -> Any:
    def run(node: exp.Expr, row: Mapping[str, Any]) -> Any:
        v = evaluate(node.this, row)
        return None if v is None else fn(v)
    return run


def _round_like(fn: Any) -> Any:
    # FLOOR/CEIL keep the input type (DOUBLE stays DOUBLE in DuckDB and Flink).
    return _unary(lambda v: float(fn(v)) if isinstance(v, float) else v)


def _cast(node: exp.Expr, row: Mapping[str, Any]) -> Any:
    assert isinstance(node, exp.Cast)
    v = evaluate(node.this, row)
    if v is None:
        return None
    target = node.to.this
    if target in (exp.DataType.Type.BIGINT, exp.DataType.Type.INT):
        return int(v)
    if target in (exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT):
        return float(v)
    if target in (exp.DataType.Type.VARCHAR, exp.DataType.Type.TEXT):
        return str(v)
    if target == exp.DataType.Type.BOOLEAN:
        return bool(v)
    raise ReferenceError(f"the reference cannot cast to {node.to.sql()}")


def _dpipe(node: exp.Expr, row: Mapping[str, Any]) -> Any:
    a, b = _args(node, row)
    return None if a is None or b is None else a + b


_EVAL: dict[type, Any] = {
    exp.Column: lambda n, row: row.get(n.name),
    exp.Literal: _literal,
    exp.Boolean: lambda n, row: bool(n.this),
    exp.Null: lambda n, row: None,
    exp.Paren: lambda n, row: evaluate(n.this, row),
    exp.Neg: _unary(lambda v: -v),
    exp.Add: _arith("+"), exp.Sub: _arith("-"), exp.Mul: _arith("*"), exp.Div: _arith("/"),
    exp.Mod: _arith("%"),
    exp.EQ: _compare("="), exp.NEQ: _compare("<>"), exp.GT: _compare(">"),
    exp.GTE: _compare(">="), exp.LT: _compare("<"), exp.LTE: _compare("<="),
    exp.And: _and, exp.Or: _or, exp.Not: _not,
    exp.Is: lambda n, row: evaluate(n.this, row) is None,
    exp.In: _in, exp.Between: _between, exp.Like: _like, exp.DPipe: _dpipe,
    exp.Case: _case, exp.Coalesce: _coalesce, exp.Nullif: _nullif, exp.Cast: _cast,
    exp.Abs: _unary(abs), exp.Floor: _round_like(math.floor), exp.Ceil: _round_like(math.ceil),
    exp.Lower: _unary(str.lower), exp.Upper: _unary(str.upper),
}
