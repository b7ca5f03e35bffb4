"""The statistic protocol and the input conversion every statistic shares (DESIGN §9).

A statistic is a small object with ``update(values)`` (a numpy array or an Arrow array; NULLs
and NaNs count as missing), ``merge(other)`` (associative and commutative, so partitions,
chunks and stream micro-batches combine in any order), ``get()`` and a JSON-serialisable
state (``to_dict`` / ``from_dict``). Every concrete statistic registers itself in
:data:`STATISTICS`, which the test suite walks to check each one against numpy.

Example:
    >>> from braid.stats import Variance
    >>> v = Variance(); v.update(np.array([1.0, 2.0, 4.0])); v.get()
    1.5555555555555556
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeAlias, TypeVar

import numpy as np
import pyarrow as pa

from braid.errors import BraidError

Values: TypeAlias = np.ndarray | pa.Array | pa.ChunkedArray | list[Any]

#: Every statistic class by its ``kind`` name (filled by ``__init_subclass__``).
STATISTICS: dict[str, type[Statistic]] = {}

S = TypeVar("S", bound="Statistic")


class StatsError(BraidError):
    """Statistics cannot be computed, merged or restored (wrong kind, bad state)."""


def split_values(values: Values) -> tuple[np.ndarray, int]:
    """The present values as a float64 array, and how many were missing (NULL or NaN).

    Arrow arrays are read without copying where possible; integers become float64 (exact up
    to 2^53, the range feature values live in).
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values, pa.Array):
        nulls = values.null_count
        if nulls:
            values = values.drop_null()
        if pa.types.is_timestamp(values.type) or pa.types.is_boolean(values.type):
            values = values.cast(pa.int64())
        arr = values.to_numpy(zero_copy_only=False)
    else:
        arr = np.asarray(values)
        nulls = 0
        if arr.dtype == object:
            mask = np.array([v is None for v in arr.ravel()], dtype=bool)
            nulls = int(mask.sum())
            arr = arr.ravel()[~mask]
    arr = np.asarray(arr, dtype=np.float64).ravel()
    nan = np.isnan(arr)
    if nan.any():
        nulls += int(nan.sum())
        arr = arr[~nan]
    return arr, nulls


class Statistic:
    """Base of every running statistic: update / merge / get and a serialisable state."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            STATISTICS[cls.kind] = cls

    def update(self, values: Values) -> None:
        """Add a batch of values (NULL and NaN are ignored, or counted where that is the point)."""
        arr, nulls = split_values(values)
        self._update(arr, nulls)

    def _update(self, arr: np.ndarray, nulls: int) -> None:
        raise NotImplementedError

    def merge(self: S, other: S) -> S:
        """Fold ``other`` into ``self`` (in place) and return ``self``."""
        if type(other) is not type(self):
            raise StatsError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        self._merge(other)
        return self

    def _merge(self, other: Any) -> None:
        raise NotImplementedError

    def get(self) -> Any:
        """The statistic's current value (None while undefined)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state, tagged with ``kind``."""
        return {"kind": self.kind, **self._state()}

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Statistic:
        """Restore any statistic from :meth:`to_dict` output (dispatching on ``kind``)."""
        kind = body.get("kind")
        target = STATISTICS.get(str(kind)) if cls is Statistic else cls
        if target is None or (cls is not Statistic and kind != cls.kind):
            raise StatsError(f"statistic state of kind {kind!r} cannot restore a {cls.__name__}; "
                             f"known kinds: {', '.join(sorted(STATISTICS))}")
        return target._restore({k: v for k, v in body.items() if k != "kind"})

    @classmethod
    def _restore(cls, state: dict[str, Any]) -> Statistic:
        raise NotImplementedError

    def copy(self: S) -> S:
        """An independent copy (through the serialised state)."""
        return type(self).from_dict(self.to_dict())  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get()!r})"
