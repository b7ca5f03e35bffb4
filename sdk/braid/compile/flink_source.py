"""Flink SQL for one StreamSource: raw Kafka table, validation, lateness, dead letters.

Per source ``s`` the compiler emits (DESIGN §4.0, §4.4, §4.5, §7 "Flink"):

* ``braid_src__s``: the topic read as raw UTF-8 text (``'format' = 'raw'``), plus the Kafka
  metadata ``partition``, ``offset``, ``timestamp`` and a processing-time column. With
  ``format = json`` a malformed record fails the job or is dropped silently (STACK.md).
* ``s__json``: for every schema column, the JSON text of its value (``JSON_QUERY ... WITH ARRAY
  WRAPPER``: ``[1]``, ``[1.5]``, ``["x"]``, ``[true]``, NULL when absent or null) and its string
  value (``JSON_VALUE``). Flink's ``JSON_VALUE ... RETURNING <type> NULL ON ERROR`` throws a
  ClassCastException on a wrongly typed value (PyFlink 2.0.0), so types are read from the text.
* ``s__typed``: typed columns and the first failing ``reason``: ``malformed_json`` (not a JSON
  object), ``missing_field`` (an entity key or the event time absent or null), ``wrong_type``
  (a present value of another JSON type, e.g. ``1.5`` or ``"1"`` for an int64, or out of the
  int64 range), ``naive_timestamp`` (an ISO-8601 time without a zone), ``non_finite`` (a
  float overflowing to +-inf; NaN is not JSON), ``future`` (event time > Kafka record
  timestamp + ``max_future_skew``).
* ``s__ordered``: the valid rows with ``M``, the running max event time of their partition.
* ``s__events``: the rows that are not late. Every view of the source reads it.

Times (the event time, the created time and every timestamp column) are read as the embedded
runner reads them (``parse_time`` in ``braid_streaming/ingest.py``), so both engines accept,
refuse and name the same events (DESIGN §4.8): a JSON integer is epoch milliseconds (outside
int64: ``wrong_type``); a string is ISO-8601 with a zone as Python 3.11's
``datetime.fromisoformat`` reads it (e.g. ``"2026-01-01T00:00:00+02:00"``), floored to the
millisecond; a zoneless one is ``naive_timestamp``; anything else ``wrong_type``. Flink SQL
has no such parser, so braid's Java UDFs ``braid_event_time`` (epoch ms or NULL) and
``braid_event_time_error`` (the reason or NULL) do it, from the value's JSON text and string.

The ``future`` check compares against the Kafka record timestamp, a property of the log, so a
replay decides the same way; with CreateTime topics written by braid's producer (record
timestamp = event time) it never fires, with LogAppendTime or a foreign producer it does.

Lateness (§4.4): ``M(p, o)`` is the max event time of valid events at offsets ``< o``; Flink
computes ``M'(p, o) = max(M(p, o), ts)`` (``ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW``,
the form measured on PyFlink 2.0.0). For ``L >= 0`` the tests agree: if ``ts >= M`` then
``M' = ts`` and ``ts < ts - L`` is false; otherwise ``M' = M``. Future events never raise M.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from braid.compile.algebra_sql import col, lit
from braid.compile.flink_dialect import (
    EVENT_TIME_ERROR_UDF,
    EVENT_TIME_UDF,
    FLINK_TYPES,
    IsJsonObject,
    JsonQueryWrapped,
    ident,
    render,
    string,
)
from braid.dtypes import DType
from braid.errors import DefinitionError
from braid.plan import SourcePlan

#: Dead-letter reasons produced in SQL.
REASONS = ("malformed_json", "missing_field", "wrong_type", "naive_timestamp", "non_finite",
           "future", "late")

PAYLOAD = "_k_payload"
PARTITION = "_k_partition"
OFFSET = "_k_offset"
KAFKA_TS = "_k_timestamp"
KAFKA_MS = "_k_timestamp_ms"
PROCTIME = "_k_proctime"
REASON = "_k_reason"
MAX_TS = "_k_max_ts"
_META = (PAYLOAD, PARTITION, OFFSET, KAFKA_MS, PROCTIME)

_INT = r"^\[-?[0-9]+\]$"
_NUMBER = r"^\[-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\]$"
_STRING = r'^\["'
_SIMPLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Startup:
    """Where a source starts reading (DESIGN §6.4: at the offsets for time ``C - L``).

    Attributes:
        mode: ``earliest-offset``, ``latest-offset``, ``timestamp`` or ``specific-offsets``.
        timestamp_ms: for ``timestamp``: the first record with a Kafka timestamp >= this.
        offsets: for ``specific-offsets``: partition -> first offset to read.
    """

    mode: str = "earliest-offset"
    timestamp_ms: int | None = None
    offsets: dict[int, int] = field(default_factory=dict)

    def options(self) -> dict[str, str]:
        """The Kafka connector's ``scan.startup.*`` options."""
        out = {"scan.startup.mode": self.mode}
        if self.mode == "timestamp":
            if self.timestamp_ms is None:
                raise DefinitionError("Startup(mode='timestamp') needs timestamp_ms=")
            out["scan.startup.timestamp-millis"] = str(max(self.timestamp_ms, 0))
        elif self.mode == "specific-offsets":
            if not self.offsets:
                raise DefinitionError("Startup(mode='specific-offsets') needs offsets=")
            out["scan.startup.specific-offsets"] = ";".join(
                f"partition:{p},offset:{o}" for p, o in sorted(self.offsets.items()))
        elif self.mode not in ("earliest-offset", "latest-offset"):
            raise DefinitionError(f"unknown startup mode {self.mode!r}")
        return out


