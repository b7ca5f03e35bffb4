"""Point-in-time SQL for one view: projection rows for an ASOF join, windowed aggregations.

Inputs come from the offline store where it covers the needed time range, and from the
compiled events query over the batch source where it does not, so a request is exact with or
without a backfill and after a cutoff (DESIGN §6.4). Everything is set-based DuckDB SQL.

Aggregations follow DESIGN §4.2: the value at ``t`` merges the complete tiles
``k(t)-W/h+1 .. k(t)-1`` and the head (events of tile ``k(t)`` with ``ts <= t``). The tail is
an equi-join of each distinct (keys, t) with its expected tile starts (never a range join,
whose cost grows with the key's whole history); windows of one hop share that join, longer
windows masking nothing and shorter ones masking the tiles they do not cover.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from braid.compile import algebra_sql as A
from braid.compile.algebra_sql import CT, TS, col, lit, missing_created
from braid.compile.dialect import DUCKDB
from braid.compile.duckdb import DuckDBCompiler, tile_start_expr
from braid.plan import AggregationPlan, PartialPlan, ViewPlan
from braid_batch.entities import T
from braid_batch.offline import BEGINNING, TILE_START, OfflineStore, value_key
from braid_batch.sources import INGESTED_AT, SourceInfo

ON = "__braid_on"
BEST = "__braid_best"


def qcol(table: str, name: str) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def conj(conds: list[exp.Expression]) -> exp.Expression:
    out = conds[0]
    for c in conds[1:]:
        out = exp.And(this=out, expression=c)
    return out


def start_of(e: exp.Expression, hop: int) -> exp.Expression:
    """``e - pmod(e, hop)`` for any expression (DESIGN §4.0)."""
    return exp.Paren(this=tile_start_expr(hop).transform(
        lambda n: e.copy() if isinstance(n, exp.Column) and n.name == TS else n))


def gaps(covered: list[tuple[int, int]], lo: int | None, hi: int) -> list[tuple[int | None, int]]:
    """Sub-ranges of ``[lo, hi)`` (``lo`` None: unbounded below) not in ``covered`` (sorted,
    disjoint; a range starting at ``BEGINNING`` is unbounded below too)."""
    out: list[tuple[int | None, int]] = []
    at = lo
    for s, e in covered:
        if (at is not None and e <= at) or s >= hi:
            continue
        if s > (at if at is not None else BEGINNING):
            out.append((at, min(s, hi)))
        at = e
    if at is None or at < hi:
        out.append((at, hi))
    return [(a, b) for a, b in out if a is None or a < b]


def union_all(parts: list[exp.Select]) -> exp.Expression:
    out: exp.Expression = parts[0]
    for p in parts[1:]:
        out = exp.union(out, p, distinct=False)
    return out


@dataclass
class ViewSQL:
    """SQL pieces of one view for a request whose entity times span ``[t_min, t_max]``."""

    plan: ViewPlan
    store: OfflineStore
    relation: exp.Expression
    info: SourceInfo
    t_min: int
    t_max: int
    as_of_known: bool = False

    @property
    def keys(self) -> list[str]:
        return self.plan.key_names

    def events(self, lo: int | None, hi: int | None) -> exp.Select:
        """Compiled events with ``lo <= _ts < hi``, late events excluded unless asked for."""
        extra: list[exp.Expression] = []
        if self.as_of_known and self.info.has_ingested_at:
            extra.append(exp.alias_(exp.Anonymous(this="epoch_ms", expressions=[
                exp.Cast(this=col(INGESTED_AT), to=exp.DataType.build("TIMESTAMPTZ"))]),
                INGESTED_AT, quoted=True))
        return DuckDBCompiler(self.plan).events(self.relation, start=lo, end=hi,
                                                extra_where=self.info.where(lo, hi),
                                                extra_columns=extra)

    # ------------------------------------------------------------------ projections

    def rows_range(self) -> tuple[int | None, int]:
        """``[lo, hi)`` of the projection rows the request reads (``lo`` None: all history)."""
        ttl = self.plan.ttl
        return (self.t_min - ttl if ttl is not None else None), self.t_max + 1

    def tiles_range(self, hop: int, widest: int) -> tuple[int, int]:
        """``[lo, hi)`` of the tile starts of ``hop`` the tails of the request read."""
        return floor_start(self.t_min, hop) - widest + hop, floor_start(self.t_max, hop)

    def uncovered(self, hop: int | None, widest: int = 0) -> list[tuple[int | None, int]]:
        """The parts of the needed range (rows if ``hop`` is None, else tiles of ``hop``)
        that the offline store does not cover."""
        lo, hi = self.rows_range() if hop is None else self.tiles_range(hop, widest)
        if lo is not None and lo >= hi:
            return []
        return gaps(self.store.covered(self.plan, hop, lo, hi), lo, hi)

    def rows(self) -> exp.Expression:
        """Projection rows, ``_ct`` missing as the lowest int64, one per (keys, _ts) unless
        ``as_of_known`` (which needs every version)."""
        lo, hi = self.rows_range()
        stored = self.store.rows_from(self.plan, lo, hi)
        cols = [col(k) for k in self.keys] + [col(TS)]
        cols.append(exp.alias_(exp.Coalesce(this=col(CT), expressions=[missing_created()]), CT,
                               quoted=True))
        cols += [col(p.name) for p in self.plan.projections]
        stored = exp.select(*cols).from_(stored.subquery("s"))
        dedupe = not self.as_of_known
        parts = [self._dedupe(stored) if dedupe and not self.store.rows_unique(self.plan)
                 else stored]
        compiler = DuckDBCompiler(self.plan)
        for a, b in gaps(self.store.covered(self.plan, None, lo, hi), lo, hi):
            raw = compiler.rows_query(self.events(a, b))
            parts.append(self._dedupe(raw) if dedupe else raw)
        return union_all(parts)

    def _dedupe(self, rows: exp.Select) -> exp.Select:
        """One row per (keys, _ts): greatest ``_ct``, then greatest value encoding."""
        order = exp.Order(expressions=[exp.Ordered(this=col(CT), desc=True),
                                       exp.Ordered(this=value_key(self.plan), desc=True)])
        rank = exp.Window(this=exp.RowNumber(),
                          partition_by=[col(k) for k in self.keys] + [col(TS)], order=order)
        return exp.select("*").from_(rows.subquery("d")).qualify(
            exp.EQ(this=rank, expression=lit(1)))

    def asof_side(self) -> exp.Select:
        """Keys, ``__braid_on`` (ASOF key), ``_ts`` of the row, and the projections.

        Default: ``__braid_on = _ts``. With ``as_of_known`` a row is available from
        ``greatest(_ts, _ct)``, and each availability point carries the best row known then
        (a running max of (ts, ct, value encoding) in availability order), so the ASOF join
        on availability picks the greatest (ts, ct, value) with ``ts <= t`` and ``ct <= t``.
        """
        rows = self.rows().subquery("r")
        keys = [col(k) for k in self.keys]
        if not self.as_of_known:
            return exp.select(*keys, exp.alias_(col(TS), ON, quoted=True), col(TS),
                              *[col(p.name) for p in self.plan.projections]).from_(rows)
        avail = exp.Greatest(this=col(TS), expressions=[col(CT)])
        fields = [("ts", col(TS)), ("ct", col(CT)), ("vk", value_key(self.plan))]
        fields += [(f"p_{i}", col(p.name)) for i, p in enumerate(self.plan.projections)]
        struct = exp.Struct(expressions=[exp.PropertyEQ(this=exp.to_identifier(n), expression=e)
                                         for n, e in fields])
        running = exp.Window(this=exp.Max(this=struct), partition_by=[k.copy() for k in keys],
                             order=exp.Order(expressions=[exp.Ordered(this=avail.copy())]))
        once = exp.Window(this=exp.RowNumber(),
                          partition_by=[k.copy() for k in keys] + [avail.copy()])
        inner = exp.select(*keys, exp.alias_(avail, ON, quoted=True),
                           exp.alias_(running, BEST, quoted=True)).from_(rows).qualify(
            exp.EQ(this=once, expression=lit(1)))

        def field(name: str) -> exp.Expression:
            return exp.Dot(this=col(BEST), expression=exp.to_identifier(name))
        return exp.select(*[col(k) for k in self.keys], col(ON),
                          exp.alias_(field("ts"), TS, quoted=True),
                          *[exp.alias_(field(f"p_{i}"), p.name, quoted=True)
                            for i, p in enumerate(self.plan.projections)]
                          ).from_(inner.subquery("b"))

    # ------------------------------------------------------------------ aggregations

    def tiles(self, hop: int, widest: int) -> exp.Expression:
        """Tiles of ``hop`` the tails of this request need: stored where covered, computed
        from events elsewhere."""
        lo, hi = self.tiles_range(hop, widest)
        parts: list[exp.Select] = [self.store.tiles_from(self.plan, hop, lo, hi)]
        compiler = DuckDBCompiler(self.plan)
        for a, b in gaps(self.store.covered(self.plan, hop, lo, hi), lo, hi):
            parts.append(compiler.tiles_query(self.events(a, b), hop))
        return union_all(parts)

    def hop_features(self, queries: str, hop: int,
                     aggs: list[AggregationPlan]) -> exp.Select:
        """``SELECT keys, __braid_t, <feature per aggregation>`` for the distinct (keys, t)
        rows of table ``queries``, all aggregations of one hop in one pass."""
        widest = max(a.window for a in aggs)
        partials = list(dict.fromkeys(a.partial for a in aggs))
        if self.as_of_known and self.info.has_ingested_at:
            # Stored tiles hold every event, also those ingested after t: rebuild the
            # window's tiles per query from the events known by t (DESIGN §4.7).
            parts = [self._known(queries, hop, widest, partials)]
        else:
            parts = [self._head(queries, hop, partials)]
            if widest > hop:
                parts.insert(0, self._tail(queries, hop, widest, partials))
        masked, names = self._masked(union_all(parts), hop, widest, aggs)
        group = [col(k) for k in self.keys] + [col(T)]
        sel = [c.copy() for c in group]
        for a in aggs:
            cols = names[(a.window, a.partial)]
            gm = col(_gm_name(cols)) if a.partial.spec.merge == "chan" else None
            merged = A.merge(a.partial, DUCKDB, group_mean=gm, columns=cols)
            sel.append(exp.alias_(A.finalize(a, merged), a.name, quoted=True))
        return exp.select(*sel).from_(masked.subquery("m")).group_by(*group)

    def _tail(self, queries: str, hop: int, widest: int,
              partials: list[PartialPlan]) -> exp.Select:
        """Each (keys, t) expanded to the starts of its complete tiles, equi-joined to tiles.

        The expansion is a subquery of plain columns so that the join is a hash join on
        (keys, tile_start); joining on an expression over both inputs let DuckDB join on the
        keys alone first and filter afterwards (measured ~10x slower, 200k rows).
        """
        ks = start_of(qcol("q", T), hop)
        want = exp.Sub(this=ks, expression=exp.Mul(this=qcol("r", "i"), expression=lit(hop)))
        series = exp.Table(this=exp.GenerateSeries(start=lit(1), end=lit(widest // hop),
                                                   is_end_exclusive=True),
                           alias=exp.TableAlias(this=exp.to_identifier("r"),
                                                columns=[exp.to_identifier("i")]))
        expanded = (exp.select(*[qcol("q", k) for k in self.keys], qcol("q", T),
                               exp.alias_(want, TILE_START, quoted=True))
                    .from_(exp.to_table(queries, quoted=True).as_("q"))
                    .join(series, join_type="cross"))
        on = conj([exp.EQ(this=qcol("t", k), expression=qcol("x", k)) for k in self.keys]
                  + [exp.EQ(this=qcol("t", TILE_START), expression=qcol("x", TILE_START))])
        cols = [qcol("x", k) for k in self.keys] + [qcol("x", T), qcol("x", TILE_START)]
        cols += [qcol("t", c) for p in partials for c in p.columns]
        return (exp.select(*cols).from_(expanded.subquery("x"))
                .join(self.tiles(hop, widest).subquery("t"), on=on))

    def _head(self, queries: str, hop: int, partials: list[PartialPlan]) -> exp.Select:
        ks = start_of(qcol("q", T), hop)
        conds: list[exp.Expression] = [exp.EQ(this=qcol("e", k), expression=qcol("q", k))
                                       for k in self.keys]
        conds.append(exp.EQ(this=start_of(qcol("e", TS), hop), expression=ks.copy()))
        conds.append(exp.LTE(this=qcol("e", TS), expression=qcol("q", T)))
        if self.as_of_known and self.info.has_ingested_at:
            conds.append(exp.LTE(this=qcol("e", INGESTED_AT), expression=qcol("q", T)))
        cols: list[exp.Expression] = [qcol("q", k) for k in self.keys] + [qcol("q", T)]
        cols.append(exp.alias_(ks, TILE_START, quoted=True))
        for p in partials:
            for name, e in zip(p.columns, A.build(p, DUCKDB), strict=True):
                cols.append(exp.alias_(e, name, quoted=True))
        events = self.events(floor_start(self.t_min, hop), self.t_max + 1)
        group = [qcol("q", k) for k in self.keys] + [qcol("q", T)]
        return (exp.select(*cols).from_(exp.to_table(queries, quoted=True).as_("q"))
                .join(events.subquery("e"), on=conj(conds)).group_by(*group))

    def _known(self, queries: str, hop: int, widest: int,
               partials: list[PartialPlan]) -> exp.Select:
        """Per (keys, t): partials of every tile of the widest window, from the events with
        ``_ts <= t`` and ``_ingested_at <= t`` only (``as_of_known``)."""
        first = exp.Add(this=exp.Sub(this=start_of(qcol("q", T), hop), expression=lit(widest)),
                        expression=lit(hop))
        conds: list[exp.Expression] = [exp.EQ(this=qcol("e", k), expression=qcol("q", k))
                                       for k in self.keys]
        conds += [exp.GTE(this=qcol("e", TS), expression=first),
                  exp.LTE(this=qcol("e", TS), expression=qcol("q", T)),
                  exp.LTE(this=qcol("e", INGESTED_AT), expression=qcol("q", T))]
        tile = start_of(qcol("e", TS), hop)
        cols: list[exp.Expression] = [qcol("q", k) for k in self.keys] + [qcol("q", T)]
        cols.append(exp.alias_(tile, TILE_START, quoted=True))
        for p in partials:
            for name, e in zip(p.columns, A.build(p, DUCKDB), strict=True):
                cols.append(exp.alias_(e, name, quoted=True))
        events = self.events(floor_start(self.t_min, hop) - widest + hop, self.t_max + 1)
        group = [qcol("q", k) for k in self.keys] + [qcol("q", T), tile.copy()]
        return (exp.select(*cols).from_(exp.to_table(queries, quoted=True).as_("q"))
                .join(events.subquery("e"), on=conj(conds)).group_by(*group))

    def _masked(self, parts: exp.Expression, hop: int, widest: int, aggs: list[AggregationPlan]
                ) -> tuple[exp.Select, dict[tuple[int, PartialPlan], list[str]]]:
        """Per (window, partial): its columns, NULL outside the window's tiles; and for
        CHAN partials the group mean that the Chan merge needs."""
        keep = [col(k) for k in self.keys] + [col(T)]
        sel: list[exp.Expression] = [c.copy() for c in keep]
        names: dict[tuple[int, PartialPlan], list[str]] = {}
        ks = start_of(col(T), hop)
        for a in aggs:
            key = (a.window, a.partial)
            if key in names:
                continue
            if a.window == widest:
                names[key] = list(a.partial.columns)
                sel += [col(c) for c in a.partial.columns if col(c) not in sel]
                continue
            inside = exp.GTE(this=col(TILE_START),
                             expression=exp.Add(this=exp.Sub(this=ks.copy(), expression=lit(a.window)),
                                                expression=lit(hop)))
            names[key] = [f"w{a.window}__{c}" for c in a.partial.columns]
            for c, alias in zip(a.partial.columns, names[key], strict=True):
                sel.append(exp.alias_(exp.Case(ifs=[exp.If(this=inside.copy(), true=col(c))]),
                                      alias, quoted=True))
        inner = exp.select(*sel).from_(parts.subquery("p"))
        if not any(p.spec.merge == "chan" for _, p in names):
            return inner, names
        outer: list[exp.Expression] = [exp.Star()]
        for (_, p), cols in names.items():
            if p.spec.merge != "chan":
                continue
            mapping = dict(zip(p.columns, cols, strict=True))
            gm = A.chan_group_mean(p, keep).transform(
                lambda n, m=mapping: col(m[n.name]) if isinstance(n, exp.Column)
                and n.name in m else n)
            outer.append(exp.alias_(gm, _gm_name(cols), quoted=True))
        return exp.select(*outer).from_(inner.subquery("w")), names


def _gm_name(cols: list[str]) -> str:
    return f"gm__{cols[0]}"


def floor_start(ms: int, hop: int) -> int:
    """``ms - pmod(ms, hop)`` in Python (floor toward minus infinity)."""
    return ms - ms % hop
