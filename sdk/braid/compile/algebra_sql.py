"""SQL renderings of the algebra table (DESIGN §5): build, merge and finalize as sqlglot trees.

Everything here reads :data:`braid.algebra.ALGEBRA`; the five merge kinds are implemented once.
Canonical empty partial: every field NULL (a count of 0 is rendered NULL so that "no input"
has one encoding in every engine).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from braid.algebra import MISSING_CREATED, AggFunction, Finalize, Merge, Spec
from braid.compile.dialect import Dialect
from braid.dtypes import DType
from braid.expr import cast_type
from braid.plan import AggregationPlan, PartialPlan

TS = "_ts"
CT = "_ct"


def col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def lit(value: int | float) -> exp.Expr:
    if value < 0:
        return exp.Neg(this=exp.Literal.number(-value))
    return exp.Literal.number(value)


def as_double(e: exp.Expr) -> exp.Expr:
    return exp.Cast(this=e, to=cast_type(DType.FLOAT64))


def as_bigint(e: exp.Expr) -> exp.Expr:
    return exp.Cast(this=e, to=cast_type(DType.INT64))


def nonzero(e: exp.Expr) -> exp.Expr:
    return exp.Nullif(this=e, expression=exp.Literal.number(0))


def not_null(e: exp.Expr) -> exp.Expr:
    return exp.Not(this=exp.Is(this=e.copy(), expression=exp.Null()))


def _filtered(agg: exp.Expr, cond: exp.Expr | None) -> exp.Expr:
    if cond is None:
        return agg
    return exp.Filter(this=agg, expression=exp.Where(this=cond))


def int_sum(d: Dialect, e: exp.Expr) -> exp.Expr:
    """The exact int64 sum of BIGINT ``e`` (DESIGN §4.3: overflow is an error, not a wrap)."""
    if d.exact_int_sum:
        return as_bigint(exp.Sum(this=e))
    assert d.int_sum_udaf, f"{d.name}: needs an exact integer SUM or a UDAF"
    return exp.Anonymous(this=d.int_sum_udaf, expressions=[e])


def _latest(d: Dialect, fields: Sequence[exp.Expr], guard: exp.Expr) -> list[exp.Expr]:
    """The (ts, ct, v) fields of the greatest triple, as three expressions."""
    if not d.struct_max:
        assert d.latest_udaf, f"{d.name}: needs struct_max or a latest UDAF"
        call = exp.Anonymous(this=d.latest_udaf, expressions=[f.copy() for f in fields])
        return [exp.Dot(this=exp.Paren(this=call.copy()), expression=exp.to_identifier(n))
                for n in ("ts", "ct", "v")]
    struct = exp.Struct(expressions=[
        exp.PropertyEQ(this=exp.to_identifier(n), expression=f.copy())
        for n, f in zip(("ts", "ct", "v"), fields, strict=True)
    ])
    best = _filtered(exp.Max(this=struct), guard)
    return [exp.Dot(this=exp.Paren(this=best.copy()), expression=exp.to_identifier(n))
            for n in ("ts", "ct", "v")]


def build(p: PartialPlan, d: Dialect) -> list[exp.Expr]:
    """Aggregate expressions computing ``p``'s fields from the events of one tile.

    The events relation has the input as column ``p.input`` (absent for ``count()``), the
    event time as ``_ts`` and the created time as ``_ct`` (missing = the lowest int64).
    """
    spec: Spec = p.spec
    f = spec.function
    if f == AggFunction.COUNT and p.input_type is None:
        return [nonzero(exp.Count(this=exp.Star()))]
    x = col(p.input)
    if f == AggFunction.COUNT:
        return [nonzero(exp.Count(this=x))]
    if f == AggFunction.SUM:
        return [int_sum(d, x) if p.input_type == DType.INT64 else as_double(exp.Sum(this=x))]
    if f == AggFunction.MEAN:
        return [exp.Sum(this=as_double(x)), nonzero(exp.Count(this=x))]
    if spec.merge == Merge.MIN:
        return [exp.Min(this=x)]
    if spec.merge == Merge.MAX:
        return [exp.Max(this=x)]
    if spec.merge == Merge.LATEST:
        return _latest(d, [col(TS), col(CT), x], not_null(x))
    if spec.merge == Merge.CHAN:
        if not d.welford_var_pop:
            assert d.welford_udaf, f"{d.name}: needs a Welford VAR_POP or a UDAF"
            call = exp.Anonymous(this=d.welford_udaf, expressions=[as_double(x)])
            return [exp.Dot(this=exp.Paren(this=call.copy()), expression=exp.to_identifier(n))
                    for n in ("n", "mean", "m2")]
        n = exp.Count(this=x)
        return [
            nonzero(n),
            exp.Avg(this=as_double(x)),
            # DuckDB's VAR_POP is Welford's algorithm; times n gives its m2 back.
            exp.Mul(this=exp.VariancePop(this=as_double(x)), expression=n.copy()),
        ]
    raise AssertionError(f"unhandled function {f}")


def chan_group_mean(p: PartialPlan, partition_by: Sequence[exp.Expr]) -> exp.Expr:
    """Window expression of the merged mean of a CHAN partial within each group.

    The CHAN merge needs the group's mean before it can sum deviations (a sum of squares
    would cancel catastrophically on data like 1e9 + N(0, 1)).
    """
    window = {"partition_by": [e.copy() for e in partition_by]}
    num, den = _chan_mean_sums(p)
    return exp.Div(this=exp.Window(this=num, **window),
                   expression=nonzero(exp.Window(this=den, **window)))


def chan_grouped_mean(p: PartialPlan) -> exp.Expr:
    """:func:`chan_group_mean` as an aggregate of a GROUP BY (hashing the groups, where the
    window sorts them: the tile-close query joins these means back to its rows)."""
    num, den = _chan_mean_sums(p)
    return exp.Div(this=num, expression=nonzero(den))


def _chan_mean_sums(p: PartialPlan) -> tuple[exp.Expr, exp.Expr]:
    n, mean, _ = (col(c) for c in p.columns)
    return exp.Sum(this=exp.Mul(this=n.copy(), expression=mean)), exp.Sum(this=n)


def merge(p: PartialPlan, d: Dialect, group_mean: exp.Expr | None = None,
          columns: Sequence[str] | None = None) -> list[exp.Expr]:
    """Aggregate expressions merging many partials (one row each) into one.

    Args:
        p: the partial.
        d: the dialect.
        group_mean: for CHAN partials, a column holding :func:`chan_group_mean` per row.
        columns: the partial's field columns if not named ``p.columns``.
    """
    cols = [col(c) for c in (columns or p.columns)]
    kind = p.spec.merge
    if kind == Merge.SUM:
        out: list[exp.Expr] = []
        for c, t in zip(cols, p.field_types, strict=True):
            out.append(int_sum(d, c) if t == DType.INT64 else as_double(exp.Sum(this=c)))
        return out
    if kind == Merge.MIN:
        return [exp.Min(this=cols[0])]
    if kind == Merge.MAX:
        return [exp.Max(this=cols[0])]
    if kind == Merge.LATEST:
        return _latest(d, cols, not_null(cols[0]))
    assert group_mean is not None, "a CHAN merge needs the group mean (chan_group_mean)"
    n, mean, m2 = cols
    # Parenthesized: sqlglot renders a built tree as is, so Mul(Sub, Sub) would print
    # `n * mean - gm * mean - gm` (found by the conformance suite).
    dev = exp.Paren(this=exp.Sub(this=mean, expression=group_mean))
    spread = exp.Mul(this=as_double(n.copy()), expression=exp.Mul(this=dev, expression=dev.copy()))
    return [
        int_sum(d, n.copy()),
        exp.Div(this=exp.Sum(this=exp.Mul(this=as_double(n.copy()), expression=mean.copy())),
                expression=nonzero(exp.Sum(this=n.copy()))),
        exp.Sum(this=exp.Add(this=m2, expression=spread)),
    ]


def finalize(a: AggregationPlan | PartialPlan, fields: Sequence[exp.Expr],
             population: bool = False) -> exp.Expr:
    """The feature value from merged fields, with the empty value of DESIGN §4.3 and the
    aggregation's declared default."""
    p = a.partial if isinstance(a, AggregationPlan) else a
    spec = p.spec
    kind = spec.finalize
    value: exp.Expr
    if kind == Finalize.FIRST:
        value = fields[0].copy()
    elif kind == Finalize.VALUE:
        value = fields[-1].copy()
    elif kind == Finalize.RATIO:
        s, n = fields
        value = exp.Div(this=as_double(s.copy()), expression=nonzero(n.copy()))
    else:
        n, _, m2 = fields
        dof = n.copy() if population else exp.Sub(this=n.copy(), expression=lit(1))
        need = lit(1 if population else 2)
        clipped = exp.Case(ifs=[exp.If(this=exp.GT(this=m2.copy(), expression=lit(0)),
                                       true=m2.copy())], default=exp.Literal.number(0))
        ratio = exp.Div(this=as_double(clipped if kind == Finalize.STDDEV else m2.copy()),
                        expression=as_double(dof))
        body = exp.Sqrt(this=ratio) if kind == Finalize.STDDEV else ratio
        value = exp.Case(ifs=[exp.If(this=exp.GTE(this=n.copy(), expression=need), true=body)])
    empty = spec.empty_value(p.input_type)
    default = a.default if isinstance(a, AggregationPlan) else None
    fallback = default if default is not None else empty
    if fallback is not None:
        value = exp.Coalesce(this=value, expressions=[_literal(fallback)])
    return value


def _literal(value: object) -> exp.Expr:
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int):
        return lit(value)
    if isinstance(value, float):
        return lit(value) if value >= 0 else exp.Neg(this=exp.Literal.number(repr(-value)))
    return exp.Literal.string(str(value))


def missing_created() -> exp.Expr:
    """The stand-in for a missing created time (lowest int64), written as ``-(2^63-1) - 1`` so
    that no engine has to parse an out-of-range positive literal."""
    return exp.Paren(this=exp.Sub(this=lit(MISSING_CREATED + 1), expression=lit(1)))
