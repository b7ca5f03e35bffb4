"""What the batch runtime needs to know about a view's batch source before reading it.

Its physical columns decide two things: whether braid's archive columns are there (``_late``
excludes late events, DESIGN §4.7; ``_ingested_at`` gives availability for ``as_of_known``),
and how a time range can be pushed down to the Parquet scan (a filter on the raw timestamp
column lets DuckDB skip row groups; the exact filter on ``_ts`` stays).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
from sqlglot import exp

from braid.compile.algebra_sql import TS, col, lit, not_null
from braid.compile.dialect import DUCKDB
from braid.compile.duckdb import tile_start_expr, time_range
from braid.compile.events import epoch_ms
from braid.errors import StoreError
from braid.plan import ViewPlan
from braid.timeutil import DAY

LATE = "_late"
INGESTED_AT = "_ingested_at"


@dataclass
class SourceInfo:
    """Physical columns of a batch source and a per-day event histogram (filled lazily)."""

    plan: ViewPlan
    relation: exp.Expression
    columns: dict[str, str]
    include_late: bool
    days: dict[int, int] = field(default_factory=dict)
    span: tuple[int | None, int | None] = (None, None)

    @property
    def has_late(self) -> bool:
        return LATE in self.columns

    @property
    def has_ingested_at(self) -> bool:
        return INGESTED_AT in self.columns

    def late_filter(self) -> exp.Expression | None:
        """``_late IS NOT TRUE`` unless late events are wanted or the column is absent."""
        if self.include_late or not self.has_late:
            return None
        return exp.Not(this=exp.Is(this=col(LATE), expression=exp.true()))

    def where(self, start: int | None, end: int | None) -> exp.Expression | None:
        """The late filter plus a loose range on the raw time column (for row-group pruning)."""
        conds = [c for c in (self.late_filter(), self._pushdown(start, end)) if c is not None]
        if not conds:
            return None
        return conds[0] if len(conds) == 1 else exp.And(this=conds[0], expression=conds[1])

    def _pushdown(self, start: int | None, end: int | None) -> exp.Expression | None:
        assert self.plan.batch_source is not None
        name = self.plan.batch_source.timestamp_field
        kind = self.columns.get(name, "")
        if kind.startswith("TIMESTAMP"):
            def bound(ms: int) -> exp.Expression:
                return exp.Anonymous(this="epoch_ms", expressions=[lit(ms)])
        elif kind in ("BIGINT", "INTEGER"):
            def bound(ms: int) -> exp.Expression:
                return lit(ms)
        else:
            return None
        conds: list[exp.Expression] = []
        if start is not None:  # one ms of slack: sub-ms times round toward zero
            conds.append(exp.GTE(this=col(name), expression=bound(start - 1)))
        if end is not None:
            conds.append(exp.LT(this=col(name), expression=bound(end + 1)))
        if not conds:
            return None
        return conds[0] if len(conds) == 1 else exp.And(this=conds[0], expression=conds[1])

    def scan(self, con: duckdb.DuckDBPyConnection, start: int | None, end: int | None) -> None:
        """Count events per UTC day in [start, end) and record the min and max event time.

        Reads the time column alone (and ``_late``): rows that fail validation or the view's
        filter are counted too. A superset is all that chunk sizing and the default range
        need (days with only such rows are covered as empty, which they are), and it costs a
        fraction of a full validated read.
        """
        assert self.plan.batch_source is not None
        source = self.plan.batch_source
        where: exp.Expression = not_null(col(source.timestamp_field))
        extra = self.where(start, end)
        if extra is not None:
            where = exp.And(this=where, expression=extra)
        times = exp.select(exp.alias_(epoch_ms(source, source.timestamp_field), TS, quoted=True)
                           ).from_(self.relation).where(where)
        rng = time_range(start, end)
        events = exp.select("*").from_(times.subquery("e"))
        if rng is not None:
            events = events.where(rng)
        ts = col(TS)
        day = exp.Div(this=exp.Paren(this=tile_start_expr(DAY)), expression=lit(DAY), typed=True)
        q = exp.select(exp.alias_(day, "d"), exp.Count(this=exp.Star()),
                       exp.Min(this=ts.copy()), exp.Max(this=ts.copy())
                       ).from_(events.subquery("e")).group_by(exp.Literal.number(1))
        rows = con.sql(DUCKDB.render(q)).fetchall()
        self.days = {int(d): int(n) for d, n, _, _ in rows}
        if rows:
            self.span = (min(int(r[2]) for r in rows), max(int(r[3]) for r in rows))

    def rows_at_most(self, con: duckdb.DuckDBPyConnection, limit: int) -> bool:
        """True if the source holds at most ``limit`` rows, known from Parquet footers alone
        (DuckDB counts a ``read_parquet`` without reading data); False for a query source."""
        if not (isinstance(self.relation, exp.Anonymous)
                and self.relation.name.lower() == "read_parquet"):
            return False
        q = exp.select(exp.Count(this=exp.Star())).from_(self.relation.copy())
        return int(con.sql(DUCKDB.render(q)).fetchall()[0][0]) <= limit

    def bounds(self, start: int | None, end: int | None) -> tuple[int | None, int | None]:
        """``start``/``end``, each defaulting to the source's min / max event time (+1 ms)."""
        lo, hi = self.span
        return (start if start is not None else lo,
                end if end is not None else (hi + 1 if hi is not None else None))

    def day_counts(self, lo: int, hi: int) -> dict[int, int]:
        return {d: n for d, n in self.days.items() if lo <= d * DAY < hi}


def source_info(con: duckdb.DuckDBPyConnection, plan: ViewPlan, relation: exp.Expression,
                include_late: bool, start: int | None = None,
                end: int | None = None, scan: bool = True) -> SourceInfo:
    """Describe the source and (if ``scan``) count its events per day over [start, end).

    Raises:
        StoreError: the source cannot be read.
    """
    try:
        described = con.sql(DUCKDB.render(exp.select("*").from_(relation).limit(0)))
    except duckdb.Error as e:
        raise StoreError(f"view '{plan.name}': cannot read its batch source "
                         f"({str(e).splitlines()[0]})") from e
    columns = {n: str(t) for n, t in zip(described.columns, described.types, strict=True)}
    info = SourceInfo(plan, relation, columns, include_late)
    if scan:
        info.scan(con, start, end)
    return info

