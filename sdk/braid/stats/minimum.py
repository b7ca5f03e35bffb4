"""The least present value."""

from __future__ import annotations

from typing import Any

import numpy as np

from braid.stats.base import Statistic


class Min(Statistic):
    """Least value seen; None while empty."""

    kind = "min"

    def __init__(self, value: float | None = None) -> None:
        self.value = value

    def _update(self, arr: np.ndarray, nulls: int) -> None:
        if arr.size:
            self._take(float(arr.min()))

    def _take(self, v: float | None) -> None:
        if v is not None and (self.value is None or v < self.value):
            self.value = v

    def _merge(self, other: Min) -> None:
        self._take(other.value)

    def get(self) -> float | None:
        return self.value

    def _state(self) -> dict[str, Any]:
        return {"value": self.value}

    @classmethod
    def _restore(cls, state: dict[str, Any]) -> Min:
        v = state["value"]
        return cls(None if v is None else float(v))
