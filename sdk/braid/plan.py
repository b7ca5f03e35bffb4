"""The IR: an immutable, engine-neutral plan per feature view (DESIGN §2, §6.5).

A :class:`ViewPlan` is the lowering of a FeatureView: source -> validation -> lateness ->
filter -> projections -> tile aggregation / latest row. Its :attr:`ViewPlan.plan_hash`
covers everything that changes stored values (source, filter, expressions, windows, hops,
functions, keys), nothing cosmetic (descriptions, owners, tags), and names the view's storage
namespace.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

from braid.algebra import ALGEBRA, AggFunction, Spec
from braid.definitions import FeatureView, StreamSource, source_schema
from braid.definitions.sources import BatchSource
from braid.dtypes import DType
from braid.errors import DefinitionError
from braid.expr import TypedExpr, compile_expression

#: Input name of ``count()`` without a column.
ROWS_INPUT = "_rows"


@dataclass(frozen=True)
class SourcePlan:
    """Where a view's events come from, and how their time is read."""

    name: str
    schema: tuple[tuple[str, DType], ...]
    timestamp_field: str
    created_field: str | None
    path: str | None = None
    query: str | None = None
    topic: str | None = None
    allowed_lateness: int = 0
    max_future_skew: int = 0
    partitions: int = 1

    @property
    def columns(self) -> dict[str, DType]:
        return dict(self.schema)

    @property
    def is_stream(self) -> bool:
        return self.topic is not None


@dataclass(frozen=True)
class ProjectionPlan:
    """A projected feature: ``expr`` over source columns, served as ``dtype``."""

    name: str
    dtype: DType
    expr: TypedExpr
    default: object = None


@dataclass(frozen=True)
class PartialPlan:
    """One partial state kept per tile: ``function`` of input ``input`` at one hop."""

    input: str
    function: AggFunction
    hop: int
    input_type: DType | None

    @property
    def spec(self) -> Spec:
        return ALGEBRA[self.function]

    @property
    def columns(self) -> tuple[str, ...]:
        """Column names of its fields in the tiles table, e.g. ``amount__mean__s``."""
        return tuple(f"{self.input}__{self.function}__{f}" for f in self.spec.fields)

    @property
    def field_types(self) -> tuple[DType, ...]:
        return self.spec.field_types(self.input_type)


@dataclass(frozen=True)
class AggregationPlan:
    """A windowed feature: the finalized merge of its partial over the window's tiles."""

    name: str
    partial: PartialPlan
    window: int
    default: object = None

    @property
    def hop(self) -> int:
        return self.partial.hop

    @property
    def tiles(self) -> int:
        return self.window // self.partial.hop

    @property
    def dtype(self) -> DType:
        return self.partial.spec.output_type(self.partial.input_type)


@dataclass(frozen=True)
class ViewPlan:
    """Everything an engine needs to compute a view, and nothing cosmetic."""

    project: str
    name: str
    entity_keys: tuple[tuple[str, DType], ...]
    source: SourcePlan
    batch_source: SourcePlan | None
    filter: TypedExpr | None
    projections: tuple[ProjectionPlan, ...]
    inputs: tuple[tuple[str, TypedExpr | None], ...]
    partials: tuple[PartialPlan, ...]
    aggregations: tuple[AggregationPlan, ...]
    ttl: int | None
    online: bool = True
    offline: bool = True
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key_names(self) -> list[str]:
        return [k for k, _ in self.entity_keys]

    @property
    def hops(self) -> tuple[int, ...]:
        return tuple(sorted({p.hop for p in self.partials}))

    def partials_for_hop(self, hop: int) -> tuple[PartialPlan, ...]:
        """The partials of one hop, in plan order (the order of a Redis tile value)."""
        return tuple(p for p in self.partials if p.hop == hop)

    @property
    def feature_names(self) -> list[str]:
        return [p.name for p in self.projections] + [a.name for a in self.aggregations]

    @cached_property
    def plan_hash(self) -> str:
        """sha256 over the canonical JSON of the semantic plan (first 12 hex digits)."""
        return hashlib.sha256(canonical_json(self).encode()).hexdigest()[:12]

    @property
    def namespace(self) -> str:
        """Storage namespace: the view name and its plan hash (DESIGN §6.5)."""
        return f"{self.name}__{self.plan_hash}"


