"""Definition models (DESIGN §3): frozen pydantic models validated at construction."""

from braid.algebra import AggFunction
from braid.definitions.entity import Entity
from braid.definitions.service import FeatureService, LabelSource, LoggingConfig
from braid.definitions.sources import BatchSource, Source, StreamSource, source_schema
from braid.definitions.view import (
    Aggregation,
    Feature,
    FeatureView,
    FeatureViewProjection,
    check_against_schema,
)

__all__ = [
    "AggFunction", "Aggregation", "BatchSource", "Entity", "Feature", "FeatureService",
    "FeatureView", "FeatureViewProjection", "LabelSource", "LoggingConfig", "Source",
    "StreamSource", "check_against_schema", "source_schema",
]
