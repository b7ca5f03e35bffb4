"""Log-and-wait training sets (DESIGN §8): serving logs joined with late labels at a cutoff.

A training set is a function of (log, labels, cutoff C):

* request r (one logged entity row) is included iff ``served_at + maturity <= C``;
* label l counts for r iff the join keys are equal, ``served_at <= l.ts <= served_at +
  maturity`` and l was ingested at or before C. Ingestion time is the source's
  ``_ingested_at`` column when it has one (braid's stream archive does, §4.7); otherwise the
  label's own timestamp is taken as its ingestion time (a batch export carries no better
  evidence), so then "ingested by C" reads "timestamped by C";
* several labels: ``first`` or ``last`` by ``(ts, ingested_at)``, then by the label values
  (so the pick is deterministic); an entity-keyed label applies to every request of that
  entity whose window holds it;
* no label: ``missing="drop"`` drops r, ``missing="default"`` gives ``default_label``.

Feature values are the logged ones, as served. With ``backfill=entity_df``, the time before
logging started (the first ``served_at`` of the service's log) is filled with point-in-time
features ``as_of_known=True`` (what serving could have known) and the same label rule, with
``served_at`` = the entity row's timestamp; each row says its ``origin``.

Example:
    >>> ts = build_training_set(repo, "fraud_v1", cutoff=1_768_000_000_000)
    >>> ts.to_pandas()[["request_id", "user_id", "amount_sum_1h", "is_chargeback", "origin"]]
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from braid.compile.dialect import DUCKDB
from braid.definitions import BatchSource, LabelSource, StreamSource
from braid.duck import connect
from braid.errors import UnknownFeatureError, close_matches
from braid.logging.schema import LoggingError, LogSchema
from braid.logging.sink import logs_folder, parquet_glob
from braid.repo import Repo
from braid_batch import logjoin_sql as S

INGESTED_AT = "_ingested_at"
_TS = pa.timestamp("ms", tz="UTC")


@dataclass
class TrainingSet:
    """A log-and-wait training set: one row per (request, entity row), already computed."""

    table: pa.Table
    name: str
    service: str
    labels: str
    cutoff: int
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.table.num_rows

    def to_arrow(self) -> pa.Table:
        return self.table

    def to_pandas(self) -> Any:
        return self.table.to_pandas()

    def to_pylist(self) -> list[dict[str, Any]]:
        return self.table.to_pylist()

    def to_parquet(self, path: str | Path) -> Path:
        target = Path(path)
        pq.write_table(self.table, target)
        return target


def pick_labels(repo: Repo, schema: LogSchema, name: str | None) -> LabelSource:
    """The named label source, or the only one whose join keys the service's log has.

    Raises:
        UnknownFeatureError: unknown name, or no / several candidates.
    """
    if name is not None:
        if name not in repo.labels:
            raise UnknownFeatureError(
                f"unknown label source '{name}'.{close_matches(name, repo.labels)}")
        return repo.labels[name]
    have = {k for k, _ in schema.keys} | {"request_id"}
    fits = [lab for lab in repo.labels.values() if set(lab.join_on) <= have]
    if len(fits) != 1:
        which = ", ".join(sorted(lab.name for lab in fits)) or "none"
        raise UnknownFeatureError(
            f"service '{schema.service}': {len(fits)} label sources join on its keys "
            f"({which}); pass labels='<name>'")
    return fits[0]


def label_relation(label: LabelSource, root: Path) -> exp.Expression:
    """The FROM item of a label source: its batch data (a stream's batch twin / archive)."""
    src = label.source
    if isinstance(src, StreamSource):
        if src.batch is None:
            raise LoggingError(
                f"label source '{label.name}': stream '{src.name}' has no batch twin to read "
                "labels from; declare batch=BatchSource(...) (the runner archives into it)")
        src = src.batch
    assert isinstance(src, BatchSource)
    if src.query is not None:
        import sqlglot

        return exp.Subquery(this=sqlglot.parse_one(src.query, read="duckdb"))
    path = Path(src.path or "")
    full = path if path.is_absolute() else root / path
    return exp.Anonymous(this="read_parquet", expressions=[
        exp.Literal.string(str(full)),
        exp.EQ(this=exp.column("union_by_name"), expression=exp.true())])


def _columns(con: duckdb.DuckDBPyConnection, relation: exp.Expression) -> dict[str, str]:
    sql = DUCKDB.render(exp.select(exp.Star()).from_(relation.copy()))
    return {str(r[0]): str(r[1]) for r in con.execute(f"DESCRIBE {sql}").fetchall()}


def logged_relation(schema: LogSchema, glob: str) -> exp.Expression:
    src = exp.Anonymous(this="read_parquet", expressions=[
        exp.Literal.string(glob),
        exp.EQ(this=exp.column("union_by_name"), expression=exp.true())])
    cols = [S.q("request_id"), S.q("row"),
            exp.alias_(S.epoch(S.q("served_at"), True), "served_at", quoted=True),
            S.q("service_version"), *[S.q(k) for k, _ in schema.keys],
            *[S.q(c) for c in schema.columns], S.q("_partition"), S.q("_offset")]
    return exp.select(*cols).from_(src).subquery("logs")


def _backfill_relation(con: duckdb.DuckDBPyConnection, repo: Repo, schema: LogSchema,
                       entity_df: Any, timestamp_column: str) -> exp.Expression:
    from braid_batch.pit import get_historical_features

    shorts = [r.split(":", 1)[1] for r in schema.refs]
    full = list(schema.columns) != shorts
    hist = get_historical_features(repo, entity_df, list(schema.refs), as_of_known=True,
                                   timestamp_column=timestamp_column,
                                   full_feature_names=full).to_arrow()
    if full:  # keep the log's column names (short unless two views share a name)
        names = {r.replace(":", "__"): c for r, c in zip(schema.refs, schema.columns,
                                                          strict=True)}
        hist = hist.rename_columns([names.get(c, c) for c in hist.column_names])
    hist = hist.append_column("__bf_row", pa.array(range(hist.num_rows), pa.int32()))
    i = hist.schema.get_field_index(timestamp_column)
    ts_type = hist.schema.field(i).type
    if pa.types.is_timestamp(ts_type):  # pandas gives ns; epoch_ms wants one TIMESTAMPTZ type
        hist = hist.set_column(i, pa.field(timestamp_column, _TS), hist.column(i).cast(_TS))
    con.register("__braid_backfill_src", hist)
    cols = [exp.alias_(exp.Cast(this=exp.Null(), to=exp.DataType.build("VARCHAR")),
                       "request_id", quoted=True),
            exp.alias_(S.q("__bf_row"), "row", quoted=True),
            exp.alias_(S.epoch(S.q(timestamp_column), pa.types.is_timestamp(ts_type)),
                       "served_at", quoted=True),
            exp.alias_(exp.Cast(this=exp.Null(), to=exp.DataType.build("VARCHAR")),
                       "service_version", quoted=True),
            *[S.q(k) for k, _ in schema.keys], *[S.q(c) for c in schema.columns]]
    return exp.select(*cols).from_(exp.to_table("__braid_backfill_src", quoted=True)) \
        .subquery("bf")


def build_training_set(repo: Repo, service: str, labels: str | None = None,
                       start: int | None = None, end: int | None = None,
                       cutoff: int | None = None, backfill: Any = None,
                       timestamp_column: str = "event_timestamp") -> TrainingSet:
    """The training set of ``service``'s compacted logs and ``labels`` at ``cutoff``.

    Args:
        repo: the loaded repository (its logs must be compacted: ``store.flush_logs``).
        service: the feature service whose lookups were logged.
        labels: a LabelSource name (default: the only one joinable to the service).
        start, end: keep requests with ``start <= served_at < end`` (epoch ms).
        cutoff: C (epoch ms; default: now).
        backfill: an entity_df (keys + ``timestamp_column``) for the time before logging.

    Raises:
        UnknownFeatureError: unknown service or label source.
        LoggingError: no logs and no backfill, or labels that cannot join the log.
    """
    schema = LogSchema.for_service(repo, service)
    label = pick_labels(repo, schema, labels)
    cutoff = int(time.time() * 1000) if cutoff is None else cutoff
    keys = [k for k, _ in schema.keys]
    missing = [k for k in label.join_on if k not in keys and k != "request_id"]
    if missing:
        raise LoggingError(f"label source '{label.name}' joins on {missing}, which service "
                           f"'{service}' does not log (it logs request_id, {', '.join(keys)})")
    con = connect()
    glob = parquet_glob(logs_folder(repo.config, service))
    parts: list[str] = []
    mat = label.maturity
    if glob is not None:
        rel = logged_relation(schema, glob)
        parts.append(S.requests_sql(rel, keys, schema.columns, mat, cutoff, start, end,
                                    "logged", dedupe=True))
    if backfill is not None:
        first = None
        if glob is not None:
            sql = f"SELECT min(served_at) FROM {DUCKDB.render(rel)}"
            first = con.execute(sql).fetchall()[0][0]
        rel_bf = _backfill_relation(con, repo, schema, backfill, timestamp_column)
        end_bf = first if end is None or first is None else min(end, first)
        parts.append(S.requests_sql(rel_bf, keys, schema.columns, mat, cutoff, start, end_bf,
                                    "backfilled", dedupe=False))
    if not parts:
        raise LoggingError(f"service '{service}' has no logs under "
                           f"{logs_folder(repo.config, service)} and no backfill was given; "
                           "serve with log=True (then store.flush_logs()) or pass backfill=")
    union = " UNION ALL BY NAME ".join(f"({p})" for p in parts)
    con.execute(f'CREATE TEMP TABLE "{S.REQUESTS}" AS SELECT row_number() OVER () AS '
                f'"{S.RID}", * FROM ({union})')
    lrel = label_relation(label, repo.config.resolve("."))
    types = _columns(con, lrel)
    for c in [*label.join_on, *label.label_fields, label.timestamp_field]:
        if c not in types:
            raise LoggingError(f"label source '{label.name}': column '{c}' is not in its data"
                               f".{close_matches(c, types)}")
    ing = INGESTED_AT if INGESTED_AT in types else None
    con.execute(f'CREATE TEMP TABLE "{S.LABELS}" AS ' + S.labels_sql(
        lrel, label.join_on, label.label_fields, label.timestamp_field,
        types[label.timestamp_field].startswith("TIMESTAMP"), ing,
        ing is not None and types[ing].startswith("TIMESTAMP"), cutoff))
    table = con.sql(S.join_sql(keys, schema.columns, label.join_on, label.label_fields,
                               mat, label.duplicates, label.missing,
                               dict(label.default_label))).to_arrow_table()
    i = table.schema.get_field_index("served_at")
    table = table.set_column(i, pa.field("served_at", _TS), table.column(i).cast(_TS))
    params = {"service": service, "service_version": schema.version, "labels": label.name,
              "label_version": _hash(label.model_dump(mode="json")), "start": start,
              "end": end, "cutoff": cutoff, "backfill": backfill is not None}
    name = f"{service}.{label.name}.{_hash(params)[:12]}"
    return TrainingSet(table, name, service, label.name, cutoff, params)


def _hash(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