def with_options(options: dict[str, str]) -> str:
    """A DDL ``WITH (...)`` clause; keys and values rendered as Flink string literals."""
    body = ",\n  ".join(f"{string(k)} = {string(v)}" for k, v in options.items())
    return f"WITH (\n  {body}\n)"


def _and(conds: list[exp.Expr]) -> exp.Expr:
    out = conds[0]
    for c in conds[1:]:
        out = exp.And(this=out, expression=c)
    return out


def _or(conds: Sequence[exp.Expr]) -> exp.Expr:
    out = conds[0]
    for c in conds[1:]:
        out = exp.Or(this=out, expression=c)
    return exp.Paren(this=out)


def _table(name: str) -> exp.Table:
    return exp.Table(this=exp.to_identifier(name, quoted=True))


def _is_null(e: exp.Expr) -> exp.Expr:
    return exp.Is(this=e, expression=exp.Null())


def _not_null(e: exp.Expr) -> exp.Expr:
    return exp.Not(this=exp.Paren(this=_is_null(e)))


def _regexp(e: exp.Expr, pattern: str) -> exp.Expr:
    return exp.RegexpLike(this=e, expression=exp.Literal.string(pattern))


def _try_cast(e: exp.Expr, flink_type: str) -> exp.Expr:
    return exp.TryCast(this=e, to=exp.DataType.build(flink_type))


def _time_args(name: str) -> list[exp.Expr]:
    return [col(f"_q__{name}"), col(f"_s__{name}")]


def _time_value(name: str) -> exp.Expr:
    """Epoch ms of time column ``name``, NULL when absent or refused (Java UDF)."""
    return exp.Anonymous(this=EVENT_TIME_UDF, expressions=_time_args(name))


def _time_error(name: str, reason: str) -> exp.Expr:
    """Time column ``name`` is refused for ``reason`` (NULL, i.e. not true, when absent)."""
    call = exp.Anonymous(this=EVENT_TIME_ERROR_UDF, expressions=_time_args(name))
    return exp.EQ(this=call, expression=exp.Literal.string(reason))


