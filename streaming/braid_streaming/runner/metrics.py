"""Runner metrics: a status line for humans and Prometheus text for the server (DESIGN §7).

Every :class:`RunnerMetrics` registers itself in a process-wide set, and
:func:`runner_metrics` renders all live ones, so ``braid serve`` can expose the runners of its
process without knowing them.

Example:
    >>> print(runner_metrics())
    # TYPE braid_runner_events_total counter
    braid_runner_events_total{runner="ab12cd34.0of1",source="transactions"} 1200
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

_LIVE: weakref.WeakSet[RunnerMetrics] = weakref.WeakSet()
_LOCK = threading.Lock()


@dataclass(eq=False)
class RunnerMetrics:
    """Counters and gauges of one runner instance (all times epoch ms)."""

    runner: str
    source: str
    events: int = 0
    batches: int = 0
    replays: int = 0
    retries: int = 0
    dlq: dict[str, int] = field(default_factory=dict)
    lag: dict[int, int] = field(default_factory=dict)
    newest_ts: dict[str, int] = field(default_factory=dict)
    apply_latency_ms: float = 0.0
    delays_ms: list[int] = field(default_factory=list)
    _window: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        with _LOCK:
            _LIVE.add(self)

    def record_batch(self, events: int, counts: dict[str, int], seconds: float) -> None:
        """Count one committed batch and its dead letters by reason."""
        self.events += events
        self.batches += 1
        self.apply_latency_ms = seconds * 1000
        for reason, n in counts.items():
            if reason != "accepted" and n:
                self.dlq[reason] = self.dlq.get(reason, 0) + n
        now = time.monotonic()
        self._window.append((now, events))
        self._window = [(t, n) for t, n in self._window if now - t <= 10.0]

    def record_delays(self, now_ms: int, record_ts: Sequence[int]) -> None:
        """Keep commit time - record time of the last ~100k records (end-to-end delay; braid's
        producer sets the record time to the event time)."""
        self.delays_ms.extend(now_ms - ts for ts in record_ts)
        if len(self.delays_ms) > 200_000:
            del self.delays_ms[:-100_000]

    def rate(self) -> float:
        """Events per second over the last ~10 s."""
        if len(self._window) < 2:
            return 0.0
        span = self._window[-1][0] - self._window[0][0]
        return sum(n for _, n in self._window[1:]) / span if span > 0 else 0.0

    def freshness_ms(self, now_ms: int | None = None) -> dict[str, int]:
        """Per view: now - newest event time applied."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return {v: now - ts for v, ts in self.newest_ts.items()}

    def status_line(self) -> str:
        """One line: rate, lag per partition, freshness per view, DLQ counts by reason."""
        lag = " ".join(f"p{p}={n}" for p, n in sorted(self.lag.items())) or "-"
        fresh = " ".join(f"{v}={ms / 1000:.1f}s" for v, ms in sorted(self.freshness_ms().items()))
        dlq = " ".join(f"{r}={n}" for r, n in sorted(self.dlq.items())) or "0"
        return (f"[{self.source}] {self.rate():,.0f} ev/s  total {self.events:,}  lag {lag}  "
                f"freshness {fresh or '-'}  dlq {dlq}")

    def prometheus(self) -> list[str]:
        """Sample lines (without TYPE headers) of this runner."""
        base = f'runner="{self.runner}",source="{self.source}"'
        out = [f"braid_runner_events_total{{{base}}} {self.events}",
               f"braid_runner_batches_total{{{base}}} {self.batches}",
               f"braid_runner_replays_total{{{base}}} {self.replays}",
               f"braid_runner_retries_total{{{base}}} {self.retries}",
               f"braid_runner_batch_apply_ms{{{base}}} {self.apply_latency_ms:.3f}"]
        out += [f'braid_runner_dlq_total{{{base},reason="{r}"}} {n}'
                for r, n in sorted(self.dlq.items())]
        out += [f'braid_runner_lag_records{{{base},partition="{p}"}} {n}'
                for p, n in sorted(self.lag.items())]
        out += [f'braid_runner_freshness_seconds{{{base},view="{v}"}} {ms / 1000:.3f}'
                for v, ms in sorted(self.freshness_ms().items())]
        return out


_TYPES = {
    "braid_runner_events_total": "counter", "braid_runner_batches_total": "counter",
    "braid_runner_replays_total": "counter", "braid_runner_retries_total": "counter",
    "braid_runner_batch_apply_ms": "gauge", "braid_runner_dlq_total": "counter",
    "braid_runner_lag_records": "gauge", "braid_runner_freshness_seconds": "gauge",
}


def runner_metrics() -> str:
    """Prometheus text exposition of every live runner in this process."""
    with _LOCK:
        live = list(_LIVE)
    samples = [line for m in live for line in m.prometheus()]
    out: list[str] = []
    for name, kind in _TYPES.items():
        lines = [s for s in samples if s.startswith(name + "{")]
        if lines:
            out.append(f"# TYPE {name} {kind}")
            out += lines
    return "\n".join(out) + ("\n" if out else "")
