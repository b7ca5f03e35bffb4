"""The Flink compiler: every streaming aggregation view of a project -> one Flink SQL job.

Output (DESIGN §7 "Flink"): job settings (UTC, mini-batch, checkpointing, state TTL), braid's
UDAFs and UDFs, per StreamSource a raw Kafka table and the validation/lateness views of
:mod:`braid.compile.flink_source`, one dead-letter sink, per view an upsert-kafka tiles sink,
and ONE statement set holding every INSERT.

Tiles are absolute states: a streaming ``GROUP BY keys, tile_start`` over the accepted events,
emitted as upserts keyed by (entity keys, hop, tile_start) to ``braid.<project>.<view>.tiles``.
The partial columns are the algebra table's build rendering (:func:`algebra_sql.build` with
:data:`FLINK`); a row of one hop carries NULL in the columns of the view's other hops.

Example:
    >>> job = FlinkCompiler("fraud", plans, bootstrap="localhost:9092").compile()
    >>> print(job.text())                # SET ...; CREATE ...; EXECUTE STATEMENT SET BEGIN ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from braid.compile import algebra_sql as A
from braid.compile.duckdb import TILE_START, tile_start_expr
from braid.compile.events import events_select
from braid.compile.flink_dialect import (
    EVENT_TIME_ERROR_UDF,
    EVENT_TIME_UDF,
    FLINK,
    FLINK_TYPES,
    INT_SUM_UDAF,
    LATEST_UDAF,
    WELFORD_UDAF,
    ident,
    render,
)
from braid.compile.flink_source import (
    SourceSQL,
    Startup,
    dlq_ddl,
    dlq_table,
    render_view,
    with_options,
)
from braid.dtypes import DType
from braid.plan import SourcePlan, ViewPlan
from braid.timeutil import DAY

HOP = "hop"

#: Java classes of braid's UDAFs and UDFs (sources in braid_streaming/flink/java).
UDAF_CLASSES: dict[str, str] = {
    LATEST_UDAF: "dev.braid.flink.Latest",
    WELFORD_UDAF: "dev.braid.flink.Welford",
    INT_SUM_UDAF: "dev.braid.flink.ExactSum",
    EVENT_TIME_UDF: "dev.braid.flink.EventTime",
    EVENT_TIME_ERROR_UDF: "dev.braid.flink.EventTimeError",
}


@dataclass(frozen=True)
class FlinkJob:
    """A compiled Flink SQL job, statement by statement, and as one script.

    Attributes:
        settings: job configuration (``SET 'key' = 'value'``).
        functions: ``CREATE TEMPORARY FUNCTION`` statements of braid's UDAFs and UDFs.
        tables: ``CREATE TABLE`` statements (sources and sinks).
        views: ``CREATE TEMPORARY VIEW`` statements (validation, lateness).
        inserts: the ``INSERT INTO`` statements of the one statement set.
        notes: comments on what was skipped and why.
    """

    settings: dict[str, str]
    functions: list[str]
    tables: list[str]
    views: list[str]
    inserts: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def ddl(self) -> list[str]:
        """Statements to run before the statement set, in order."""
        return [*self.functions, *self.tables, *self.views]

    def text(self) -> str:
        """The job as one Flink SQL script (for ``sql-client.sh -f`` or review)."""
        out = [f"-- {n}" for n in self.notes]
        out += [f"SET '{k}' = '{v}';" for k, v in self.settings.items()]
        out += [s + ";" for s in self.ddl]
        if self.inserts:
            out.append("EXECUTE STATEMENT SET BEGIN")
            out += [s + ";" for s in self.inserts]
            out.append("END;")
        return "\n\n".join(out) + "\n"


def tiles_topic(plan: ViewPlan) -> str:
    """``braid.<project>.<view>.tiles`` (DESIGN §7)."""
    return f"braid.{plan.project}.{plan.name}.tiles"


def tiles_table(plan: ViewPlan) -> str:
    return f"braid_tiles__{plan.name}"


def partial_columns(plan: ViewPlan) -> dict[str, DType]:
    """The value columns of a view's tiles topic: every partial column of every hop, once.

    A partial kept at two hops has the same columns; its rows differ by ``hop``.
    """
    out: dict[str, DType] = {}
    for p in plan.partials:
        out.update(zip(p.columns, p.field_types, strict=True))
    return out


def skip_reason(plan: ViewPlan) -> str | None:
    """Why a view has no Flink job (None if it compiles)."""
    if not plan.source.is_stream:
        return f"view {plan.name}: batch source '{plan.source.name}', computed by DuckDB only"
    if not plan.partials:
        return f"view {plan.name}: projections only, not computed by the Flink job"
    return None


@dataclass(frozen=True)
class FlinkCompiler:
    """Compiles the streaming aggregation views of one project into one :class:`FlinkJob`.

    Args:
        project: the project name (topic names, pipeline name).
        plans: every view plan of the project; views that do not compile are noted and skipped.
        bootstrap: Kafka bootstrap servers.
        startup: per source name, where to start reading; default: the Kafka timestamp
            ``min(C) - L`` over the source's cutoffs if any (DESIGN §6.4), else the earliest
            offset.
        cutoffs: per (view name, hop ms) the tile ownership cutoff C: only tiles with
            ``tile_start >= C`` are written.
        bounded: stop at the latest offsets seen at start (tests, replays).
        checkpoint_interval_ms: checkpoint interval (DESIGN §7: ~1 s locally).
        checkpoint_dir: where retained checkpoints go (e.g. ``file:///.../data/flink``).
        state_ttl_margin_ms: added to the largest ``hop + L`` for ``table.exec.state.ttl``.
        parallelism: default operator parallelism.
        restart_attempts: restarts in a row (no hour of health between them) before the
            job fails.
    """

    project: str
    plans: Sequence[ViewPlan]
    bootstrap: str
    startup: Mapping[str, Startup] = field(default_factory=dict)
    cutoffs: Mapping[tuple[str, int], int] = field(default_factory=dict)
    bounded: bool = False
    checkpoint_interval_ms: int = 1000
    checkpoint_dir: str | None = None
    state_ttl_margin_ms: int = DAY
    parallelism: int = 1
    restart_attempts: int = 10

    @property
    def views(self) -> list[ViewPlan]:
        """The plans that compile to Flink."""
        return [p for p in self.plans if skip_reason(p) is None]

    def sources(self) -> dict[str, SourceSQL]:
        """Per source name, its SQL renderer (keys: the union of its views' entity keys)."""
        keys: dict[str, list[str]] = {}
        plans: dict[str, SourcePlan] = {}
        for v in self.views:
            plans[v.source.name] = v.source
            keys.setdefault(v.source.name, []).extend(v.key_names)
        return {name: SourceSQL(src, self.bootstrap, self.project,
                                tuple(dict.fromkeys(keys[name])))
                for name, src in plans.items()}

    def state_ttl_ms(self) -> int:
        """TTL of the tile states: the largest hop + allowed lateness, plus the margin. It
        also bounds the per-partition running max of §4.4 (an idle partition longer than the
        TTL forgets M: the online writer's count guard absorbs a re-emitted tile)."""
        spans = [max(v.hops) + v.source.allowed_lateness for v in self.views]
        return max(spans, default=0) + self.state_ttl_margin_ms

    def settings(self) -> dict[str, str]:
        out = {
            "pipeline.name": f"braid-{self.project}",
            "execution.runtime-mode": "streaming",
            "table.local-time-zone": "UTC",
            "parallelism.default": str(self.parallelism),
            "table.exec.mini-batch.enabled": "true",
            "table.exec.mini-batch.allow-latency": "1 s",
            "table.exec.mini-batch.size": "5000",
            "table.exec.state.ttl": f"{self.state_ttl_ms()} ms",
            "execution.checkpointing.interval": f"{self.checkpoint_interval_ms} ms",
            "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
            # transient failures (a broker or sink outage) restart from the last checkpoint,
            # 1 s, 2 s, ... up to 1 min apart; the 10th in a row without an hour of health
            # between them fails the job (Flink's default retries forever). An int64 overflow
            # fails it at once (braid_exact_sum suppresses restarts).
            "restart-strategy.type": "exponential-delay",
            "restart-strategy.exponential-delay.initial-backoff": "1 s",
            "restart-strategy.exponential-delay.max-backoff": "1 min",
            "restart-strategy.exponential-delay.backoff-multiplier": "2.0",
            "restart-strategy.exponential-delay.reset-backoff-threshold": "1 h",
            "restart-strategy.exponential-delay.attempts-before-reset-backoff":
                str(self.restart_attempts),
        }
        if self.checkpoint_dir:
            out["execution.checkpointing.dir"] = self.checkpoint_dir
        return out

    def startup_for(self, source: SourcePlan) -> Startup:
        if source.name in self.startup:
            return self.startup[source.name]
        cuts = [c for (view, _), c in self.cutoffs.items()
                if any(v.name == view and v.source.name == source.name for v in self.views)]
        if cuts:
            return Startup("timestamp", timestamp_ms=min(cuts) - source.allowed_lateness)
        return Startup()

    # per view
    def tiles_ddl(self, plan: ViewPlan) -> str:
        """The upsert-kafka sink of a view's tiles: key = entity keys, hop, tile_start."""
        cols = [(k, FLINK_TYPES[t] + " NOT NULL") for k, t in plan.entity_keys]
        cols += [(HOP, "BIGINT NOT NULL"), (TILE_START, "BIGINT NOT NULL")]
        cols += [(c, FLINK_TYPES[t]) for c, t in partial_columns(plan).items()]
        pk = ", ".join(ident(c) for c in [*plan.key_names, HOP, TILE_START])
        body = ",\n  ".join(f"{ident(n)} {t}" for n, t in cols)
        options = {
            "connector": "upsert-kafka",
            "topic": tiles_topic(plan),
            "properties.bootstrap.servers": self.bootstrap,
            "key.format": "json",
            "value.format": "json",
            "value.fields-include": "EXCEPT_KEY",
            "sink.buffer-flush.max-rows": "1000",
            "sink.buffer-flush.interval": "1 s",
        }
        return (f"CREATE TABLE {ident(tiles_table(plan))} (\n  {body},\n"
                f"  PRIMARY KEY ({pk}) NOT ENFORCED\n) {with_options(options)}")

    def events(self, plan: ViewPlan, source: SourceSQL) -> exp.Select:
        """The view's events (keys, _ts, _ct, inputs) over the source's accepted events.

        Aggregation inputs are cast to their braid type: a Flink integer literal is an INT,
        and ``SUM(INT)`` stays INT (STACK.md), so ``CASE WHEN .. THEN 1 ELSE 0 END`` would
        otherwise sum in 32 bits and pick no UDAF overload.
        """
        relation = exp.Table(this=exp.to_identifier(source.events_view, quoted=True))
        select = events_select(plan, plan.source, relation, timestamp_to_ms=exp.Placeholder())
        types = {name: typed.dtype for name, typed in plan.inputs if typed is not None}
        for e in select.expressions:
            if isinstance(e, exp.Alias) and types.get(e.alias) is not None:
                dtype = types[e.alias]
                assert dtype is not None
                e.set("this", exp.Cast(this=e.this, to=exp.DataType.build(FLINK_TYPES[dtype])))
        return select

    def tiles_query(self, plan: ViewPlan, hop: int, events: exp.Select) -> exp.Select:
        """``SELECT keys, hop, tile_start, partials GROUP BY keys, tile_start`` for one hop."""
        keys = [A.col(k) for k in plan.key_names]
        staged = exp.select(exp.Star(), exp.alias_(tile_start_expr(hop), TILE_START, quoted=True)) \
            .from_(events.subquery("e"))
        cutoff = self.cutoffs.get((plan.name, hop))
        if cutoff is not None:
            staged = staged.where(exp.GTE(this=tile_start_expr(hop), expression=A.lit(cutoff)))
        built: dict[str, exp.Expr] = {}
        for p in plan.partials_for_hop(hop):
            built.update(zip(p.columns, A.build(p, FLINK), strict=True))
        cols: list[exp.Expr] = [*keys, exp.alias_(A.as_bigint(A.lit(hop)), HOP, quoted=True),
                                      A.col(TILE_START)]
        for c, t in partial_columns(plan).items():
            e = built.get(c, exp.Cast(this=exp.Null(), to=exp.DataType.build(FLINK_TYPES[t])))
            cols.append(exp.alias_(e, c, quoted=True))
        return (exp.select(*cols).from_(staged.subquery("t"))
                .group_by(*[k.copy() for k in keys], A.col(TILE_START)))

    def compile(self) -> FlinkJob:
        """The job of every compiling view; notes name the skipped ones."""
        notes = [f"braid project {self.project}: Flink job (compiled by braid; do not edit)"]
        notes += [f"skipped {r}" for p in self.plans if (r := skip_reason(p)) is not None]
        sources = self.sources()
        functions = [
            f"CREATE TEMPORARY FUNCTION IF NOT EXISTS {ident(name)} AS '{cls}' LANGUAGE JAVA"
            for name, cls in UDAF_CLASSES.items()
        ]
        tables: list[str] = []
        views: list[str] = []
        inserts: list[str] = []
        if sources:
            tables.append(dlq_ddl(self.project, self.bootstrap))
        for s in sources.values():
            tables.append(s.source_ddl(self.startup_for(s.source), self.bounded))
            views += [render_view(n, q) for n, q in s.views()]
            inserts.append(f"INSERT INTO {ident(dlq_table(self.project))}\n{render(s.dlq_query())}")
        for plan in self.views:
            if plan.projections:
                notes.append(f"view {plan.name}: projections are not computed by the Flink job")
            tables.append(self.tiles_ddl(plan))
            events = self.events(plan, sources[plan.source.name])
            for hop in plan.hops:
                query = self.tiles_query(plan, hop, events)
                inserts.append(f"INSERT INTO {ident(tiles_table(plan))}\n{render(query)}")
        return FlinkJob(self.settings(), functions, tables, views, inserts, notes)


def compile_project(project: str, plans: Sequence[ViewPlan], bootstrap: str,
                    **options: object) -> str:
    """The Flink SQL script of a project (``braid flink compile``)."""
    return FlinkCompiler(project, plans, bootstrap, **options).compile().text()  # type: ignore[arg-type]