def canonical_json(plan: ViewPlan) -> str:
    """The semantic content of a plan as sorted JSON; the input of :attr:`plan_hash`."""
    def src(s: SourcePlan | None) -> object:
        if s is None:
            return None
        return {
            # sorted: declaration order does not change stored values (and JSON stores of
            # definitions sort keys, so a rebuilt definition must hash the same)
            "schema": sorted(s.schema), "ts": s.timestamp_field, "ct": s.created_field,
            "path": s.path, "query": s.query, "topic": s.topic,
            "lateness": s.allowed_lateness, "skew": s.max_future_skew,
        }

    body = {
        "keys": list(plan.entity_keys),
        "source": src(plan.source),
        "batch": src(plan.batch_source),
        "filter": plan.filter.render("duckdb") if plan.filter else None,
        "projections": [(p.name, p.dtype, p.expr.render("duckdb")) for p in plan.projections],
        "inputs": [(n, e.render("duckdb") if e else None) for n, e in plan.inputs],
        "partials": [(p.input, p.function, p.hop) for p in plan.partials],
        "aggregations": [(a.name, a.partial.input, a.partial.function, a.window, a.hop)
                         for a in plan.aggregations],
        "ttl": plan.ttl,
    }
    return json.dumps(body, sort_keys=True, default=str)


def _source_plan(source: BatchSource | StreamSource, schema: dict[str, DType]) -> SourcePlan:
    common = dict(
        name=source.name, schema=tuple(schema.items()), timestamp_field=source.timestamp_field,
        created_field=source.created_timestamp_field,
    )
    if isinstance(source, StreamSource):
        return SourcePlan(
            **common, topic=source.topic, allowed_lateness=source.allowed_lateness,  # type: ignore[arg-type]
            max_future_skew=source.max_future_skew, partitions=source.partitions,
        )
    return SourcePlan(**common, path=source.path, query=source.query)  # type: ignore[arg-type]


def lower(view: FeatureView, project: str, schema: dict[str, DType] | None = None) -> ViewPlan:
    """Lower a FeatureView to its plan. ``schema`` overrides an undeclared source schema.

    Raises:
        DefinitionError: if the source has no schema and none is given, or the view does not
            type-check against it.
    """
    schema = schema or source_schema(view.source)
    if not schema:
        raise DefinitionError(
            f"view '{view.name}': source '{view.source.name}' has no schema; declare schema= "
            "or let `braid plan` infer it from the data"
        )
    where = f"view '{view.name}'"
    flt = compile_expression(view.filter, schema, f"{where} filter", DType.BOOL) if view.filter else None
    projections = tuple(
        ProjectionPlan(
            f.name, f.dtype,
            compile_expression(f.expr or f.name, schema, f"{where} feature '{f.name}'"),
            f.default,
        )
        for f in view.features
    )
    inputs: dict[str, TypedExpr | None] = {}
    partials: dict[tuple[str, AggFunction, int], PartialPlan] = {}
    aggregations = []
    for a in view.aggregations:
        if a.column is None and a.expr is None:
            name, typed = ROWS_INPUT, None
        else:
            text = a.expr or a.column
            assert text is not None
            name = a.column or f"_e_{hashlib.sha256(text.encode()).hexdigest()[:8]}"
            typed = compile_expression(text, schema, f"{where} aggregation '{a.feature_name}'")
        inputs.setdefault(name, typed)
        key = (name, a.function, a.effective_hop)
        if key not in partials:
            partials[key] = PartialPlan(name, a.function, a.effective_hop,
                                        typed.dtype if typed else None)
        aggregations.append(AggregationPlan(a.feature_name, partials[key], a.window, a.default))
    batch = view.batch_source
    batch_schema = (batch.schema if batch is not None and batch.schema else schema)
    return ViewPlan(
        project=project,
        name=view.name,
        entity_keys=tuple(view.entity_keys.items()),
        source=_source_plan(view.source, schema),
        batch_source=_source_plan(batch, batch_schema) if batch is not None else None,
        filter=flt,
        projections=projections,
        inputs=tuple(inputs.items()),
        partials=tuple(sorted(partials.values(), key=lambda p: (p.hop, p.input, p.function))),
        aggregations=tuple(aggregations),
        ttl=view.ttl,
        online=view.online,
        offline=view.offline,
        meta={"owner": view.owner, "description": view.description},
    )
