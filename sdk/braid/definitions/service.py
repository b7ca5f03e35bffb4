"""Feature services (what a model consumes) and label sources (what it learns from)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, field_serializer, field_validator, model_validator

from braid.definitions.base import Definition, Duration, check_name
from braid.definitions.sources import Source, source_schema
from braid.definitions.view import FeatureView, FeatureViewProjection
from braid.errors import UnknownFeatureError, close_matches

ScalerKind = Literal["standard", "minmax", "robust", "quantile"]


class LoggingConfig(Definition):
    """Log-and-wait settings of a service: sample rate of logged lookups."""

    name: str = "logging"
    sample_rate: float = 1.0

    @field_validator("sample_rate")
    @classmethod
    def _rate(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError("sample_rate must be within [0, 1]")
        return v


class FeatureService(Definition):
    """The features one model consumes, as views, view slices or "view:feature" strings.

    Example:
        >>> FeatureService(name="fraud_v1", features=[user_txn_stats, "user_profile:age"])
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    features: list[FeatureView | FeatureViewProjection | str]
    logging: LoggingConfig | None = None
    scalers: dict[str, ScalerKind] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("features")
    @classmethod
    def _refs(cls, v: list[Any]) -> list[Any]:
        if not v:
            raise ValueError("a feature service needs at least one feature")
        for item in v:
            if isinstance(item, str) and item.count(":") != 1:
                raise ValueError(f"feature reference {item!r} must look like 'view:feature'")
        return v

    @field_serializer("features")
    def _features_by_reference(self, items: list[Any]) -> list[str]:
        # Stored by reference: a view's cosmetic edit must not make a new service version.
        out: list[str] = []
        for item in items:
            if isinstance(item, FeatureView):
                out.append(f"{item.name}:*")
            elif isinstance(item, FeatureViewProjection):
                out += [f"{item.view.name}:{f}" for f in item.features]
            else:
                out.append(item)
        return out

    def references(self, views: dict[str, FeatureView]) -> list[str]:
        """Resolve to "view:feature" strings, checking every name against ``views``."""
        out: list[str] = []
        for item in self.features:
            if isinstance(item, FeatureView):
                out += [f"{item.name}:{f}" for f in item.feature_names]
            elif isinstance(item, FeatureViewProjection):
                out += [f"{item.view.name}:{f}" for f in item.features]
            else:
                out.append(item)
        for ref in out:
            resolve_reference(ref, views)
        return list(dict.fromkeys(out))


def resolve_reference(ref: str, views: dict[str, FeatureView]) -> tuple[FeatureView, str]:
    """Split "view:feature" and check both names; unknown names list close matches."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise UnknownFeatureError(f"feature reference {ref!r} must look like 'view:feature'")
    view_name, feature = ref.split(":")
    view = views.get(view_name)
    if view is None:
        raise UnknownFeatureError(
            f"unknown feature view '{view_name}' in {ref!r}.{close_matches(view_name, views)}"
        )
    if feature not in view.feature_names:
        raise UnknownFeatureError(
            f"view '{view_name}' has no feature '{feature}'."
            f"{close_matches(feature, view.feature_names)}"
        )
    return view, feature


class LabelSource(Definition):
    """Late-arriving labels joined to logged lookups (log-and-wait, DESIGN §8).

    A label counts for a request if its time is within ``maturity`` after the lookup.
    """

    source: Source
    join_on: list[str]
    label_fields: list[str]
    timestamp_field: str
    maturity: Duration = 7 * 86_400_000
    duplicates: Literal["first", "last"] = "last"
    missing: Literal["drop", "default"] = "drop"
    default_label: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @model_validator(mode="after")
    def _check(self) -> LabelSource:
        if not self.join_on or not self.label_fields:
            raise ValueError("join_on and label_fields must name at least one column each")
        schema = source_schema(self.source)
        if schema:
            for col in [*self.join_on, *self.label_fields, self.timestamp_field]:
                if col not in schema:
                    raise ValueError(
                        f"column '{col}' is not in source '{self.source.name}'."
                        f"{close_matches(col, schema)}"
                    )
        if self.missing == "default" and not self.default_label:
            raise ValueError("missing='default' needs default_label={field: value}")
        return self
