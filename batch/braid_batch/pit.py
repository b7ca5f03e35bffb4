"""Point-in-time training sets: ``get_historical_features`` (DESIGN §4.1, §4.2, §10).

One output row per input row, in input order, duplicates and extra columns kept. Projections
come from an ASOF join over projection rows pre-reduced to one row per (keys, ts) by the
tie-break of §4.1; aggregations from the tiles of each hop plus the exact head, merged and
finalized by the algebra renderer. Nothing runs per row in Python.

Example:
    >>> result = get_historical_features(repo, entity_df, ["user_txn:amount_sum_1h"])
    >>> result.to_pandas()
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from sqlglot import exp

from braid.compile.algebra_sql import TS, col, lit
from braid.compile.dialect import DUCKDB
from braid.compile.duckdb import relation_for
from braid.definitions.service import resolve_reference
from braid.duck import connect
from braid.errors import EntityKeyError, StoreError, UnknownFeatureError
from braid.plan import AggregationPlan, ViewPlan
from braid.repo import Repo
from braid_batch import entities as E
from braid_batch.coverage import require_coverage
from braid_batch.offline import OfflineStore
from braid_batch.pit_sql import ON, ViewSQL, conj, qcol
from braid_batch.sources import source_info
from braid_batch.spine import SpineSpec, spine_entities


@dataclass
class HistoricalResult:
    """A point-in-time result, computed on demand by DuckDB.

    ``sql`` is the result in input order; ``to_parquet`` streams it with ``COPY ... TO``
    without building the table in Python. ``to_arrow`` runs ``unordered_sql`` (the same
    rows plus the input row number, in join order) and puts the rows back in input order
    with one Arrow ``take`` of the inverse permutation, which costs far less than sorting
    the wide result in DuckDB.
    """

    con: duckdb.DuckDBPyConnection
    sql: str
    features: list[str]
    unordered_sql: str | None = None
    _arrow: pa.Table | None = field(default=None, repr=False)

    def to_arrow(self) -> pa.Table:
        if self._arrow is None:
            self._arrow = (self.con.sql(self.sql).to_arrow_table()
                           if self.unordered_sql is None else self._in_input_order())
        return self._arrow

    def _in_input_order(self) -> pa.Table:
        assert self.unordered_sql is not None
        table = self.con.sql(self.unordered_sql).to_arrow_table()
        rows = table.column(E.ROW).to_numpy()
        order = np.empty(len(rows), dtype=np.int64)
        order[rows] = np.arange(len(rows), dtype=np.int64)  # rows is a permutation of 0..n-1
        return table.drop_columns([E.ROW]).take(pa.array(order))

    def to_pandas(self):  # type: ignore[no-untyped-def]
        return self.to_arrow().to_pandas()

    def to_parquet(self, path: str | Path) -> Path:
        target = Path(path)
        quoted = str(target).replace("'", "''")
        self.con.execute(f"COPY ({self.sql}) TO '{quoted}' (FORMAT parquet)")
        return target


def get_historical_features(repo: Repo, entity_df: E.EntityInput | None = None,
                            features: list[str] | None = None, as_of_known: bool = False,
                            timestamp_column: str = "event_timestamp",
                            include_late: bool = False, full_feature_names: bool = False,
                            spine: SpineSpec | None = None,
                            threads: int | None = None,
                            require_backfill: bool = False) -> HistoricalResult:
    """Feature values as of each entity row's timestamp.

    Args:
        repo: the loaded repository.
        entity_df: pandas DataFrame, Arrow table, Parquet path or DuckDB SQL with the entity
            keys of the requested views and a zone-aware (or int64 epoch-ms) timestamp column.
        features: "view:feature" references.
        as_of_known: only rows created, and events ingested, at or before each t (§4.7).
        timestamp_column: the entity_df column holding t.
        include_late: count events the stream archive flagged ``_late``.
        full_feature_names: name output columns ``view__feature``.
        spine: build entity_df from a view's active entities instead (see :class:`SpineSpec`).
        threads: DuckDB threads.
        require_backfill: read the offline store only; a needed time range that no
            backfill covered raises (default: computed exactly from the batch source).

    Raises:
        UnknownFeatureError, EntityKeyError, TimestampError, CoverageError.
    """
    if not features:
        raise UnknownFeatureError("get_historical_features needs features=['view:feature', ...]")
    con = connect(threads=threads)
    if spine is not None:
        entity_df, timestamp_column = spine_entities(repo, con, spine), "event_timestamp"
    if entity_df is None:
        raise EntityKeyError("get_historical_features needs entity_df= or spine=")
    wanted = _resolve(repo, features)
    table = E.to_arrow(entity_df, con)
    E.check_timestamp(table, timestamp_column)
    for name in wanted:
        E.check_keys(table, dict(repo.plan(name).entity_keys), name)
    E.load(con, table, timestamp_column)
    outputs = _output_names(wanted, table.column_names, full_feature_names)
    span = E.time_span(con, table, timestamp_column) or (0, 0)
    store = OfflineStore.for_repo(repo)
    joins, selects = [], []
    for i, (name, refs) in enumerate(wanted.items()):
        plan = repo.plan(name)
        view = _view_sql(repo, con, plan, store, span, as_of_known, include_late)
        if require_backfill:
            require_coverage(view, refs)
        j, s = _view_joins(con, view, i, refs, outputs[name])
        joins += j
        selects += s
    originals = [qcol("e", c) for c in table.column_names]
    sel = exp.select(*originals, *selects).from_(exp.to_table(E.ENTITY_TABLE, quoted=True).as_("e"))
    for table_expr, on, kind in joins:
        sel = sel.join(table_expr, on=on, join_type=kind)
    unordered = DUCKDB.render(sel.select(qcol("e", E.ROW)))
    ordered = f'SELECT * EXCLUDE ("{E.ROW}") FROM ({unordered}) ORDER BY "{E.ROW}"'
    names = [outputs[v][f] for v, refs in wanted.items() for f in refs]
    return HistoricalResult(con, ordered, names, unordered_sql=unordered)


def _resolve(repo: Repo, features: list[str]) -> dict[str, list[str]]:
    """``{view: [feature, ...]}`` in request order, duplicates removed."""
    out: dict[str, list[str]] = defaultdict(list)
    for ref in features:
        view, feature = resolve_reference(ref, repo.views)
        if feature not in out[view.name]:
            out[view.name].append(feature)
    return dict(out)


def _output_names(wanted: dict[str, list[str]], columns: list[str],
                  full: bool) -> dict[str, dict[str, str]]:
    names = {v: {f: f"{v}__{f}" if full else f for f in fs} for v, fs in wanted.items()}
    seen: set[str] = set(columns)
    for v, fs in names.items():
        for f, out in fs.items():
            if out in seen:
                raise EntityKeyError(
                    f"output column '{out}' (feature '{v}:{f}') collides with another column; "
                    "rename the entity_df column or pass full_feature_names=True"
                )
            seen.add(out)
    return names


def _view_sql(repo: Repo, con: duckdb.DuckDBPyConnection, plan: ViewPlan, store: OfflineStore,
              span: tuple[int, int], as_of_known: bool, include_late: bool) -> ViewSQL:
    if plan.batch_source is None:
        raise StoreError(f"view '{plan.name}' has no batch source; point-in-time joins read it")
    relation = relation_for(plan.batch_source, repo.config.resolve("."))
    info = source_info(con, plan, relation, include_late, scan=False)
    return ViewSQL(plan, store, relation, info, span[0], span[1], as_of_known)


Join = tuple[exp.Expression, exp.Expression, str]


def _view_joins(con: duckdb.DuckDBPyConnection, view: ViewSQL, i: int, refs: list[str],
                outputs: dict[str, str]) -> tuple[list[Join], list[exp.Expression]]:
    """Joins onto the entity table ``e`` and the output columns of one view."""
    plan = view.plan
    keys_eq = [exp.EQ(this=qcol("e", k), expression=qcol(f"r{i}", k)) for k in plan.key_names]
    joins: list[Join] = []
    selects: list[exp.Expression] = []
    projections = {p.name: p for p in plan.projections}
    if any(f in projections for f in refs):
        on = conj([*keys_eq, exp.GTE(this=qcol("e", E.T), expression=qcol(f"r{i}", ON))])
        joins.append((view.asof_side().subquery(f"r{i}"), on, "asof left"))
    aggs = [a for a in plan.aggregations if a.name in refs]
    hop_tables = _aggregate(con, view, i, aggs)
    for hop, name in hop_tables.items():
        alias = f"a{i}_{hop}"
        on = conj([exp.EQ(this=qcol("e", k), expression=qcol(alias, k)) for k in plan.key_names]
                  + [exp.EQ(this=qcol("e", E.T), expression=qcol(alias, E.T))])
        joins.append((exp.to_table(name, quoted=True).as_(alias), on, "left"))
    by_name = {a.name: a for a in aggs}
    for f in refs:
        if f in projections:
            p = projections[f]
            value: exp.Expression = qcol(f"r{i}", f)
            if plan.ttl is not None:
                fresh = exp.GTE(this=qcol(f"r{i}", TS),
                                expression=exp.Sub(this=qcol("e", E.T), expression=lit(plan.ttl)))
                value = exp.Case(ifs=[exp.If(this=fresh, true=value)])
            fallback = p.default
        else:
            a = by_name[f]
            value = qcol(f"a{i}_{a.hop}", f)
            fallback = a.default if a.default is not None else a.partial.spec.empty_value(
                a.partial.input_type)
        if fallback is not None:
            value = exp.Coalesce(this=value, expressions=[exp.convert(fallback)])
        selects.append(exp.alias_(value, outputs[f], quoted=True))
    return joins, selects


def _aggregate(con: duckdb.DuckDBPyConnection, view: ViewSQL, i: int,
               aggs: list[AggregationPlan]) -> dict[int, str]:
    """Materialize each hop's features for the distinct (keys, t); ``{hop: temp table}``."""
    if not aggs:
        return {}
    queries = f"__braid_q{i}"
    keys = [col(k) for k in view.keys]
    distinct = exp.select(*keys, col(E.T)).distinct().from_(
        exp.to_table(E.ENTITY_TABLE, quoted=True)).where(
        exp.Not(this=exp.Is(this=col(E.T), expression=exp.Null())))
    con.execute(f'CREATE OR REPLACE TEMP TABLE "{queries}" AS {DUCKDB.render(distinct)}')
    by_hop: dict[int, list[AggregationPlan]] = defaultdict(list)
    for a in aggs:
        by_hop[a.hop].append(a)
    out = {}
    for hop, group in sorted(by_hop.items()):
        name = f"__braid_a{i}_{hop}"
        sql = DUCKDB.render(view.hop_features(queries, hop, group))
        con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS {sql}')
        out[hop] = name
    return out