@dataclass(frozen=True)
class SourceSQL:
    """Renders the per-source tables and views of a :class:`SourcePlan` in Flink SQL.

    Example:
        >>> s = SourceSQL(plan.source, "localhost:9092", "fraud")
        >>> s.source_ddl(Startup())          # CREATE TABLE braid_src__transactions ...
    """

    source: SourcePlan
    bootstrap: str
    project: str
    keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in self.keys:
            if key not in self.source.columns:
                raise DefinitionError(
                    f"stream source '{self.source.name}': entity key '{key}' is not in its "
                    "schema; add it to schema="
                )
        for name, _ in self.source.schema:
            if not _SIMPLE_NAME.match(name) or name.startswith("_k_"):
                raise DefinitionError(
                    f"stream source '{self.source.name}': column {name!r} cannot be read by the "
                    "Flink job; use letters, digits and underscores, not starting with '_k_'"
                )

    # names
    @property
    def table(self) -> str:
        return f"braid_src__{self.source.name}"

    def view(self, stage: str) -> str:
        return f"{self.source.name}__{stage}"

    @property
    def events_view(self) -> str:
        """The relation every view of this source reads: valid, not late."""
        return self.view("events")

    # DDL
    def source_ddl(self, startup: Startup, bounded: bool = False) -> str:
        """``CREATE TABLE`` reading the topic as raw text with Kafka metadata."""
        options = {
            "connector": "kafka",
            "topic": self.source.topic or "",
            "properties.bootstrap.servers": self.bootstrap,
            "format": "raw",
            "raw.charset": "UTF-8",
            **startup.options(),
        }
        if bounded:
            options["scan.bounded.mode"] = "latest-offset"
        return (
            f"CREATE TABLE {ident(self.table)} (\n"
            f"  {ident(PAYLOAD)} STRING,\n"
            f"  {ident(PARTITION)} INT METADATA FROM 'partition' VIRTUAL,\n"
            f"  {ident(OFFSET)} BIGINT METADATA FROM 'offset' VIRTUAL,\n"
            f"  {ident(KAFKA_TS)} TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,\n"
            f"  {ident(PROCTIME)} AS PROCTIME()\n"
            f") {with_options(options)}"
        )

    def views(self) -> list[tuple[str, exp.Select]]:
        """``(name, query)`` of the temporary views, in dependency order."""
        return [
            (self.view("json"), self.json_query()),
            (self.view("typed"), self.typed_query()),
            (self.view("ordered"), self.ordered_query()),
            (self.events_view, self.events_query()),
        ]

    # queries
    def json_query(self) -> exp.Select:
        """Raw record -> metadata plus ``_q__c`` (JSON text) and ``_s__c`` (string) per column."""
        payload = col(PAYLOAD)
        kafka_ts = col(KAFKA_TS)
        # epoch ms of the record timestamp. Flink refuses CAST(TIMESTAMP_LTZ AS BIGINT) and
        # TIMESTAMPDIFF(SECOND, ..) is an INT (overflows in 2038): whole minutes since 1970,
        # plus the second and millisecond fields (EXTRACT(MILLISECOND) is within the second).
        epoch = exp.Anonymous(this="TO_TIMESTAMP_LTZ", expressions=[lit(0), lit(3)])
        minutes = exp.Anonymous(this="TIMESTAMPDIFF", expressions=[
            exp.Var(this="MINUTE"), epoch, kafka_ts])
        parts = [
            exp.Mul(this=exp.Cast(this=minutes, to=exp.DataType.build("BIGINT")),
                    expression=lit(60_000)),
            exp.Mul(this=exp.Extract(this=exp.Var(this="SECOND"), expression=kafka_ts.copy()),
                    expression=lit(1000)),
            exp.Extract(this=exp.Var(this="MILLISECOND"), expression=kafka_ts.copy()),
        ]
        kafka_ms = exp.Add(this=exp.Add(this=parts[0], expression=parts[1]), expression=parts[2])
        cols: list[exp.Expr] = [
            payload, col(PARTITION), col(OFFSET), exp.alias_(kafka_ms, KAFKA_MS, quoted=True),
            col(PROCTIME), exp.alias_(IsJsonObject(this=payload.copy()), "_k_ok", quoted=True),
        ]
        for name, _ in self.source.schema:
            path = exp.Literal.string(f"$.{name}")
            cols.append(exp.alias_(JsonQueryWrapped(this=payload.copy(), path=path), f"_q__{name}",
                                   quoted=True))
            cols.append(exp.alias_(exp.Anonymous(this="JSON_VALUE", expressions=[
                payload.copy(), path.copy()]), f"_s__{name}", quoted=True))
        return exp.select(*cols).from_(_table(self.table))

    @staticmethod
    def type_ok(dtype: DType, name: str) -> exp.Expr:
        """The JSON value of column ``name`` has braid type ``dtype`` (present values only)."""
        q, s = col(f"_q__{name}"), col(f"_s__{name}")
        if dtype in (DType.INT64, DType.TIMESTAMP):
            return exp.Paren(this=exp.And(this=_regexp(q, _INT),
                                          expression=_not_null(_try_cast(s, "BIGINT"))))
        if dtype == DType.FLOAT64:
            return _regexp(q, _NUMBER)
        if dtype == DType.STRING:
            return _regexp(q, _STRING)
        return exp.In(this=q, expressions=[exp.Literal.string("[true]"),
                                           exp.Literal.string("[false]")])

    @staticmethod
    def value(dtype: DType, name: str) -> exp.Expr:
        """The typed value of column ``name``, NULL unless :meth:`type_ok`."""
        s = col(f"_s__{name}")
        if dtype == DType.STRING:
            v: exp.Expr = s
        elif dtype == DType.BOOL:
            v = exp.EQ(this=s, expression=exp.Literal.string("true"))
        else:
            v = _try_cast(s, FLINK_TYPES[dtype])
        return exp.Case(ifs=[exp.If(this=SourceSQL.type_ok(dtype, name), true=v)])

    def time_columns(self) -> list[str]:
        """Columns read as times (epoch ms or zoned ISO-8601), in schema order: the event
        time, the created time and every timestamp column, as the embedded runner reads them."""
        src = self.source
        named = {src.timestamp_field, src.created_field}
        return [c for c, t in src.schema if c in named or t == DType.TIMESTAMP]

    def required(self) -> list[str]:
        """Columns that must be present: the event time and the entity keys of every view
        reading the source (validation is shared by the views, so a record missing any view's
        key is dead-lettered once rather than dropped silently by one view)."""
        return list(dict.fromkeys([self.source.timestamp_field, *self.keys]))

    def typed_query(self) -> exp.Select:
        """Typed columns plus the first failing dead-letter reason (NULL when valid)."""
        src = self.source
        required = self.required()
        times = self.time_columns()
        wrong = [_time_error(c, "wrong_type") if c in times
                 else exp.And(this=_not_null(col(f"_q__{c}")),
                              expression=exp.Not(this=self.type_ok(t, c)))
                 for c, t in src.schema]
        ts = _time_value(src.timestamp_field)
        checks: list[tuple[exp.Expr, str]] = [
            (exp.Not(this=exp.Paren(this=col("_k_ok"))), "malformed_json"),
            (_or([_is_null(col(f"_q__{c}")) for c in required]), "missing_field"),
            (_or(wrong), "wrong_type"),
            (_or([_time_error(c, "naive_timestamp") for c in times]), "naive_timestamp"),
        ]
        floats = [self.value(t, c) for c, t in src.schema if t == DType.FLOAT64]
        if floats:
            non_finite = [exp.Not(this=exp.Paren(this=exp.EQ(
                this=exp.Sub(this=f, expression=f.copy()), expression=lit(0)))) for f in floats]
            checks.append((_or([exp.And(this=_not_null(f.copy()), expression=n)
                                for f, n in zip(floats, non_finite, strict=True)]), "non_finite"))
        future = exp.GT(this=ts, expression=exp.Add(this=col(KAFKA_MS),
                                                    expression=lit(src.max_future_skew)))
        checks.append((future, "future"))
        reason = exp.Case(ifs=[exp.If(this=c, true=exp.Literal.string(r)) for c, r in checks])
        cols: list[exp.Expr] = [col(m) for m in _META]
        cols += [exp.alias_(_time_value(c) if c in times else self.value(t, c), c, quoted=True)
                 for c, t in src.schema]
        cols.append(exp.alias_(reason, REASON, quoted=True))
        return exp.select(*cols).from_(_table(self.view("json")))

    def ordered_query(self) -> exp.Select:
        """Valid rows with ``M'``: the running max event time of their Kafka partition."""
        ts = col(self.source.timestamp_field)
        running = exp.Window(
            this=exp.Max(this=ts),
            partition_by=[col(PARTITION)],
            order=exp.Order(expressions=[exp.Ordered(this=col(PROCTIME), nulls_first=True)]),
            spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING",
                                end="CURRENT ROW"),
        )
        cols: list[exp.Expr] = [col(m) for m in _META]
        cols += [col(c) for c, _ in self.source.schema]
        cols.append(exp.alias_(running, MAX_TS, quoted=True))
        return (exp.select(*cols).from_(_table(self.view("typed")))
                .where(_is_null(col(REASON))))

    def late_condition(self) -> exp.Expr:
        """``ts < M - L`` (DESIGN §4.4)."""
        bound = exp.Sub(this=col(MAX_TS), expression=lit(self.source.allowed_lateness))
        return exp.LT(this=col(self.source.timestamp_field), expression=bound)

    def events_query(self) -> exp.Select:
        cols = [col(m) for m in _META] + [col(c) for c, _ in self.source.schema]
        return (exp.select(*cols).from_(_table(self.view("ordered")))
                .where(exp.Not(this=exp.Paren(this=self.late_condition()))))

    # dead letters
    def dlq_query(self) -> exp.Expr:
        """Rejected and late records as dead-letter rows (reason, source, topic, partition,
        offset, payload), in the column order of :func:`dlq_ddl`."""
        def rows(relation: str, reason: exp.Expr, where: exp.Expr) -> exp.Select:
            return exp.select(
                exp.alias_(reason, "reason", quoted=True),
                exp.alias_(exp.Literal.string(self.source.name), "source", quoted=True),
                exp.alias_(exp.Literal.string(self.source.topic or ""), "topic", quoted=True),
                exp.alias_(col(PARTITION), "partition", quoted=True),
                exp.alias_(col(OFFSET), "offset", quoted=True),
                exp.alias_(col(PAYLOAD), "payload", quoted=True),
            ).from_(_table(relation)).where(where)

        rejected = rows(self.view("typed"), col(REASON), _not_null(col(REASON)))
        late = rows(self.view("ordered"), exp.Literal.string("late"), self.late_condition())
        return exp.union(rejected, late, distinct=False)


