"""Feature views: projections (latest row) and windowed aggregations over one source."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from braid.algebra import ALGEBRA, AggFunction
from braid.definitions.base import Definition, Duration, Model, check_name
from braid.definitions.entity import Entity
from braid.definitions.sources import BatchSource, Source, StreamSource, source_schema
from braid.dtypes import DType
from braid.errors import DefinitionError, UnknownFeatureError, close_matches
from braid.expr import compile_expression
from braid.timeutil import default_hop, format_duration, parse_duration


class Feature(Model):
    """A projection: a source column or a SQL expression over source columns.

    ``default`` is served instead of NULL (no row, or a row older than the view's ttl).
    """

    name: str
    dtype: DType
    expr: str | None = None
    default: Any = None
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, v: Any) -> DType:
        return DType.parse(v)


class Aggregation(Model):
    """A windowed aggregation: ``function`` of ``column`` (or ``expr``) over ``window``.

    The default name is ``{column}_{function}_{window}``, e.g. ``amount_sum_1h``; ``count`` may
    omit the column (``count_1h``). The default hop is the smallest of 1m, 5m, 1h, 1d dividing
    the window into at most 48 tiles (DESIGN §4.2): the value at t covers the complete tiles of
    the window plus the current tile up to t, so its length is between ``window - hop`` and
    ``window``.
    """

    function: AggFunction
    window: Duration
    column: str | None = None
    expr: str | None = None
    hop: Duration | None = None
    name: str | None = None
    default: Any = None
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        # The default name keeps the window as written ("24h" stays "24h", not "1d").
        if isinstance(data, dict) and not data.get("name") and not data.get("expr"):
            window = data.get("window")
            if isinstance(window, str):
                label = window.replace(" ", "")
            else:
                try:
                    label = format_duration(parse_duration(window))  # type: ignore[arg-type]
                except DefinitionError:
                    return data
            prefix = f"{data['column']}_" if data.get("column") else ""
            function = data.get("function")
            function = function.value if isinstance(function, AggFunction) else function
            data = {**data, "name": f"{prefix}{function}_{label}"}
        return data

    @model_validator(mode="after")
    def _check(self) -> Aggregation:
        spec = ALGEBRA[self.function]
        if self.column is not None and self.expr is not None:
            raise ValueError("give column= or expr=, not both")
        if self.column is None and self.expr is None and not spec.input_optional:
            raise ValueError(f"{self.function} needs column= or expr=")
        if self.expr is not None and self.name is None:
            raise ValueError("an aggregation of an expr needs name=")
        if self.name is not None:
            check_name(self.name)
        if self.hop is not None and self.window % self.hop != 0:
            raise ValueError(
                f"hop {format_duration(self.hop)} does not divide window "
                f"{format_duration(self.window)}"
            )
        if self.hop is None:
            try:
                default_hop(self.window, f"aggregation {self.feature_name}")
            except DefinitionError as e:
                raise ValueError(str(e)) from None
        return self

    @property
    def feature_name(self) -> str:
        assert self.name is not None  # set by _default_name
        return self.name

    @property
    def effective_hop(self) -> int:
        return self.hop if self.hop is not None else default_hop(self.window)


class FeatureView(Definition):
    """Features of one or more entities computed from one source.

    Example (feature_repo/features.py):
        >>> FeatureView(name="user_txn_stats", entities=[user], source=transactions,
        ...     aggregations=[Aggregation(column="amount", function="sum", window="1h")])
    """

    entities: list[Entity]
    source: Source
    filter: str | None = None
    features: list[Feature] = []
    aggregations: list[Aggregation] = []
    ttl: Duration | None = None
    online: bool = True
    offline: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @model_validator(mode="after")
    def _check(self) -> FeatureView:
        if not self.entities:
            raise ValueError("a feature view needs at least one entity")
        if not self.features and not self.aggregations:
            raise ValueError("a feature view needs features= or aggregations=")
        seen: dict[str, str] = {}
        for entity in self.entities:
            for key in entity.join_keys:
                _claim(seen, key, f"join key of entity '{entity.name}'")
        for f in self.features:
            _claim(seen, f.name, "feature")
        for a in self.aggregations:
            _claim(seen, a.feature_name, "aggregation")
        schema = source_schema(self.source)
        if schema is not None:
            try:
                check_against_schema(self, schema)
            except DefinitionError as e:
                raise ValueError(str(e).removeprefix(f"view '{self.name}': ")) from None
        return self

    @property
    def entity_keys(self) -> dict[str, DType]:
        """Join keys of all entities, in declaration order."""
        out: dict[str, DType] = {}
        for e in self.entities:
            out.update(e.join_keys)
        return out

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features] + [a.feature_name for a in self.aggregations]

    @property
    def batch_source(self) -> BatchSource | None:
        """The source a backfill reads: the source itself, or a stream's batch twin."""
        if isinstance(self.source, StreamSource):
            return self.source.batch
        return self.source

    def __getitem__(self, names: list[str]) -> FeatureViewProjection:
        """``view[["f1", "f2"]]`` selects some features for a FeatureService."""
        for n in names:
            if n not in self.feature_names:
                raise UnknownFeatureError(
                    f"view '{self.name}' has no feature '{n}'."
                    f"{close_matches(n, self.feature_names)}"
                )
        return FeatureViewProjection(view=self, features=tuple(names))


class FeatureViewProjection(BaseModel):
    """Some features of a view, as written ``view[["f1", "f2"]]``."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    view: FeatureView
    features: tuple[str, ...]


def _claim(seen: dict[str, str], name: str, what: str) -> None:
    if name in seen:
        raise ValueError(f"duplicate name '{name}' ({what}, already a {seen[name]})")
    seen[name] = what


def check_against_schema(view: FeatureView, schema: dict[str, DType]) -> None:
    """Check keys, filter, feature expressions and aggregation inputs against ``schema``.

    Raises:
        DefinitionError: naming the view, the field and the problem.
    """
    where = f"view '{view.name}'"
    for key, dtype in view.entity_keys.items():
        if key not in schema:
            raise DefinitionError(
                f"{where}: entity key '{key}' is not a column of source '{view.source.name}' "
                f"({', '.join(schema)}).{close_matches(key, schema)}"
            )
        if schema[key] != dtype:
            raise DefinitionError(
                f"{where}: entity key '{key}' is {dtype} in the entity but {schema[key]} in "
                f"source '{view.source.name}'"
            )
    if view.filter is not None:
        compile_expression(view.filter, schema, f"{where} filter", expect=DType.BOOL)
    for f in view.features:
        text = f.expr if f.expr is not None else f.name
        typed = compile_expression(text, schema, f"{where} feature '{f.name}'")
        if typed.dtype is not None and typed.dtype != f.dtype and not (
            f.dtype == DType.FLOAT64 and typed.dtype == DType.INT64
        ):
            raise DefinitionError(
                f"{where} feature '{f.name}': declared {f.dtype} but {text!r} is {typed.dtype}"
            )
    for a in view.aggregations:
        spec = ALGEBRA[a.function]
        source_text = a.expr if a.expr is not None else a.column
        if source_text is None:
            continue
        typed = compile_expression(source_text, schema, f"{where} aggregation '{a.feature_name}'")
        if spec.needs_numeric and (typed.dtype is None or not typed.dtype.is_numeric):
            raise DefinitionError(
                f"{where} aggregation '{a.feature_name}': {a.function} needs a number, "
                f"{source_text!r} is {typed.dtype}"
            )
