"""Shared pieces of the definition models: frozen config, names, durations, schemas."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from braid.dtypes import DType
from braid.errors import DefinitionError
from braid.timeutil import parse_duration

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class Model(BaseModel):
    """Frozen, validated at construction, unknown fields refused.

    A pydantic ValidationError is re-raised as :class:`DefinitionError` whose one-line message
    names the object, the field and the problem.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            name = data.get("name") or data.get("column") or data.get("expr")
            raise DefinitionError(_describe(type(self).__name__, name, e)) from None


class Definition(Model):
    """Base of every named, registered definition."""

    name: str
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = {}

    @property
    def kind(self) -> str:
        return type(self).__name__


def _describe(kind: str, name: Any, error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    field = f" field '{where}':" if where else ""
    msg = str(first["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{kind} {name!r}:{field} {msg}{more}"


def check_name(value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"name {value!r} must be lower_snake_case (letters, digits, underscores; "
            "not starting with a digit)"
        )
    return value


def _duration(value: Any) -> int:
    if isinstance(value, (str, int, dt.timedelta)):
        try:
            return parse_duration(value)
        except DefinitionError as e:
            raise ValueError(str(e)) from None
    raise ValueError(f"expected a duration like '1h' or a timedelta, got {value!r}")


def _schema(value: Any) -> dict[str, DType]:
    if not isinstance(value, dict):
        raise ValueError("schema must be a dict of column name -> type, e.g. {'amount': 'float64'}")
    out = {}
    for k, v in value.items():
        try:
            out[str(k)] = DType.parse(v, what=f"column '{k}'")
        except DefinitionError as e:
            raise ValueError(str(e)) from None
    return out


#: Milliseconds, accepting "10m", "1h", "7d" or a timedelta.
Duration = Annotated[int, BeforeValidator(_duration)]
#: A column -> DType mapping accepting type names such as "float64".
Schema = Annotated[dict[str, DType], BeforeValidator(_schema)]
