"""Scalers fitted from statistics snapshots, versioned in the registry, applied identically in
training and at serving (DESIGN §9).

Kinds: ``standard`` ((x - mean) / std, population std as scikit-learn), ``minmax``
((x - min) / (max - min)), ``robust`` ((x - median) / IQR from the KLL sketch) and
``quantile`` (uniform output through the sketch's CDF, stored as a grid of quantiles and
interpolated). A zero scale becomes 1, as in scikit-learn. Parameters are plain floats, so
serving needs neither the sketch nor ``datasketches``.

Registry layout (operational state, outside the definitions):

* ``scaler:<ref>`` -> ``{"current": <version>}``;
* ``scaler:<ref>:v<version>`` -> :meth:`FittedScaler.to_dict` (kind, params, cutoff, the id
  of the merged statistics snapshot it was fitted from, saved with origin ``"scaler"``).

Training with ``stats_as_of=C`` fits (or re-uses an identical) version from the statistics of
data up to C and makes it current; serving applies the current version, so a vector scaled at
serving equals the same vector scaled in training.

Example:
    >>> train = store.get_historical_features(df, service="fraud_v1", scale=True,
    ...                                       stats_as_of="2025-12-01T00:00:00Z")
    >>> live = store.get_online_features([{"user_id": 1}], service="fraud_v1", scale=True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from braid.stats.base import StatsError
from braid.stats.bundle import FeatureStats
from braid.stats.snapshots import merged_as_of

if TYPE_CHECKING:
    from braid.registry import Registry
    from braid.store import FeatureStore

KINDS = ("standard", "minmax", "robust", "quantile")
#: Points of the quantile scaler's grid (like scikit-learn's ``n_quantiles``).
QUANTILE_POINTS = 101


def fit_params(kind: str, stats: FeatureStats) -> dict[str, Any]:
    """The parameters of a ``kind`` scaler from ``stats``.

    Raises:
        StatsError: unknown kind, or no present value to fit from.
    """
    if kind not in KINDS:
        raise StatsError(f"unknown scaler kind {kind!r}; use one of {', '.join(KINDS)}")
    if stats.n == 0:
        raise StatsError("cannot fit a scaler on statistics without any present value")
    assert stats.quantiles is not None
    if kind == "standard":
        return {"offset": stats.mean, "scale": _nonzero(stats.std(0))}
    if kind == "minmax":
        lo, hi = stats.min.get(), stats.max.get()
        assert lo is not None and hi is not None
        return {"offset": lo, "scale": _nonzero(hi - lo)}
    if kind == "robust":
        q25, q50, q75 = stats.quantiles.quantiles([0.25, 0.5, 0.75]) or [0.0, 0.0, 0.0]
        return {"offset": q50, "scale": _nonzero(q75 - q25)}
    probs = np.linspace(0.0, 1.0, QUANTILE_POINTS)
    grid = stats.quantiles.quantiles(list(probs)) or []
    return {"probs": probs.tolist(), "quantiles": [float(v) for v in grid]}


def _nonzero(scale: float | None) -> float:
    return 1.0 if not scale else float(scale)


def transform(kind: str, params: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    """Scale a float64 array (NaN stays NaN)."""
    if kind == "quantile":
        q = np.asarray(params["quantiles"], dtype=np.float64)
        p = np.asarray(params["probs"], dtype=np.float64)
        # average of the forward and backward interpolations, so repeated quantiles (ties)
        # map to the middle of their rank range
        up = np.interp(x, q, p)
        down = -np.interp(-x, -q[::-1], -p[::-1])
        return 0.5 * (up + down)
    return (x - float(params["offset"])) / float(params["scale"])


@dataclass(frozen=True)
class FittedScaler:
    """One version of a feature's scaler."""

    ref: str
    kind: str
    params: dict[str, Any]
    version: int
    snapshot_id: int
    cutoff: int | None
    chunks: tuple[int, ...] = field(default=())

    def transform(self, values: Any) -> np.ndarray:
        """Scale values (list with None, numpy or Arrow); missing values become NaN."""
        arr = _floats(values)
        return transform(self.kind, self.params, arr)

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "kind": self.kind, "params": self.params,
                "version": self.version, "snapshot_id": self.snapshot_id,
                "cutoff": self.cutoff, "chunks": list(self.chunks)}

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> FittedScaler:
        return cls(body["ref"], body["kind"], dict(body["params"]), int(body["version"]),
                   int(body["snapshot_id"]), body.get("cutoff"), tuple(body.get("chunks", ())))


def _floats(values: Any) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return np.asarray(values.cast(pa.float64()).fill_null(np.nan).to_numpy(
            zero_copy_only=False), dtype=np.float64)
    if isinstance(values, np.ndarray) and values.dtype != object:
        return values.astype(np.float64)
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


# ---------------------------------------------------------------- registry


def current_scaler(registry: Registry, project: str, ref: str) -> FittedScaler | None:
    """The current version of ``ref``'s scaler, or None."""
    pointer = registry.get_state(project, f"scaler:{ref}")
    if not pointer:
        return None
    body = registry.get_state(project, f"scaler:{ref}:v{pointer['current']}")
    return None if body is None else FittedScaler.from_dict(body)


