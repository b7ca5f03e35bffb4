"""Feature values computed by DuckDB from the compiled tiles and rows (conformance helper).

The events go to a Parquet file (``timestamp[ms, tz=UTC]`` time columns, DESIGN §4.0), the
view's compiled SQL (:class:`braid.compile.duckdb.DuckDBCompiler`) builds tiles and rows, and
each query reads them back the way DESIGN §4.2 says: the complete tiles of the window merged
with :func:`braid.compile.algebra_sql.merge` (plus :func:`chan_group_mean`) and the head
tile's events built with the same compiled SQL, then :func:`finalize`. Projections take the
latest row (greatest ``_ts``, ``_ct``); a tie on both is broken by the canonical encoding of
DESIGN §4.1, in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from braid.algebra import Merge
from braid.compile import algebra_sql as A
from braid.compile.dialect import DUCKDB
from braid.compile.duckdb import TILE_START, DuckDBCompiler, relation_for
from braid.compile.events import epoch_ms
from braid.duck import connect
from braid.plan import AggregationPlan, ViewPlan
from braid.reference import INGESTED_AT, Key, TileKey, canonical_encoding, source_of
from braid.timeutil import tile_start


def write_events(plan: ViewPlan, events: Sequence[Mapping[str, Any]], path: Path,
                 row_group_size: int | None = None) -> None:
    """Write ``events`` as Parquet with the source schema's Arrow types (small row groups
    let DuckDB scan and aggregate on several threads)."""
    source = source_of(plan)
    arrays, fields = [], []
    for name, dtype in source.schema:
        arrays.append(pa.array([e.get(name) for e in events], type=dtype.arrow))
        fields.append(pa.field(name, dtype.arrow))
    pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), path,
                   row_group_size=row_group_size)


def _and(conds: Sequence[exp.Expression]) -> exp.Expression:
    out = conds[0]
    for c in conds[1:]:
        out = exp.And(this=out, expression=c)
    return out


class DuckRun:
    """One view's events in DuckDB: compiled tiles and rows, and feature values from them."""

    def __init__(self, plan: ViewPlan, events: Sequence[Mapping[str, Any]], workdir: Path,
                 threads: int | None = None, row_group_size: int | None = None) -> None:
        self.plan = plan
        self.compiler = DuckDBCompiler(plan)
        path = workdir / "events.parquet"
        write_events(plan, events, path, row_group_size)
        self.relation = relation_for(replace(source_of(plan), path=str(path), query=None),
                                     workdir)
        self.con: duckdb.DuckDBPyConnection = connect(threads=threads)
        # Head tiles are rebuilt per query: from a table copy of the Parquet file (same
        # types), so each query does not re-read the file.
        self.con.execute(f"CREATE TABLE source AS SELECT * FROM {DUCKDB.render(self.relation)}")
        self.head_relation = exp.to_table("source")
        for hop in plan.hops:
            self.con.execute(
                f"CREATE TABLE tiles_{hop} AS {self.compiler.tiles_sql(self.relation, hop)}")
        if plan.projections:
            self.con.execute(f"CREATE TABLE rows AS {self.compiler.rows_sql(self.relation)}")

    def close(self) -> None:
        self.con.close()

    def tiles(self) -> dict[TileKey, dict[str, Any]]:
        """Every tile the compiled SQL wrote, keyed like :func:`braid.reference.reference_tiles`."""
        out: dict[TileKey, dict[str, Any]] = {}
        nkeys = len(self.plan.key_names)
        for hop in self.plan.hops:
            cur = self.con.execute(f"SELECT * FROM tiles_{hop}")
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                key = tuple(row[:nkeys])
                out[(key, hop, row[nkeys])] = dict(zip(names[nkeys + 1:], row[nkeys + 1:],
                                                       strict=True))
        return out

    # ------------------------------------------------------------ queries

    def _key_condition(self) -> exp.Expression:
        return _and([exp.EQ(this=A.col(k), expression=exp.Placeholder(this=f"key{i}"))
                     for i, k in enumerate(self.plan.key_names)])

    def _window_partials(self, hop: int, as_of_known: bool) -> exp.Expression:
        """The window's partial rows: complete tiles [$lo, $k) and the head tile [$k, $t].

        Parameters: ``$key<i>``, ``$lo``, ``$k`` (tile start of t), ``$t``.
        """
        param = exp.Placeholder
        known = None
        if as_of_known and INGESTED_AT in source_of(self.plan).columns:
            known = exp.LTE(this=epoch_ms(source_of(self.plan), INGESTED_AT),
                            expression=param(this="t"))

        def events(lo: str, hi: exp.Expression) -> exp.Select:
            return self.compiler.events(self.head_relation, extra_where=known).where(_and([
                self._key_condition(),
                exp.GTE(this=A.col(A.TS), expression=param(this=lo)), hi]))

        head = self.compiler.tiles_query(
            events("k", exp.LTE(this=A.col(A.TS), expression=param(this="t"))), hop)
        if known is not None:
            tail: exp.Select = self.compiler.tiles_query(
                events("lo", exp.LT(this=A.col(A.TS), expression=param(this="k"))), hop)
        else:
            tail = exp.select("*").from_(f"tiles_{hop}").where(_and([
                self._key_condition(),
                exp.GTE(this=A.col(TILE_START), expression=param(this="lo")),
                exp.LT(this=A.col(TILE_START), expression=param(this="k")),
            ]))
        return exp.union(tail, head, distinct=False)

    def _aggregate_sql(self, aggs: Sequence[AggregationPlan], as_of_known: bool) -> str:
        """One parameterized query finalizing aggregations that share (hop, window)."""
        inner = exp.select("*").from_(
            self._window_partials(aggs[0].hop, as_of_known).subquery("u"))
        values = []
        for i, a in enumerate(aggs):
            gm = None
            if a.partial.spec.merge == Merge.CHAN:
                inner = inner.select(
                    exp.alias_(A.chan_group_mean(a.partial, []), f"_gm{i}", quoted=True))
                gm = A.col(f"_gm{i}")
            values.append(exp.alias_(A.finalize(a, A.merge(a.partial, DUCKDB, group_mean=gm)),
                                     f"f{i}", quoted=True))
        return DUCKDB.render(exp.select(*values).from_(inner.subquery("w")))

    def _latest_sql(self, as_of_known: bool) -> str:
        """Rows of the greatest (_ts, _ct) with _ts <= $t (and _ct <= $t) for one key."""
        t = exp.Placeholder(this="t")
        conds = [self._key_condition(), exp.LTE(this=A.col(A.TS), expression=t)]
        if as_of_known:
            conds.append(exp.LTE(this=A.col(A.CT), expression=t.copy()))
        names = [p.name for p in self.plan.projections]
        ranked = exp.select(A.col(A.TS), *[A.col(n) for n in names]).from_("rows").where(
            _and(conds)).qualify("rank() OVER (ORDER BY \"_ts\" DESC, \"_ct\" DESC) = 1")
        return DUCKDB.render(ranked)

    def _projections(self, sql: str, key: Key, t: int) -> dict[str, Any]:
        plan = self.plan
        params: dict[str, Any] = {f"key{i}": v for i, v in enumerate(key)}
        rows = self.con.execute(sql, {**params, "t": t}).fetchall()
        best = max(rows, key=lambda r: canonical_encoding(plan, r[1:]), default=None)
        fresh = best is not None and (plan.ttl is None or best[0] >= t - plan.ttl)
        out = {}
        for i, p in enumerate(plan.projections):
            value = best[1 + i] if fresh and best is not None else None
            out[p.name] = p.default if value is None and p.default is not None else value
        return out

    def features(self, queries: Sequence[tuple[Key, int]], as_of_known: bool = False
                 ) -> list[dict[str, Any]]:
        """Feature values at each (entity key, t), computed in DuckDB from tiles and rows."""
        by_window: dict[tuple[int, int], list[AggregationPlan]] = {}
        for a in self.plan.aggregations:
            by_window.setdefault((a.hop, a.window), []).append(a)
        groups = [(aggs, self._aggregate_sql(aggs, as_of_known)) for aggs in by_window.values()]
        latest = self._latest_sql(as_of_known) if self.plan.projections else None
        out = []
        for key, t in queries:
            row = self._projections(latest, tuple(key), t) if latest else {}
            for aggs, sql in groups:
                k = tile_start(t, aggs[0].hop)
                params = {f"key{i}": v for i, v in enumerate(key)}
                params.update(t=t, k=k, lo=k - (aggs[0].tiles - 1) * aggs[0].hop)
                values = self.con.execute(sql, params).fetchall()[0]
                for a, value in zip(aggs, values, strict=True):
                    row[a.name] = value
            out.append(row)
        return out