def dlq_table(project: str) -> str:
    return f"braid_dlq__{project}"


def dlq_topic(project: str) -> str:
    return f"braid.{project}.dlq"


def dlq_ddl(project: str, bootstrap: str) -> str:
    """The dead-letter sink: JSON records keyed by (topic, partition, offset) so a consumer
    can drop the duplicates an at-least-once restart may write."""
    options = {
        "connector": "kafka",
        "topic": dlq_topic(project),
        "properties.bootstrap.servers": bootstrap,
        "key.format": "json",
        "key.fields": "topic;partition;offset",
        "value.format": "json",
        "value.fields-include": "ALL",
        "sink.delivery-guarantee": "at-least-once",
    }
    cols = [("reason", "STRING"), ("source", "STRING"), ("topic", "STRING"),
            ("partition", "INT"), ("offset", "BIGINT"), ("payload", "STRING")]
    body = ",\n  ".join(f"{ident(n)} {t}" for n, t in cols)
    return f"CREATE TABLE {ident(dlq_table(project))} (\n  {body}\n) {with_options(options)}"


def render_view(name: str, query: exp.Expr) -> str:
    """``CREATE TEMPORARY VIEW name AS query``."""
    return f"CREATE TEMPORARY VIEW {ident(name)} AS\n{render(query)}"