def fit_scaler(registry: Registry, project: str, ref: str, kind: str, cutoff: int,
               namespace: str | None = None) -> FittedScaler:
    """Fit ``ref``'s scaler from the statistics of data up to ``cutoff`` and make it current.

    An identical current version (same kind, same chunks) is re-used, not duplicated.

    Raises:
        StatsError: no statistics of ``ref`` up to the cutoff (run ``braid stats compute``).
    """
    merged = merged_as_of(registry, project, ref, cutoff, namespace)
    if merged is None or merged.stats.n == 0:
        raise StatsError(f"no statistics of {ref} with data up to {cutoff}; run "
                         "`braid stats compute` after the backfill")
    chunks = tuple(sorted(merged.snapshot_ids))
    current = current_scaler(registry, project, ref)
    if current is not None and current.kind == kind and current.chunks == chunks:
        return current
    params = fit_params(kind, merged.stats)
    snapshot_id = registry.save_stats(
        project, f"{ref}@scaler", merged.start or 0, merged.end or 0, "scaler",
        {"namespace": namespace, "population": merged.population, "chunks": list(chunks),
         "cutoff": cutoff, "stats": merged.stats.to_dict()})
    version = (current.version if current is not None else 0) + 1
    fitted = FittedScaler(ref, kind, params, version, snapshot_id, cutoff, chunks)
    registry.set_state(project, f"scaler:{ref}:v{version}", fitted.to_dict())
    registry.set_state(project, f"scaler:{ref}", {"current": version})
    return fitted


# ---------------------------------------------------------------- facade wrappers


def scaler_kinds(store: FeatureStore, refs: list[str], service: str | None,
                 explicit: Mapping[str, str] | None = None) -> dict[str, str]:
    """Which refs to scale and how: ``explicit``, else the service's ``scalers``, else
    ``standard`` for every numeric feature."""
    if explicit:
        return dict(explicit)
    if service is not None and store.repo.services[service].scalers:
        return dict(store.repo.services[service].scalers)
    out = {}
    for ref in refs:
        view, name = ref.split(":", 1)
        plan = store.repo.plan(view)
        dtypes = {p.name: p.dtype for p in plan.projections}
        dtypes.update({a.name: a.dtype for a in plan.aggregations})
        if dtypes[name].is_numeric:
            out[ref] = "standard"
    return out


def resolve_scalers(store: FeatureStore, kinds: Mapping[str, str],
                    cutoff: int | None) -> dict[str, FittedScaler]:
    """Fit as of ``cutoff`` (training), or load the current versions (``cutoff`` None)."""
    out: dict[str, FittedScaler] = {}
    for ref, kind in kinds.items():
        namespace = store.repo.plan(ref.split(":", 1)[0]).namespace
        if cutoff is not None:
            out[ref] = fit_scaler(store.registry, store.project, ref, kind, cutoff, namespace)
            continue
        fitted = current_scaler(store.registry, store.project, ref)
        if fitted is None:
            raise StatsError(f"no fitted scaler for {ref}; build a training set with "
                             "scale=True and stats_as_of=<cutoff> first")
        out[ref] = fitted
    return out


def _by_output(scalers: Mapping[str, FittedScaler], names: list[str]) -> dict[str, FittedScaler]:
    present = set(names)
    out = {}
    for ref, fitted in scalers.items():
        view, feature = ref.split(":", 1)
        for candidate in (f"{view}__{feature}", feature):
            if candidate in present:
                out[candidate] = fitted
                break
    return out


class ScaledHistoricalResult:
    """A point-in-time result whose scaled features are replaced by their scaled values."""

    def __init__(self, inner: Any, scalers: Mapping[str, FittedScaler]) -> None:
        self.inner = inner
        self.scalers = _by_output(scalers, list(inner.features))
        self.features = inner.features
        self._arrow: pa.Table | None = None

    @property
    def versions(self) -> dict[str, int]:
        """Scaler version per scaled output column."""
        return {n: s.version for n, s in self.scalers.items()}

    def to_arrow(self) -> pa.Table:
        if self._arrow is None:
            table = self.inner.to_arrow()
            for name, fitted in self.scalers.items():
                i = table.schema.get_field_index(name)
                scaled = fitted.transform(table.column(name))
                table = table.set_column(i, name, pa.array(scaled, from_pandas=True))
            self._arrow = table
        return self._arrow

    def to_pandas(self):  # type: ignore[no-untyped-def]
        return self.to_arrow().to_pandas()

    def to_parquet(self, path: str | Path) -> Path:
        import pyarrow.parquet as pq

        pq.write_table(self.to_arrow(), path)
        return Path(path)


class ScaledOnlineResult:
    """An online result whose scaled features are replaced by their scaled values."""

    def __init__(self, inner: Any, scalers: Mapping[str, FittedScaler]) -> None:
        self.inner = inner
        self.scalers = _by_output(scalers, inner.feature_names)

    @property
    def feature_names(self) -> list[str]:
        return list(self.inner.feature_names)

    @property
    def versions(self) -> dict[str, int]:
        return {n: s.version for n, s in self.scalers.items()}

    def __len__(self) -> int:
        return len(self.inner)

    def statuses(self) -> Any:
        return self.inner.statuses()

    def to_dict(self, **options: Any) -> dict[str, list[Any]]:
        out = self.inner.to_dict(**options)
        for name, fitted in self.scalers.items():
            scaled = fitted.transform(out[name])
            out[name] = [None if np.isnan(v) else float(v) for v in scaled]
        return out

    def to_pandas(self):  # type: ignore[no-untyped-def]
        import pandas as pd

        return pd.DataFrame(self.to_dict())

    def __getattr__(self, name: str) -> Any:
        # everything else (request_ids of a logged lookup, ...) is the raw result's
        return getattr(self.inner, name)
