"""Sources: where events come from. BatchSource (Parquet or SQL) and StreamSource (a topic)."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from braid.definitions.base import Definition, Duration, Schema, check_name
from braid.dtypes import DType

_TIME_TYPES = (DType.TIMESTAMP, DType.INT64)


def _check_time_fields(src: BatchSource | StreamSource) -> None:
    schema = src.schema_ or {}
    for field in (src.timestamp_field, src.created_timestamp_field):
        if field is None or not schema:
            continue
        if field not in schema:
            raise ValueError(f"time field '{field}' is not in the schema ({', '.join(schema)})")
        if schema[field] not in _TIME_TYPES:
            raise ValueError(
                f"time field '{field}' must be timestamp (or int64 epoch ms), got {schema[field]}"
            )


class BatchSource(Definition):
    """Events at rest: Parquet files (a glob, relative to the repo) or a DuckDB SQL query.

    Example:
        >>> BatchSource(name="profiles", path="data/profiles/*.parquet",
        ...             timestamp_field="updated_at", schema={"user_id": "int64", ...})
    """

    path: str | None = None
    query: str | None = None
    timestamp_field: str
    created_timestamp_field: str | None = None
    schema_: Schema | None = None

    def __init__(self, **data: object) -> None:
        if "schema" in data:
            data["schema_"] = data.pop("schema")
        super().__init__(**data)

    @property
    def schema(self) -> dict[str, DType] | None:  # type: ignore[override]
        return self.schema_

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @model_validator(mode="after")
    def _one_location(self) -> BatchSource:
        if (self.path is None) == (self.query is None):
            raise ValueError("give exactly one of path= (a Parquet glob) or query= (DuckDB SQL)")
        _check_time_fields(self)
        return self


class StreamSource(Definition):
    """Events in motion: a topic of JSON records, with a batch twin holding the same events.

    Lateness (DESIGN §4.4) is decided on the log: an event is late if its time is more than
    ``allowed_lateness`` behind the greatest event time seen earlier in its partition.

    Example:
        >>> StreamSource(name="transactions", topic="transactions", timestamp_field="ts",
        ...              schema={...}, batch=BatchSource(...))
    """

    topic: str
    schema_: Schema
    timestamp_field: str
    created_timestamp_field: str | None = None
    format: Literal["json"] = "json"
    allowed_lateness: Duration = 3_600_000
    max_future_skew: Duration = 300_000
    partitions: int = 1
    batch: BatchSource | None = None

    def __init__(self, **data: object) -> None:
        if "schema" in data:
            data["schema_"] = data.pop("schema")
        super().__init__(**data)

    @property
    def schema(self) -> dict[str, DType]:  # type: ignore[override]
        return self.schema_

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("partitions")
    @classmethod
    def _partitions(cls, v: int) -> int:
        if v < 1:
            raise ValueError("partitions must be >= 1")
        return v

    @model_validator(mode="after")
    def _check(self) -> StreamSource:
        if not self.schema_:
            raise ValueError("a stream source needs a schema (column -> type)")
        _check_time_fields(self)
        if self.timestamp_field not in self.schema_:
            raise ValueError(f"timestamp_field '{self.timestamp_field}' is not in the schema")
        if self.batch is not None and self.batch.schema_:
            for col, dtype in self.schema_.items():
                other = self.batch.schema_.get(col)
                if other is not None and other != dtype and {other, dtype} != set(_TIME_TYPES):
                    raise ValueError(
                        f"batch twin '{self.batch.name}' types column '{col}' as {other}, "
                        f"the stream as {dtype}"
                    )
        return self


Source = BatchSource | StreamSource


def source_schema(source: Source) -> dict[str, DType] | None:
    """The declared schema of a source; for a stream without one, its batch twin's."""
    if source.schema_:
        return dict(source.schema_)
    if isinstance(source, StreamSource) and source.batch is not None:
        return source.batch.schema
    return None
