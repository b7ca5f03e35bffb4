"""The result of an online read, materialized lazily into the shape the caller asks for."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from braid.dtypes import DType

if TYPE_CHECKING:
    import pandas as pd

#: Suffixes of the optional columns of :meth:`OnlineResult.to_dict`.
TS_SUFFIX = "__event_timestamp"
STATUS_SUFFIX = "__status"


class FeatureStatus(StrEnum):
    """Per value status, as in Feast."""

    PRESENT = "PRESENT"
    NOT_FOUND = "NOT_FOUND"
    OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"


#: How a reader describes the status and event time of one feature's values without building
#: them: ``(column, is_window, param)``. A projection's column holds each row's stored event
#: time (``None``: no row; older than ``param``, when not ``None``: OUTSIDE_MAX_AGE); a
#: window's column holds whether any tile was found, and ``param`` is the read time.
Provenance = tuple[list[Any], bool, int | None]


class OnlineResult:
    """Feature values of an online read, one row per entity row, in request order.

    Columns are plain lists; nothing is converted until a ``to_*`` method is called.

    Example:
        >>> result = reader.read([{"user_id": 1}, {"user_id": 2}], now_ms)
        >>> result.to_dict()
        {'user_id': [1, 2], 'amount_sum_1h': [12.5, 0.0]}
    """

    __slots__ = ("_entities", "_names", "_dtypes", "_values", "_status", "_ts", "_provenance")

    def __init__(self, entities: dict[str, tuple[DType, list[Any]]], names: list[str],
                 dtypes: list[DType], values: list[list[Any]],
                 status: list[list[FeatureStatus]] | None = None,
                 event_ts: list[list[int | None]] | None = None,
                 provenance: Sequence[Provenance] | None = None) -> None:
        """Either ``status`` and ``event_ts``, or ``provenance`` (one per feature) from which
        they are built on first use."""
        self._entities = entities
        self._names = names
        self._dtypes = dtypes
        self._values = values
        self._status = status
        self._ts = event_ts
        self._provenance = provenance
        if status is None or event_ts is None:
            if provenance is None:
                raise ValueError("OnlineResult needs status and event_ts, or provenance")
            self._status = self._ts = None

    def _meta(self) -> tuple[list[list[FeatureStatus]], list[list[int | None]]]:
        if self._status is None or self._ts is None:
            status: list[list[FeatureStatus]] = []
            times: list[list[int | None]] = []
            for column, is_window, param in self._provenance or ():
                if is_window:
                    status.append([PRESENT if hit else NOT_FOUND for hit in column])
                    times.append([param if hit else None for hit in column])
                else:
                    status.append([NOT_FOUND if ts is None else OUTSIDE
                                   if param is not None and ts < param else PRESENT
                                   for ts in column])
                    times.append(list(column))
            self._status, self._ts = status, times
        return self._status, self._ts

    @property
    def feature_names(self) -> list[str]:
        """Output names of the features, in request order."""
        return list(self._names)

    def __len__(self) -> int:
        return len(self._values[0]) if self._values else 0

    def to_dict(self, include_event_timestamps: bool = False,
                include_status: bool = False) -> dict[str, list[Any]]:
        """``{"user_id": [1, 2], "amount_sum_1h": [..]}`` like Feast's ``to_dict``.

        Args:
            include_event_timestamps: add ``<feature>__event_timestamp`` columns (epoch ms:
                the stored row's ``_ts`` for a projection, the read time for a window).
            include_status: add ``<feature>__status`` columns (:class:`FeatureStatus` values).
        """
        out: dict[str, list[Any]] = {}
        for key, (_, column) in self._entities.items():  # a loop: cheaper than a comprehension
            out[key] = column[:]
        if not (include_event_timestamps or include_status):
            out.update(zip(self._names, self._values))  # noqa: B905 (same length by construction)
            return out
        status, times = self._meta()
        for i, name in enumerate(self._names):
            out[name] = self._values[i]
            if include_event_timestamps:
                out[name + TS_SUFFIX] = times[i]
            if include_status:
                out[name + STATUS_SUFFIX] = [str(s) for s in status[i]]
        return out

    def statuses(self) -> dict[str, list[FeatureStatus]]:
        """Status of every value, by feature name."""
        return dict(zip(self._names, self._meta()[0], strict=True))

    def event_timestamps(self) -> dict[str, list[int | None]]:
        """Event time (epoch ms) of every value, by feature name."""
        return dict(zip(self._names, self._meta()[1], strict=True))

    def to_arrow(self, include_event_timestamps: bool = False,
                 include_status: bool = False) -> pa.Table:
        """An Arrow table; timestamps as ``timestamp[ms, tz=UTC]``."""
        ts_type = DType.TIMESTAMP.arrow
        status, times = self._meta()
        cols: dict[str, pa.Array] = {k: _array(v, t) for k, (t, v) in self._entities.items()}
        for i, name in enumerate(self._names):
            cols[name] = _array(self._values[i], self._dtypes[i])
            if include_event_timestamps:
                cols[name + TS_SUFFIX] = pa.array(times[i], pa.int64()).cast(ts_type)
            if include_status:
                cols[name + STATUS_SUFFIX] = pa.array([str(s) for s in status[i]],
                                                      pa.string())
        return pa.table(cols)

    def to_pandas(self, include_event_timestamps: bool = False,
                  include_status: bool = False) -> pd.DataFrame:
        """A pandas DataFrame (via :meth:`to_arrow`)."""
        return self.to_arrow(include_event_timestamps, include_status).to_pandas()

    def __repr__(self) -> str:
        return f"OnlineResult(rows={len(self)}, features={self._names})"


PRESENT, NOT_FOUND, OUTSIDE = (FeatureStatus.PRESENT, FeatureStatus.NOT_FOUND,
                               FeatureStatus.OUTSIDE_MAX_AGE)


def _array(values: list[Any], dtype: DType) -> pa.Array:
    if dtype == DType.TIMESTAMP:
        return pa.array(values, pa.int64()).cast(dtype.arrow)
    return pa.array(values, dtype.arrow)
