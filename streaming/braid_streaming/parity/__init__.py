"""``braid verify parity`` (DESIGN §7): one adversarial event log through DuckDB batch (over
the log minus late events), the embedded runner and Flink, each into its own namespace; every
tile and sampled feature values compared under DESIGN §4.8.

Engines: ``duckdb`` (the baseline), ``runner`` (the embedded runner, ``StreamRunner``, on a
temporary repository: local log, SQLite online store; ``stream`` is accepted as an alias) and
``flink`` (a bounded Flink run against Kafka). Besides its tiles, the runner leg is checked
for its dead letters (exactly the log's late events and its one zoneless event time, by
reason, partition and offset) and its final offsets (the end of every partition); the Flink
leg for its dead letters too.

Example:
    >>> report = run_parity(["duckdb", "runner", "flink"], bootstrap="127.0.0.1:9092")
    >>> print(report.render()); report.ok
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from braid_streaming.parity.compare import (
    EngineResult,
    compare_features,
    compare_tiles,
    sample_queries,
)
from braid_streaming.parity.engines import (
    ParityError,
    RunnerRun,
    duckdb_tiles,
    flink_dead_letters,
    flink_tiles,
    runner_tiles,
    unique_names,
)
from braid_streaming.parity.events import (
    LogEvent,
    accepted,
    generate_log,
    parity_plan,
    refused,
)

ENGINES = ("duckdb", "runner", "flink")
#: Older engine names still accepted on the command line.
ALIASES = {"stream": "runner"}
#: Records per micro-batch of the runner leg: many batches, ranges cut mid-partition.
RUNNER_BATCH = 37

__all__ = ["ENGINES", "ParityError", "ParityReport", "run_parity"]


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


def _check_letters(engine: str, got: set[tuple[str, int, int]], log: list[LogEvent],
                   result: EngineResult) -> None:
    """The engine dead-lettered exactly the log's late and refused events, for the same
    reasons (late by DESIGN 4.4; a zoneless time as ``naive_timestamp``)."""
    want = refused(log)
    for reason, p, o in sorted(want - got):
        result.mismatches.append(f"{engine}: event at partition {p} offset {o} has no dead "
                                 f"letter {reason!r}")
    for reason, p, o in sorted(got - want):
        result.mismatches.append(f"{engine}: unexpected dead letter {reason!r} for partition "
                                 f"{p} offset {o}")


def _check_runner(run: RunnerRun, log: list[LogEvent], result: EngineResult) -> None:
    """The runner's side effects parity can pin: dead letters and final offsets."""
    letters = {("late", p, o) for p, o in run.late_letters} | run.other_letters
    _check_letters("runner", letters, log, result)
    if run.offsets != run.ends:
        result.mismatches.append(f"runner: committed offsets {run.offsets} != log end "
                                 f"{run.ends}")
    result.mismatches += [f"runner: {p}" for p in run.problems]
    pruned = f", {run.pruned} pruned by GC and compared at their last write" if run.pruned else ""
    result.note = (f" (embedded runner: {run.batches} batches of <= {RUNNER_BATCH} records, "
                   f"{len(run.late_letters)} late dead letters, {len(run.other_letters)} refused, "
                   f"stream owns all tiles{pruned})")


def run_parity(engines: Sequence[str] = ENGINES, bootstrap: str | None = None,
               n_events: int = 400, seed: int = 7) -> ParityReport:
    """Run the engines on one generated log and compare them with DuckDB batch (tiles) and
    with the Python reference (features). ``runner`` is the embedded runner (see
    :func:`~braid_streaming.parity.engines.runner_tiles`).

    Raises:
        ParityError: an unknown engine, or ``flink`` without a bootstrap.
    """
    engines = list(dict.fromkeys(ALIASES.get(e, e) for e in engines))
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
        elif engine == "runner":
            run = runner_tiles(plan, log, RUNNER_BATCH)
            tiles = run.tiles
            _check_runner(run, log, result)
        else:
            assert bootstrap is not None
            tiles = flink_tiles(plan, log, bootstrap)
            _check_letters("flink", flink_dead_letters(plan, bootstrap), log, result)
        if engine != "duckdb":
            compare_tiles(plan, base, tiles, events, result)
        else:
            result.tiles = len(base)
        compare_features(plan, tiles, events, queries, result)
        report.seconds[engine] = report.seconds.get(engine, 0) + time.monotonic() - started
        report.results.append(result)
    return report
