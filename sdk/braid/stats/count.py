"""Count of present values and of missing ones (NULL or NaN)."""

from __future__ import annotations

from typing import Any

import numpy as np

from braid.stats.base import Statistic


class Count(Statistic):
    """How many values were present (``n``) and how many were missing (``nulls``).

    ``get()`` is ``n``; exact, so ``merge`` is plain addition.
    """

    kind = "count"

    def __init__(self, n: int = 0, nulls: int = 0) -> None:
        self.n = n
        self.nulls = nulls

    def _update(self, arr: np.ndarray, nulls: int) -> None:
        self.n += int(arr.size)
        self.nulls += nulls

    def _merge(self, other: Count) -> None:
        self.n += other.n
        self.nulls += other.nulls

    def get(self) -> int:
        return self.n

    @property
    def total(self) -> int:
        """Present plus missing values."""
        return self.n + self.nulls

    def _state(self) -> dict[str, Any]:
        return {"n": self.n, "nulls": self.nulls}

    @classmethod
    def _restore(cls, state: dict[str, Any]) -> Count:
        return cls(int(state["n"]), int(state["nulls"]))
