"""braid: one feature definition, batch (DuckDB) and streaming (Flink or embedded) that agree.

Example:
    >>> import braid
    >>> store = braid.FeatureStore("feature_repo")
    >>> store.apply()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from braid.definitions import (
    AggFunction,
    Aggregation,
    BatchSource,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    LabelSource,
    LoggingConfig,
    StreamSource,
)
from braid.dtypes import DType
from braid.errors import (
    BraidError,
    DefinitionError,
    EntityKeyError,
    ExpressionError,
    RegistryError,
    RepoError,
    StoreError,
    TimestampError,
    UnknownFeatureError,
)

if TYPE_CHECKING:
    from braid.store import FeatureStore

__version__ = "0.1.0"

__all__ = [
    "AggFunction", "Aggregation", "BatchSource", "BraidError", "DType", "DefinitionError",
    "Entity", "EntityKeyError", "ExpressionError", "Feature", "FeatureService", "FeatureStore",
    "FeatureView", "LabelSource", "LoggingConfig", "RegistryError", "RepoError", "StoreError",
    "StreamSource", "TimestampError", "UnknownFeatureError",
]


def __getattr__(name: str) -> Any:
    # The facade pulls in the runtimes; keep `import braid` light (STYLE 12).
    if name == "FeatureStore":
        from braid.store import FeatureStore

        return FeatureStore
    raise AttributeError(f"module 'braid' has no attribute {name!r}")
