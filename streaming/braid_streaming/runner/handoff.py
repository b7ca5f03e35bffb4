"""``braid handoff``: move a view's tile ownership cutoff C forward (DESIGN §6.4).

Batch (backfill, materialize) writes tiles with ``tile_start < C``, the stream those with
``tile_start >= C``. Handing tiles to batch is safe only when the offline store holds them:
the backfilled ranges of the namespace must cover ``[old C, new C)`` (from their own start
when the stream owned everything). The running runner reads C before every batch, so the
change takes effect at its next batch; C never moves back.

Example:
    >>> print(handoff(store, "user_txn_stats", at="2026-01-02T00:00:00Z").render())
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from braid.timeutil import from_epoch_ms, tile_start, to_epoch_ms
from braid_streaming.runner.source import STREAM_OWNS_ALL
from braid_streaming.runner.state import RunnerError

if TYPE_CHECKING:
    from braid.store import FeatureStore


class HandoffError(RunnerError):
    """The handoff would give batch tiles the offline store does not hold."""


@dataclass
class HandoffReport:
    """Cutoffs of one view before and after."""

    view: str
    namespace: str
    cutoff: int
    hops: dict[int, tuple[int | None, int]] = field(default_factory=dict)

    def render(self) -> str:
        def when(ms: int | None) -> str:
            if ms is None:
                return "unset"
            return "-inf (stream owns all)" if ms <= STREAM_OWNS_ALL + 86_400_000 else str(
                from_epoch_ms(ms).isoformat())

        lines = [f"view {self.view} (namespace {self.namespace})"]
        for hop, (old, new) in sorted(self.hops.items()):
            lines.append(f"  hop {hop:>10} ms: C {when(old)} -> {when(new)}")
        lines.append(f"batch owns tiles before {when(self.cutoff)}, the stream owns tiles from "
                     "there on; run `braid materialize` to load the batch side online")
        return "\n".join(lines)


def _covered(ranges: list[tuple[int, int]], lo: int | None, hi: int) -> bool:
    """Whether one merged interval covers ``[lo, hi)`` (``lo`` None: any start)."""
    return any((lo is None or s <= lo) and e >= hi for s, e in ranges)


def handoff(store: FeatureStore, view: str, at: Any = None, force: bool = False) -> HandoffReport:
    """Move every hop's cutoff of ``view``'s namespace to ``tile_start(at, largest hop)``.

    Args:
        store: the feature store.
        view: a view reading a StreamSource.
        at: the new cutoff time (epoch ms, ISO 8601 with zone, aware datetime; default now).
        force: skip the backfill coverage check.

    Raises:
        HandoffError: the backfill does not cover the tiles handed to batch.
        RunnerError: the view does not read a stream.
    """
    plan = store.repo.plan(view)
    if not plan.source.is_stream:
        raise RunnerError(f"view '{view}' reads a batch source; handoff is for stream views")
    reg, project, ns = store.registry, store.project, plan.namespace
    t = int(time.time() * 1000) if at is None else to_epoch_ms(at, "at")
    cutoff = tile_start(t, max(plan.hops))
    old = reg.cutoffs(project, ns)
    ranges = reg.backfilled_ranges(project, ns)
    report = HandoffReport(view, ns, cutoff)
    for hop in plan.hops:
        new, before = tile_start(cutoff, hop), old.get(hop)
        if before is not None and new <= before:
            report.hops[hop] = (before, before)
            continue
        lo = None if before is None or before <= STREAM_OWNS_ALL + 86_400_000 else before
        if not force and not _covered(ranges, lo, new):
            have = ", ".join(f"[{from_epoch_ms(s).isoformat()}, {from_epoch_ms(e).isoformat()})"
                             for s, e in ranges) or "nothing"
            raise HandoffError(
                f"view '{view}': the backfill covers {have}, not up to "
                f"{from_epoch_ms(new).isoformat()}; run `braid backfill --views {view} --end "
                f"{new}` first (the stream archive feeds it), or pass --force")
        reg.set_cutoff(project, ns, hop, new)
        report.hops[hop] = (before, new)
    return report
