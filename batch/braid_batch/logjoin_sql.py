"""SQL of the log-and-wait batch join (DESIGN §8), built as sqlglot trees for DuckDB.

Three set-based statements, all integer epoch-ms arithmetic:

1. ``requests``: the logged rows (de-duplicated by ``(request_id, row)``, first offset wins:
   delivery is at least once) plus any backfilled rows, keeping those with
   ``served_at + maturity <= C`` (and ``start <= served_at < end``); ``__rid`` numbers them.
2. ``labels``: the label source with ``__ts`` (its time) and ``__ing`` (ingestion time:
   ``_ingested_at`` if the source has it, else ``__ts``), keeping ``__ing <= C``.
3. the join: per request, the labels with equal join keys and
   ``served_at <= __ts <= served_at + maturity``; ``row_number`` over
   ``(__ts, __ing, label fields)`` ascending (``first``) or descending (``last``) picks one;
   requests without one get the default label or are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from braid.compile.dialect import DUCKDB

RID = "__rid"
LTS = "__ts"
LING = "__ing"
RN = "__rn"
REQUESTS = "__braid_requests"
LABELS = "__braid_labels"


def q(name: str, table: str | None = None) -> exp.Column:
    """A quoted column reference."""
    return exp.column(name, table=table, quoted=True)


def _and(conds: Sequence[exp.Expression]) -> exp.Expression:
    out = conds[0]
    for c in conds[1:]:
        out = exp.And(this=out, expression=c)
    return out


def num(v: int) -> exp.Expression:
    return exp.Literal.number(v) if v >= 0 else exp.Neg(this=exp.Literal.number(-v))


def epoch(e: exp.Expression, is_timestamp: bool) -> exp.Expression:
    """epoch ms of a TIMESTAMP column, or the column cast to BIGINT if it holds ms already."""
    if is_timestamp:
        return exp.Anonymous(this="epoch_ms", expressions=[e])
    return exp.Cast(this=e, to=exp.DataType.build("BIGINT"))


def requests_sql(relation: exp.Expression, keys: Sequence[str], features: Sequence[str],
                 maturity: int, cutoff: int, start: int | None, end: int | None,
                 origin: str, dedupe: bool) -> str:
    """Logged (or backfilled) requests mature at ``cutoff``, one row per (request, row).

    ``relation`` has request_id, row, served_at (epoch ms BIGINT), service_version, keys and
    features (and, for logs, ``_partition``/``_offset``).
    """
    served = q("served_at")
    conds: list[exp.Expression] = [
        exp.LTE(this=exp.Add(this=served, expression=num(maturity)), expression=num(cutoff))]
    if start is not None:
        conds.append(exp.GTE(this=served, expression=num(start)))
    if end is not None:
        conds.append(exp.LT(this=served, expression=num(end)))
    cols = [q("request_id"), q("row"), served, q("service_version"),
            *[q(k) for k in keys], *[q(f) for f in features],
            exp.alias_(exp.Literal.string(origin), "origin", quoted=True)]
    sel = exp.select(*cols).from_(relation).where(_and(conds))
    if dedupe:
        first = exp.Window(
            this=exp.RowNumber(),
            partition_by=[q("request_id"), q("row")],
            order=exp.Order(expressions=[exp.Ordered(this=q("_partition")),
                                         exp.Ordered(this=q("_offset"))]))
        sel = sel.qualify(exp.EQ(this=first, expression=num(1)))
    return DUCKDB.render(sel)


def labels_sql(relation: exp.Expression, join_on: Sequence[str], fields: Sequence[str],
               ts_field: str, ts_is_timestamp: bool, ingested: str | None,
               ingested_is_timestamp: bool, cutoff: int) -> str:
    """Labels known (ingested) at ``cutoff``, with ``__ts`` and ``__ing`` in epoch ms."""
    ts = epoch(q(ts_field), ts_is_timestamp)
    ing = ts if ingested is None else exp.Coalesce(
        this=epoch(q(ingested), ingested_is_timestamp), expressions=[ts])
    cols = [*[q(k) for k in join_on], *[q(f) for f in fields],
            exp.alias_(ts, LTS, quoted=True), exp.alias_(ing.copy(), LING, quoted=True)]
    sel = exp.select(*cols).from_(relation).where(
        _and([exp.Not(this=exp.Is(this=ts.copy(), expression=exp.Null())),
              exp.LTE(this=ing.copy(), expression=num(cutoff))]))
    return DUCKDB.render(sel)


def join_sql(keys: Sequence[str], features: Sequence[str], join_on: Sequence[str],
             fields: Sequence[str], maturity: int, duplicates: str, missing: str,
             defaults: dict[str, object]) -> str:
    """The wait join of ``REQUESTS`` and ``LABELS`` (see the module docs)."""
    desc = duplicates == "last"
    order = [exp.Ordered(this=q(c, "l"), desc=desc, nulls_first=not desc)
             for c in (LTS, LING, *fields)]
    rank = exp.Window(this=exp.RowNumber(), partition_by=[q(RID, "r")],
                      order=exp.Order(expressions=order))
    on = [exp.EQ(this=q(k, "r"), expression=q(k, "l")) for k in join_on]
    on += [exp.GTE(this=q(LTS, "l"), expression=q("served_at", "r")),
           exp.LTE(this=q(LTS, "l"),
                   expression=exp.Add(this=q("served_at", "r"), expression=num(maturity)))]
    matched = (exp.select(q(RID, "r"), *[q(f, "l") for f in fields],
                          exp.alias_(rank, RN, quoted=True))
               .from_(exp.to_table(REQUESTS, quoted=True).as_("r"))
               .join(exp.to_table(LABELS, quoted=True).as_("l"), on=_and(on), join_type="inner"))
    best = exp.select(exp.Star()).from_(matched.subquery("x")).where(
        exp.EQ(this=q(RN), expression=num(1)))
    found = exp.Not(this=exp.Is(this=q(RID, "m"), expression=exp.Null()))
    outs: list[exp.Expression] = [
        q("request_id", "r"), q("row", "r"), q("served_at", "r"), q("service_version", "r"), *[q(k, "r") for k in keys], *[q(f, "r") for f in features]]
    for f in fields:
        value: exp.Expression = q(f, "m")
        if missing == "default" and f in defaults:
            value = exp.Case(ifs=[exp.If(this=found.copy(), true=q(f, "m"))],
                             default=exp.convert(defaults[f]))
        outs.append(exp.alias_(value, f, quoted=True))
    outs.append(q("origin", "r"))
    sel = (exp.select(*outs).from_(exp.to_table(REQUESTS, quoted=True).as_("r"))
           .join(best.subquery("m"), on=exp.EQ(this=q(RID, "r"), expression=q(RID, "m")),
                 join_type="left"))
    if missing == "drop":
        sel = sel.where(found)
    sel = sel.order_by(q("served_at", "r"), q("origin", "r"), q("request_id", "r"), q("row", "r"))
    return DUCKDB.render(sel)
