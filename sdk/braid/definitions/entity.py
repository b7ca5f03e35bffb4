"""Entities: what features are about (a user, a merchant), identified by join keys."""

from __future__ import annotations

from pydantic import field_validator

from braid.definitions.base import Definition, Schema, check_name
from braid.dtypes import DType


class Entity(Definition):
    """A business object features describe.

    Example (feature_repo/entities.py):
        >>> user = Entity(name="user", join_keys={"user_id": "int64"}, description="A buyer")
    """

    join_keys: Schema

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("join_keys")
    @classmethod
    def _keys(cls, v: dict[str, DType]) -> dict[str, DType]:
        if not v:
            raise ValueError("an entity needs at least one join key, e.g. {'user_id': 'int64'}")
        for key, dtype in v.items():
            check_name(key)
            if dtype not in (DType.INT64, DType.STRING):
                raise ValueError(f"join key '{key}' must be int64 or string, got {dtype}")
        return v
