"""The events relation every engine starts from: validated rows with ``_ts``, ``_ct``, keys,
and one column per aggregation input, after the view's filter (DESIGN §4.0, §4.3, §4.4).

Validation drops rows with a NULL key or event time, and rows with a non-finite float in any
column (``c - c = 0`` is false exactly for NaN and infinities, in DuckDB and Flink alike).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from braid.compile.algebra_sql import CT, TS, as_bigint, col, missing_created, not_null
from braid.dtypes import DType
from braid.expr import cast_type
from braid.plan import SourcePlan, ViewPlan


def epoch_ms(source: SourcePlan, column: str, timestamp_to_ms: exp.Expr | None = None) -> exp.Expr:
    """Epoch milliseconds of a time column: TIMESTAMP columns via the dialect's conversion."""
    c = col(column)
    if source.columns.get(column) == DType.TIMESTAMP:
        if timestamp_to_ms is None:
            # DuckDB: pandas writes ns timestamps (TIMESTAMPTZ_NS); cast before epoch_ms.
            return exp.Anonymous(this="epoch_ms", expressions=[
                exp.Cast(this=c, to=exp.DataType.build("TIMESTAMPTZ"))])
        return timestamp_to_ms.transform(lambda n: c.copy() if isinstance(n, exp.Placeholder) else n)
    return as_bigint(c)


def valid_condition(plan: ViewPlan, source: SourcePlan) -> exp.Expr:
    """Keys and event time present; every float column NULL or finite."""
    conds: list[exp.Expr] = [not_null(col(k)) for k in plan.key_names]
    conds.append(not_null(col(source.timestamp_field)))
    for name, dtype in source.schema:
        if dtype == DType.FLOAT64:
            c = col(name)
            finite = exp.EQ(this=exp.Sub(this=c, expression=c.copy()), expression=exp.Literal.number(0))
            conds.append(exp.Paren(this=exp.Or(this=exp.Is(this=c.copy(), expression=exp.Null()),
                                               expression=finite)))
    out = conds[0]
    for cond in conds[1:]:
        out = exp.And(this=out, expression=cond)
    return out


def event_columns(plan: ViewPlan, source: SourcePlan,
                  timestamp_to_ms: exp.Expr | None = None) -> list[exp.Expr]:
    """SELECT list of the events relation: keys, _ts, _ct, projections, aggregation inputs."""
    out: list[exp.Expr] = [col(k) for k in plan.key_names]
    out.append(exp.alias_(epoch_ms(source, source.timestamp_field, timestamp_to_ms), TS, quoted=True))
    ct = (epoch_ms(source, source.created_field, timestamp_to_ms)
          if source.created_field else missing_created())
    if source.created_field:
        ct = exp.Coalesce(this=ct, expressions=[missing_created()])
    out.append(exp.alias_(ct, CT, quoted=True))
    for p in plan.projections:
        out.append(exp.alias_(p.expr.tree.copy(), f"p__{p.name}", quoted=True))
    for name, typed in plan.inputs:
        if typed is not None:
            # Inputs carry braid's declared type: a literal like 1 is INT in Flink, whose
            # SUM(INT) stays 32-bit (STACK.md).
            tree = typed.tree.copy()
            if typed.dtype in (DType.INT64, DType.FLOAT64) and not isinstance(tree, exp.Column):
                tree = exp.Cast(this=tree, to=cast_type(typed.dtype))
            out.append(exp.alias_(tree, name, quoted=True))
    return out


def events_select(plan: ViewPlan, source: SourcePlan, relation: exp.Expr,
                  extra_where: exp.Expr | None = None,
                  timestamp_to_ms: exp.Expr | None = None,
                  extra_columns: Sequence[exp.Expr] = ()) -> exp.Select:
    """``SELECT <event columns> [, extra] FROM relation WHERE valid AND filter [AND extra]``."""
    where = valid_condition(plan, source)
    if plan.filter is not None:
        where = exp.And(this=where, expression=exp.Paren(this=plan.filter.tree.copy()))
    if extra_where is not None:
        where = exp.And(this=where, expression=extra_where)
    columns = [*event_columns(plan, source, timestamp_to_ms), *(c.copy() for c in extra_columns)]
    return exp.select(*columns).from_(relation).where(where)
