"""The DuckDB compiler: a view's plan -> SQL producing its tiles and projection rows.

The same SQL serves backfill (over the batch source), the embedded streaming runner (over a
micro-batch registered as a relation) and the conformance tests, so batch and stream compute
tiles with one rendering of the algebra (DESIGN §5, §7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlglot import exp

from braid.compile import algebra_sql as A
from braid.compile.dialect import DUCKDB
from braid.compile.events import events_select
from braid.plan import SourcePlan, ViewPlan

EVENTS = "ev"
TILE_START = "tile_start"


def relation_for(source: SourcePlan, root: Path) -> exp.Expr:
    """The FROM item reading a batch source: ``read_parquet(<abs glob>)`` or ``(<query>)``."""
    if source.query is not None:
        import sqlglot

        return exp.Subquery(this=sqlglot.parse_one(source.query, read="duckdb"))
    path = Path(source.path or "")
    full = path if path.is_absolute() else root / path
    return exp.Anonymous(this="read_parquet", expressions=[
        exp.Literal.string(str(full)),
        exp.EQ(this=exp.column("union_by_name"), expression=exp.true()),
    ])


def time_range(start: int | None, end: int | None, column: str = A.TS) -> exp.Expr | None:
    """``column >= start AND column < end`` (either side optional)."""
    conds: list[exp.Expr] = []
    if start is not None:
        conds.append(exp.GTE(this=A.col(column), expression=A.lit(start)))
    if end is not None:
        conds.append(exp.LT(this=A.col(column), expression=A.lit(end)))
    if not conds:
        return None
    return conds[0] if len(conds) == 1 else exp.And(this=conds[0], expression=conds[1])


def tile_start_expr(hop: int) -> exp.Expr:
    """``_ts - (((_ts % h) + h) % h)``: integer tile arithmetic (DESIGN §4.0)."""
    h = A.lit(hop)
    ts = A.col(A.TS)
    inner = exp.Paren(this=exp.Add(this=exp.Mod(this=ts, expression=h), expression=h.copy()))
    pmod = exp.Paren(this=exp.Mod(this=inner, expression=h.copy()))
    return exp.Sub(this=ts.copy(), expression=pmod)


@dataclass(frozen=True)
class DuckDBCompiler:
    """Renders a :class:`ViewPlan` for DuckDB.

    Example:
        >>> sql = DuckDBCompiler(plan).tiles_sql(relation, hop=300_000)
        >>> con.sql(sql).to_arrow_table()   # entity keys, tile_start, partial columns
    """

    plan: ViewPlan

    def events(self, relation: exp.Expr, source: SourcePlan | None = None,
               start: int | None = None, end: int | None = None,
               extra_where: exp.Expr | None = None,
               extra_columns: Sequence[exp.Expr] = ()) -> exp.Select:
        """The validated, filtered events of ``relation`` with event time in [start, end);
        ``extra_columns`` (e.g. the archive's ``_ingested_at``) are carried along."""
        source = source or self.plan.batch_source or self.plan.source
        inner = events_select(self.plan, source, relation, extra_where,
                              extra_columns=extra_columns)
        rng = time_range(start, end)
        sub = exp.select("*").from_(inner.subquery(EVENTS))
        return sub.where(rng) if rng is not None else sub

    def tiles_query(self, events: exp.Select, hop: int) -> exp.Select:
        """Partials of one hop per (entity, tile) over an events query."""
        keys = [A.col(k) for k in self.plan.key_names]
        cols: list[exp.Expr] = [*keys, exp.alias_(tile_start_expr(hop), TILE_START, quoted=True)]
        for p in self.plan.partials_for_hop(hop):
            for name, e in zip(p.columns, A.build(p, DUCKDB), strict=True):
                cols.append(exp.alias_(e, name, quoted=True))
        group = [k.copy() for k in keys] + [exp.Literal.number(len(keys) + 1)]
        return exp.select(*cols).from_(events.subquery("e")).group_by(*group)

    def rows_query(self, events: exp.Select) -> exp.Select:
        """Projection rows: keys, _ts, _ct and each projection (latest-row history)."""
        cols: list[exp.Expr] = [A.col(k) for k in self.plan.key_names]
        cols += [A.col(A.TS), A.col(A.CT)]
        cols += [exp.alias_(A.col(f"p__{p.name}"), p.name, quoted=True) for p in self.plan.projections]
        return exp.select(*cols).from_(events.subquery("e"))

    def tiles_sql(self, relation: exp.Expr, hop: int, start: int | None = None,
                  end: int | None = None) -> str:
        return DUCKDB.render(self.tiles_query(self.events(relation, start=start, end=end), hop))

    def rows_sql(self, relation: exp.Expr, start: int | None = None,
                 end: int | None = None) -> str:
        return DUCKDB.render(self.rows_query(self.events(relation, start=start, end=end)))

    def script(self, root: Path) -> str:
        """A runnable file: one statement per hop (tiles) and one for rows, with comments."""
        source = self.plan.batch_source or self.plan.source
        relation = relation_for(source, root)
        parts = [
            f"-- braid view {self.plan.name} (namespace {self.plan.namespace}), DuckDB.",
            "-- Run with SET TimeZone='UTC'. Each statement returns one table:",
            "-- tiles: entity keys, tile_start (epoch ms), partial states per the algebra table;",
            "-- rows: entity keys, _ts, _ct (epoch ms), projections.",
            "SET TimeZone='UTC';",
        ]
        for hop in self.plan.hops:
            parts.append(f"-- tiles, hop {hop} ms")
            parts.append(self.tiles_sql(relation, hop) + ";")
        if self.plan.projections:
            parts.append("-- rows")
            parts.append(self.rows_sql(relation) + ";")
        return "\n".join(parts) + "\n"
