"""The online writer loop: poll the tiles topics, decode, write guarded, commit offsets.

Offsets: the loop commits ``{partition: next offset}`` per topic *after* the tiles of a poll
are written (no intent record). That is exactly-once in effect because every record is an
absolute tile state, so writing it again is idempotent, and the store's count guard
(:meth:`~braid.online.base.OnlineStore.write_tiles_monotonic`) refuses a state older than
the stored one. A crash between write and commit replays the same states: the stores end in
the same content. The runner's intent protocol (DESIGN §7) exists for *deltas*, which are not
idempotent; for absolute states the commit-after-apply form gives the same guarantee.

Ownership (DESIGN §6.4): only tiles with ``tile_start >= C`` of their (view, hop) are written;
C is read from the registry and refreshed every ``cutoff_refresh_s`` (``braid handoff`` moves
it forward while the writer runs).

Example:
    >>> sink = TileSink(online, plans, log, RegistryOffsets(registry, "fraud"),
    ...                 cutoffs=lambda p: registry.cutoffs("fraud", p.namespace))
    >>> sink.run(stop=threading.Event())
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from braid.compile.flink import skip_reason, tiles_topic
from braid.online.base import OnlineStore
from braid.plan import ViewPlan
from braid_streaming.log.base import Log, Record
from braid_streaming.sink.decode import decode_tiles

Cutoffs = Callable[[ViewPlan], dict[int, int]]


class OffsetStore(Protocol):
    """Where the writer keeps its next offsets per topic."""

    def load(self, plan: ViewPlan) -> dict[int, int]:
        """Next offset per partition of the view's tiles topic (empty: from the start)."""

    def commit(self, plan: ViewPlan, offsets: dict[int, int]) -> None:
        """Store the next offsets after the records before them were written."""


@dataclass
class MemoryOffsets:
    """Offsets in memory (tests, benchmarks, parity)."""

    data: dict[str, dict[int, int]] = field(default_factory=dict)

    def load(self, plan: ViewPlan) -> dict[int, int]:
        return dict(self.data.get(plan.namespace, {}))

    def commit(self, plan: ViewPlan, offsets: dict[int, int]) -> None:
        self.data.setdefault(plan.namespace, {}).update(offsets)


class RegistryOffsets:
    """Offsets in the registry's state table under ``sink:<namespace>`` (per project)."""

    def __init__(self, registry: Any, project: str) -> None:
        self.registry = registry
        self.project = project

    def load(self, plan: ViewPlan) -> dict[int, int]:
        raw = self.registry.get_state(self.project, f"sink:{plan.namespace}", {})
        return {int(p): int(o) for p, o in raw.items()}

    def commit(self, plan: ViewPlan, offsets: dict[int, int]) -> None:
        merged = {**self.load(plan), **offsets}
        self.registry.set_state(self.project, f"sink:{plan.namespace}",
                                {str(p): o for p, o in sorted(merged.items())})


@dataclass
class SinkReport:
    """Running totals of a writer."""

    records: int = 0
    tiles_written: int = 0
    tiles_skipped: int = 0  # older states refused by the count guard
    tombstones: int = 0
    below_cutoff: int = 0
    polls: int = 0


class TileSink:
    """Applies the tiles topics of ``plans`` to ``online``.

    Args:
        online: the online store (SQLite or Redis).
        plans: view plans; those without a Flink job (batch sources, projections only) are
            ignored.
        log: a :class:`Log` (its assignments are replaced by the writer's).
        offsets: where committed offsets live.
        cutoffs: per plan, the ownership cutoffs by hop (default: none, every tile).
        cutoff_refresh_s: how often cutoffs are read again.
    """

    def __init__(self, online: OnlineStore, plans: Sequence[ViewPlan], log: Log,
                 offsets: OffsetStore, cutoffs: Cutoffs | None = None,
                 cutoff_refresh_s: float = 5.0) -> None:
        self.online = online
        self.log = log
        self.offsets = offsets
        self.plans = {tiles_topic(p): p for p in plans if skip_reason(p) is None}
        self.report = SinkReport()
        self._cutoffs_fn = cutoffs
        self._cutoffs: dict[str, dict[int, int]] = {}
        self._cutoffs_at = -1e18
        self._refresh = cutoff_refresh_s
        self._assigned: set[str] = set()

    def _cutoffs_for(self, plan: ViewPlan) -> dict[int, int]:
        if self._cutoffs_fn is None:
            return {}
        if time.monotonic() - self._cutoffs_at > self._refresh:
            self._cutoffs = {p.name: self._cutoffs_fn(p) for p in self.plans.values()}
            self._cutoffs_at = time.monotonic()
        return self._cutoffs.get(plan.name, {})

    def assign(self) -> list[str]:
        """Assign every existing tiles topic not yet assigned, from its committed offsets;
        returns the topics still missing (the Flink job has not created them yet)."""
        missing = []
        for topic, plan in self.plans.items():
            if topic in self._assigned:
                continue
            if not self.log.topic_exists(topic):
                missing.append(topic)
                continue
            n = self.log.partitions(topic)
            start = self.offsets.load(plan)
            self.log.assign(topic, list(range(n)), {p: start.get(p, 0) for p in range(n)})
            self._assigned.add(topic)
        return missing

    def apply(self, records: Sequence[Record]) -> None:
        """Write one poll's records, then commit their offsets (see the module doc)."""
        by_topic: dict[str, list[Record]] = {}
        for r in records:
            by_topic.setdefault(r.topic, []).append(r)
        for topic, recs in by_topic.items():
            plan = self.plans.get(topic)
            if plan is None:
                continue
            decoded = decode_tiles(plan, recs, self._cutoffs_for(plan))
            for hop, table in decoded.tables.items():
                written = self.online.write_tiles_monotonic(plan, hop, table)
                self.report.tiles_written += written
                self.report.tiles_skipped += table.num_rows - written
            self.report.tombstones += decoded.tombstones
            self.report.below_cutoff += decoded.below_cutoff
            nxt: dict[int, int] = {}
            for r in recs:
                nxt[r.partition] = max(nxt.get(r.partition, 0), r.offset + 1)
            self.offsets.commit(plan, nxt)
        self.report.records += len(records)

    def run_once(self, max_records: int = 10_000, timeout: float = 0.5) -> int:
        """One poll; returns how many records it applied."""
        if len(self._assigned) < len(self.plans):
            self.assign()
        if not self._assigned:
            time.sleep(timeout)
            return 0
        records = self.log.poll(max_records=max_records, timeout=timeout)
        self.report.polls += 1
        if records:
            self.apply(records)
        return len(records)

    def run(self, stop: Callable[[], bool], max_records: int = 10_000,
            timeout: float = 0.5) -> SinkReport:
        """Poll and apply until ``stop()`` is true; returns the totals."""
        while not stop():
            self.run_once(max_records, timeout)
        return self.report
