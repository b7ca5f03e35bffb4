"""Statistics from the streaming side (DESIGN §7, §9): deltas per micro-batch, applied to the
registry's chunk snapshots under an offset-range guard.

The embedded runner (or the braid consumer next to Flink) calls, per micro-batch:

1. ``delta = stats_delta(plan, rows)`` with the batch's projection rows (the output of
   ``DuckDBCompiler.rows_query`` over the decoded, validated, non-late events it already
   computes for projection updates), restricted to events it owns (``ts >= C``, the view's
   cutoff, as for tiles, DESIGN §6.4);
2. ``apply_stream_delta(registry, plan, delta, ranges, cutoff=C)`` with the batch's offset
   ranges ``{partition: (first, end)}`` (end exclusive), *before* it commits its offsets.

Each touched chunk snapshot is re-saved whole with the merged statistics and, in its body,
``offsets`` = the next offset per partition already counted in it. The guard lives in the
same row as the data it protects, so a replay after a crash (the same ranges rebuilt from the
intent record) finds ``first < offsets[p]`` and skips the chunk: idempotent, never counted
twice, never lost. Aggregated features (population: values at tile closes) are counted by
:mod:`braid.stats.stream_tiles`, which the runner calls when a tile it owns is final; its
snapshot rows carry a (runner, batch seq) guard instead of offsets.

Example:
    >>> delta = stats_delta(plan, rows)
    >>> apply_stream_delta(registry, plan, delta, {0: (100, 250)}, cutoff=c)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from braid.stats.bundle import FeatureStats
from braid.stats.snapshots import ROWS, chunk_body
from braid.timeutil import DAY

if TYPE_CHECKING:
    from braid.plan import ViewPlan
    from braid.registry import Registry

Delta = dict[str, dict[int, FeatureStats]]


def stats_delta(plan: ViewPlan, rows: pa.Table, chunk: int = DAY) -> Delta:
    """``{ref: {chunk_start: FeatureStats}}`` of the numeric projections in ``rows``.

    ``rows`` holds ``_ts`` (epoch-ms int64 or timestamp[ms]) and the projection columns.
    """
    names = [p.name for p in plan.projections if p.dtype.is_numeric and p.name in rows.schema.names]
    if not names or rows.num_rows == 0:
        return {}
    ts = rows.column("_ts")
    if pa.types.is_timestamp(ts.type):
        ts = pc.cast(ts, pa.int64())
    ms = np.asarray(ts.to_numpy(), dtype=np.int64)
    starts = ms - np.mod(ms, chunk)
    out: Delta = {f"{plan.name}:{n}": {} for n in names}
    for start in np.unique(starts):
        mask = pa.array(starts == start)
        part = rows.filter(mask)
        for n in names:
            out[f"{plan.name}:{n}"][int(start)] = FeatureStats().update(part.column(n))
    return out


def apply_stream_delta(registry: Registry, plan: ViewPlan, delta: Delta,
                       ranges: Mapping[int, tuple[int, int]], cutoff: int | None = None,
                       origin: str = "stream", chunk: int = DAY) -> int:
    """Merge ``delta`` into the stream's chunk snapshots unless ``ranges`` were counted.

    A chunk that contains the cutoff starts at the cutoff, so it never hides the batch
    chunk ending there. Returns the number of chunk snapshots written.
    """
    written = 0
    for ref, chunks in delta.items():
        for start, fs in sorted(chunks.items()):
            lo = start if cutoff is None else max(start, cutoff)
            hi = start + chunk
            snap = registry.stats_as_of(plan.project, ref, hi)
            mine = (snap is not None and snap.start == lo and snap.end == hi
                    and snap.origin == origin and snap.body.get("namespace") == plan.namespace)
            offsets: dict[str, int] = dict(snap.body.get("offsets", {})) if mine and snap else {}
            if any(first < offsets.get(str(p), -1) for p, (first, _) in ranges.items()):
                continue  # a replay of a batch already counted in this chunk
            total = FeatureStats.from_dict(snap.body["stats"]) if mine and snap else FeatureStats()
            total.merge(fs)
            for p, (_, end) in ranges.items():
                offsets[str(p)] = max(offsets.get(str(p), -1), int(end))
            registry.save_stats(plan.project, ref, lo, hi, origin,
                                chunk_body(plan.namespace, ROWS, total, offsets=offsets))
            written += 1
    return written
