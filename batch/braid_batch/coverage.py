"""Strict point-in-time requests: refuse times the offline store does not cover (§6, §10).

By default a point-in-time request is exact without a backfill: where the offline store does
not cover the needed range (never backfilled, backfilled in part, or after the view's cutoff,
DESIGN §6.4) it computes from the batch source's events. ``require_backfill=True`` asks for
the offline store only and turns every such gap into a :class:`CoverageError` that names the
view, the needed range, what is covered, and the command that fills the gap.

Example:
    >>> get_historical_features(repo, df, ["user_tx:amount_sum_1h"], require_backfill=True)
    CoverageError: view 'user_tx' (tiles of hop 5m) is not backfilled for ...
"""

from __future__ import annotations

from braid.errors import CoverageError
from braid.timeutil import format_duration, from_epoch_ms
from braid_batch.offline import BEGINNING
from braid_batch.pit_sql import ViewSQL


def require_coverage(view: ViewSQL, refs: list[str]) -> None:
    """Raise :class:`CoverageError` if the features ``refs`` of the view need offline data
    that no backfill produced.

    Raises:
        CoverageError: the first uncovered part, with the covered ranges and the fix.
    """
    plan = view.plan
    needs: list[tuple[int | None, int]] = []
    if any(p.name in refs for p in plan.projections):
        needs.append((None, 0))
    aggs = [a for a in plan.aggregations if a.name in refs]
    for hop in sorted({a.hop for a in aggs}):
        widest = max(a.window for a in aggs if a.hop == hop)
        if widest > hop:  # a one-tile window reads only the head's events
            needs.append((hop, widest))
    for hop, widest in needs:
        missing = view.uncovered(hop, widest)
        if missing:
            raise CoverageError(_message(view, hop, widest, missing[0]))


def _message(view: ViewSQL, hop: int | None, widest: int,
             gap: tuple[int | None, int]) -> str:
    plan = view.plan
    what = "projection rows" if hop is None else f"tiles of hop {format_duration(hop)}"
    lo, hi = view.rows_range() if hop is None else view.tiles_range(hop, widest)
    covered = view.store.covered(view.plan, hop)
    have = ", ".join(f"[{_at(a)}, {_at(b)})" for a, b in covered) or "nothing (never backfilled)"
    start = f" --start {_at(gap[0])}" if gap[0] is not None else ""
    return (f"view '{plan.name}' ({what}) is not backfilled for all requested times: the request "
            f"needs [{_at(lo)}, {_at(hi)}), the offline store covers {have}; missing "
            f"[{_at(gap[0])}, {_at(gap[1])}). Run `braid backfill --views {plan.name}{start} "
            f"--end {_at(gap[1])}`, or drop require_backfill to compute it from the batch source")


def _at(ms: int | None) -> str:
    if ms is None or ms <= BEGINNING:
        return "the beginning"
    return from_epoch_ms(ms).isoformat().replace("+00:00", "Z")
