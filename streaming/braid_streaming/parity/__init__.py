"""``braid verify parity`` (DESIGN §7): one adversarial event log through DuckDB batch, the
stream path and Flink; every tile and sampled feature values compared under DESIGN §4.8.

Example:
    >>> report = run_parity(["duckdb", "stream", "flink"], bootstrap="127.0.0.1:9092")
    >>> print(report.render()); report.ok
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from braid.errors import BraidError
from braid_streaming.parity.compare import (
    EngineResult,
    compare_features,
    compare_tiles,
    sample_queries,
)
from braid_streaming.parity.engines import duckdb_tiles, flink_tiles, stream_tiles, unique_names
from braid_streaming.parity.events import accepted, generate_log, parity_plan

ENGINES = ("duckdb", "stream", "flink")


class ParityError(BraidError):
    """The parity run could not execute (unknown engine, no broker for Flink)."""


@dataclass
class ParityReport:
    """Per engine: tiles and features compared, and every mismatch."""

    events: int
    late: int
    results: list[EngineResult] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(not r.mismatches for r in self.results)

    def render(self) -> str:
        lines = [f"parity: {self.events} events ({self.late} late) on a fixed partition count"]
        for r in self.results:
            status = "OK" if not r.mismatches else f"{len(r.mismatches)} MISMATCHES"
            lines.append(f"  {r.engine:<7} {r.tiles:>5} tiles, {r.features:>5} feature values, "
                         f"{self.seconds.get(r.engine, 0):.1f} s: {status}{r.note}")
        for r in self.results:
            lines += [f"  ! {m}" for m in r.mismatches]
        return "\n".join(lines)


def _stream_engine() -> tuple[str, str]:
    try:
        import braid_streaming.runner  # noqa: F401
    except ImportError:
        return "stream", " (ingest decoder + DuckDB micro-batches; embedded runner not present)"
    return "stream", " (ingest decoder + DuckDB micro-batches)"


def run_parity(engines: Sequence[str] = ENGINES, bootstrap: str | None = None,
               n_events: int = 400, seed: int = 7) -> ParityReport:
    """Run the engines on one generated log and compare them with DuckDB batch (tiles) and
    with the Python reference (features).

    Raises:
        ParityError: an unknown engine, or ``flink`` without a bootstrap.
    """
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise ParityError(f"unknown engine(s) {sorted(unknown)}; choose from {list(ENGINES)}")
    if "flink" in engines and not bootstrap:
        raise ParityError("the flink engine needs a Kafka bootstrap (--bootstrap or "
                          "BRAID_KAFKA_BOOTSTRAP)")
    project, topic = unique_names()
    plan = parity_plan(project, topic)
    log = generate_log(n_events, seed)
    events = accepted(log)
    report = ParityReport(len(log), sum(e.late for e in log))
    started = time.monotonic()
    base = duckdb_tiles(plan, log)
    report.seconds["duckdb"] = time.monotonic() - started
    queries = sample_queries(plan, base)
    for engine in ["duckdb", *[e for e in engines if e != "duckdb"]]:
        started = time.monotonic()
        result = EngineResult(engine)
        if engine == "duckdb":
            tiles = base
        elif engine == "stream":
            tiles = stream_tiles(plan, log)
            result.note = _stream_engine()[1]
        else:
            assert bootstrap is not None
            tiles = flink_tiles(plan, log, bootstrap)
        if engine != "duckdb":
            compare_tiles(plan, base, tiles, events, result)
        else:
            result.tiles = len(base)
        compare_features(plan, tiles, events, queries, result)
        report.seconds[engine] = report.seconds.get(engine, 0) + time.monotonic() - started
        report.results.append(result)
    return report
