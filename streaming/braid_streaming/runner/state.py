"""The runner's durable state: offsets, M(p), sequence and the in-flight intent (DESIGN §7).

One JSON document per runner instance, stored in the online store itself (so offsets and the
state they describe live and die together)::

    {"seq": 41,                          # last committed batch
     "offsets": {"0": 1200, "1": 980},   # next offset per partition
     "max_ts": {"0": 1700000123000},     # M(p) after the last committed batch (DESIGN §4.4)
     "intent": null | {"seq": 42, "ranges": {"0": [1200, 1450]},
                       "max_ts_before": {...}, "ingest_time_ms": 1700000200000,
                       "cutoffs": {"<namespace>": {"<hop>": C}}}}

Writing the intent and committing are each one write of this document, so "commit offsets
and clear the intent" is atomic. Where the document lives: :mod:`braid_streaming.runner.meta`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from braid.errors import BraidError


class RunnerError(BraidError):
    """The runner cannot start or continue; the message says why and how to fix it."""


def _ints(d: dict[str, Any] | None) -> dict[int, int]:
    return {int(k): int(v) for k, v in (d or {}).items()}


@dataclass(frozen=True)
class Intent:
    """A batch being applied: enough to rebuild and re-decide it exactly after a crash."""

    seq: int
    ranges: dict[int, tuple[int, int]]
    max_ts_before: dict[int, int]
    ingest_time_ms: int
    cutoffs: dict[str, dict[int, int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ranges": {str(p): [s, e] for p, (s, e) in self.ranges.items()},
            "max_ts_before": {str(p): m for p, m in self.max_ts_before.items()},
            "ingest_time_ms": self.ingest_time_ms,
            "cutoffs": {ns: {str(h): c for h, c in hc.items()} for ns, hc in self.cutoffs.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Intent:
        return cls(
            seq=int(d["seq"]),
            ranges={int(p): (int(r[0]), int(r[1])) for p, r in d["ranges"].items()},
            max_ts_before=_ints(d.get("max_ts_before")),
            ingest_time_ms=int(d["ingest_time_ms"]),
            cutoffs={ns: _ints(hc) for ns, hc in (d.get("cutoffs") or {}).items()},
        )


@dataclass
class RunnerState:
    """Committed position of one runner instance, plus the intent in flight (if any)."""

    seq: int = 0
    offsets: dict[int, int] = field(default_factory=dict)
    max_ts: dict[int, int] = field(default_factory=dict)
    intent: Intent | None = None

    def dumps(self) -> str:
        return json.dumps({
            "seq": self.seq,
            "offsets": {str(p): o for p, o in self.offsets.items()},
            "max_ts": {str(p): m for p, m in self.max_ts.items()},
            "intent": self.intent.to_dict() if self.intent else None,
        }, sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> RunnerState:
        try:
            d = json.loads(text)
            return cls(seq=int(d["seq"]), offsets=_ints(d.get("offsets")),
                       max_ts=_ints(d.get("max_ts")),
                       intent=Intent.from_dict(d["intent"]) if d.get("intent") else None)
        except (ValueError, KeyError, TypeError) as e:
            raise RunnerError(f"runner state is unreadable ({e}); it was not written by this "
                              "braid version or was edited by hand") from None

    def committed(self, intent: Intent, max_ts: dict[int, int]) -> RunnerState:
        """The state after ``intent`` is fully applied: offsets past its ranges, new M(p)."""
        offsets = dict(self.offsets)
        offsets.update({p: e for p, (_, e) in intent.ranges.items()})
        return RunnerState(intent.seq, offsets, dict(max_ts), None)
