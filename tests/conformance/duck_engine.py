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
from braid.compile import algebra_sql as A
from braid.compile.dialect import DUCKDB
from braid.compile.duckdb import TILE_START, DuckDBCompiler, relation_for
from braid.compile.events import epoch_ms
from braid.duck import connect
from braid.plan import AggregationPlan, ViewPlan
from braid.reference import INGESTED_AT, Key, TileKey, canonical_encoding, source_of
from braid.timeutil import tile_start
from sqlglot import exp


def write_events(plan: ViewPlan, events: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Write ``events`` as Parquet with the source schema's Arrow types."""
    source = source_of(plan)
    arrays, fields = [], []
    for name, dtype in source.schema:
        arrays.append(pa.array([e.get(name) for e in events], type=dtype.arrow))
        fields.append(pa.field(name, dtype.arrow))
    pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), path)


def _and(conds: Sequence[exp.Expression]) -> exp.Expression:
    out = conds[0]
    for c in conds[1:]:
        out = exp.And(this=out, expression=c)
    return out


class DuckRun:
    """One view's events in DuckDB: compiled tiles and rows, and feature values from them."""

    def __init__(self, plan: ViewPlan, events: Sequence[Mapping[str, Any]], workdir: Path,
                 threads: int | None = None) -> None:
        self.plan = plan
        self.compiler = DuckDBCompiler(plan)
        path = workdir / "events.parquet"
        write_events(plan, events, path)
        self.relation = relation_for(replace(source_of(plan), path=str(path), query=None),
                                     workdir)
        self.con: duckdb.DuckDBPyConnection = connect(threads=threads)
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

    def _key_condition(self, key: Key) -> exp.Expression:
        return _and([exp.EQ(this=A.col(k), expression=exp.convert(v))
                     for k, v in zip(self.plan.key_names, key, strict=True)])

    def _known(self, t: int) -> exp.Expression:
        source = source_of(self.plan)
        return exp.LTE(this=epoch_ms(source, INGESTED_AT), expression=A.lit(t))

    def _has_ingested(self) -> bool:
        return INGESTED_AT in source_of(self.plan).columns

    def _partials(self, key: Key, t: int, hop: int, tiles: int,
                  as_of_known: bool) -> exp.Expression:
        """The window's partial rows: complete tiles k-n+1 .. k-1 and the head tile up to t."""
        k_start = tile_start(t, hop)
        lo = k_start - (tiles - 1) * hop
        where = [self._key_condition(key)]
        if as_of_known and self._has_ingested():
            where.append(self._known(t))
        head_events = self.compiler.events(self.relation, start=k_start, end=t + 1,
                                           extra_where=_and(where))
        head = self.compiler.tiles_query(head_events, hop)
        if as_of_known and self._has_ingested():
            tail_events = self.compiler.events(self.relation, start=lo, end=k_start,
                                               extra_where=_and(where))
            tail: exp.Select = self.compiler.tiles_query(tail_events, hop)
        else:
            tail = exp.select("*").from_(f"tiles_{hop}").where(_and([
                self._key_condition(key),
                exp.GTE(this=A.col(TILE_START), expression=A.lit(lo)),
                exp.LT(this=A.col(TILE_START), expression=A.lit(k_start)),
            ]))
        return exp.union(tail, head, distinct=False)

    def _aggregate(self, a: AggregationPlan, key: Key, t: int, as_of_known: bool) -> Any:
        p = a.partial
        partials = self._partials(key, t, a.hop, a.tiles, as_of_known)
        inner = exp.select("*").from_(partials.subquery("u"))
        gm = None
        if p.spec.merge.value == "chan":
            inner = inner.select(exp.alias_(A.chan_group_mean(p, []), "_gm", quoted=True))
            gm = A.col("_gm")
        merged = A.merge(p, DUCKDB, group_mean=gm)
        query = exp.select(A.finalize(a, merged)).from_(inner.subquery("w"))
        return self.con.execute(DUCKDB.render(query)).fetchall()[0][0]

    def _projections(self, key: Key, t: int, as_of_known: bool) -> dict[str, Any]:
        plan = self.plan
        names = [p.name for p in plan.projections]
        conds = [self._key_condition(key), exp.LTE(this=A.col(A.TS), expression=A.lit(t))]
        if as_of_known:
            conds.append(exp.LTE(this=A.col(A.CT), expression=A.lit(t)))
        ranked = exp.select(A.col(A.TS), *[A.col(n) for n in names]).from_("rows").where(
            _and(conds)).qualify(
            "rank() OVER (ORDER BY \"_ts\" DESC, \"_ct\" DESC) = 1")
        rows = self.con.execute(DUCKDB.render(ranked)).fetchall()
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
        out = []
        for key, t in queries:
            row = self._projections(tuple(key), t, as_of_known) if self.plan.projections else {}
            for a in self.plan.aggregations:
                row[a.name] = self._aggregate(a, tuple(key), t, as_of_known)
            out.append(row)
        return out
