"""Quantiles from a KLL sketch (Apache DataSketches ``kll_doubles_sketch``).

The sketch is mergeable and its serialised bytes are the state (base64 in JSON), readable by
any DataSketches binding. Its rank error is probabilistic and bounded by
:meth:`Quantiles.rank_error` (about 1.33% at k = 200, with 99% confidence). ``datasketches`` is
imported here only, so ``import braid`` stays light (STYLE 12).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from braid.stats.base import Statistic, StatsError

#: Sketch size: 200 is DataSketches' default (about 1.33% normalized rank error).
DEFAULT_K = 200
#: Probabilities reported by :meth:`Quantiles.get`.
DEFAULT_PROBS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _kll() -> Any:
    try:
        from datasketches import kll_doubles_sketch
    except ImportError as e:  # pragma: no cover - depends on the install
        raise StatsError("quantile sketches need datasketches; pip install 'braid[stats]'") from e
    return kll_doubles_sketch


class Quantiles(Statistic):
    """A KLL quantile sketch of the present values.

    Example:
        >>> q = Quantiles(); q.update(np.arange(1000.0)); round(q.quantile(0.5))
        500
    """

    kind = "quantiles"

    def __init__(self, k: int = DEFAULT_K, sketch: Any = None) -> None:
        self.k = k
        self.sketch = sketch if sketch is not None else _kll()(k)

    def _update(self, arr: np.ndarray, nulls: int) -> None:
        if arr.size:
            if not (arr.flags.writeable and arr.flags.c_contiguous):
                # the binding refuses read-only buffers (zero-copy Arrow arrays are read-only)
                arr = np.array(arr, dtype=np.float64, order="C")
            self.sketch.update(arr)

    def _merge(self, other: Quantiles) -> None:
        self.sketch.merge(other.sketch)

    @property
    def n(self) -> int:
        return int(self.sketch.n)

    def quantile(self, q: float) -> float | None:
        """The value at normalized rank ``q`` in [0, 1]; None while empty."""
        if self.sketch.is_empty():
            return None
        return float(self.sketch.get_quantile(q))

    def quantiles(self, probs: Sequence[float]) -> list[float] | None:
        if self.sketch.is_empty():
            return None
        return [float(v) for v in self.sketch.get_quantiles(list(probs))]

    def rank(self, x: float) -> float | None:
        """Estimated fraction of values <= ``x``."""
        if self.sketch.is_empty():
            return None
        return float(self.sketch.get_rank(x))

    def cdf(self, points: Sequence[float]) -> list[float] | None:
        """Estimated fraction of values <= each (sorted, distinct) split point, then 1."""
        if self.sketch.is_empty():
            return None
        return [float(v) for v in self.sketch.get_cdf(list(points))]

    def rank_error(self) -> float:
        """DataSketches' documented normalized rank error bound for this k (99% confidence)."""
        return float(_kll().get_normalized_rank_error(self.k, False))

    def get(self) -> dict[float, float] | None:
        """Quantiles at :data:`DEFAULT_PROBS`; None while empty."""
        values = self.quantiles(DEFAULT_PROBS)
        return None if values is None else dict(zip(DEFAULT_PROBS, values, strict=True))

    def _state(self) -> dict[str, Any]:
        return {"k": self.k, "sketch": base64.b64encode(self.sketch.serialize()).decode()}

    @classmethod
    def _restore(cls, state: dict[str, Any]) -> Quantiles:
        raw = base64.b64decode(state["sketch"])
        return cls(int(state["k"]), _kll().deserialize(raw))
