"""The closed set of column types braid knows, and their names in each engine."""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa


class DType(StrEnum):
    """A column type. Timestamps are int64 epoch milliseconds inside braid (DESIGN §4.0)."""

    INT64 = "int64"
    FLOAT64 = "float64"
    STRING = "string"
    BOOL = "bool"
    TIMESTAMP = "timestamp"

    @property
    def is_numeric(self) -> bool:
        return self in (DType.INT64, DType.FLOAT64)

    @property
    def arrow(self) -> pa.DataType:
        return _ARROW[self]

    @classmethod
    def parse(cls, value: str | DType, what: str = "type") -> DType:
        """Accept the canonical names and a few common aliases ("int", "double", "str")."""
        if isinstance(value, DType):
            return value
        key = str(value).strip().lower()
        if key in _ALIASES:
            return _ALIASES[key]
        from braid.errors import DefinitionError, close_matches

        raise DefinitionError(
            f"{what}: unknown type {value!r}; use one of "
            f"{', '.join(t.value for t in cls)}.{close_matches(key, _ALIASES)}"
        )


_ARROW: dict[DType, pa.DataType] = {
    DType.INT64: pa.int64(),
    DType.FLOAT64: pa.float64(),
    DType.STRING: pa.string(),
    DType.BOOL: pa.bool_(),
    DType.TIMESTAMP: pa.timestamp("ms", tz="UTC"),
}

_ALIASES: dict[str, DType] = {
    "int64": DType.INT64, "int": DType.INT64, "bigint": DType.INT64, "integer": DType.INT64,
    "long": DType.INT64, "int32": DType.INT64,
    "float64": DType.FLOAT64, "float": DType.FLOAT64, "double": DType.FLOAT64,
    "float32": DType.FLOAT64,
    "string": DType.STRING, "str": DType.STRING, "varchar": DType.STRING, "text": DType.STRING,
    "bool": DType.BOOL, "boolean": DType.BOOL,
    "timestamp": DType.TIMESTAMP, "datetime": DType.TIMESTAMP,
}
