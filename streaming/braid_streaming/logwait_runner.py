"""A resumable log-and-wait job (DESIGN §8): :class:`LogWaitJoin` driven step by step.

Each :meth:`LogWaitRunner.step` reads the service log ``braid.<project>.log.<service>`` and
then the label log from the offsets it stopped at (bounded reads by partition, up to the end
offsets at the start of the step; no consumer group), feeds the join, writes the rows that
matured to one Parquet file, and only once that file is durable stores its position and
join state (pending requests, labels, label-log time) as JSON in the registry under
``logwait:<service>:<label>``. A restart loads that state and resumes where the last
committed step ended.

Output: ``<offline>/<project>/_training/<service>/<label>/<seq>-<ranges>.parquet``, one file
per step that emitted rows, named by its sequence number and the offset ranges it consumed
(``log<p>.<from>-<to>`` / ``lab<p>.<from>-<to>``), written to a temporary file, fsynced and
renamed. A crash after the rename but before the state is stored leaves a file whose
sequence number is not committed; the next run deletes it before replaying the same input,
so no row is written twice. :func:`read_output` reads every file back and also drops
repeated ``(request_id, row)`` pairs (first file wins), which covers any other replay.

Rows are those of the batch join (``braid_batch.logjoin``) at the same cutoff when labels
arrive on the label log in time order (see :mod:`braid_streaming.logwait`). With ``until``
(a cutoff C), labels timestamped after C are not consumed; requests mature at C are emitted
once every label partition has shown a label after C (or with ``final=True``); without it,
a request is emitted once the label log's time has moved past its maturity.

Example:
    >>> runner = LogWaitRunner.for_store(store, "fraud_v1", "chargebacks", "labels_cb")
    >>> runner.step()                      # one bounded step; safe to repeat / restart
    >>> read_output(runner.out_dir)        # every emitted row, deduplicated
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from braid.definitions import LabelSource
from braid.logging.schema import LoggingError, LogSchema, log_topic
from braid.timeutil import to_epoch_ms
from braid_streaming.logwait import LogWaitJoin, _Label

if TYPE_CHECKING:
    from braid.store import FeatureStore
    from braid_streaming.log.base import Log, Record

STATE_VERSION = 1
_CHUNK = 50_000
_FILE = re.compile(r"^(\d{8})-.*\.parquet$")


def state_key(service: str, label: str) -> str:
    """The registry state key of a runner: ``logwait:<service>:<label>``."""
    return f"logwait:{service}:{label}"


def training_dir(offline: Path, project: str, service: str, label: str) -> Path:
    """Where a runner writes: ``<offline>/<project>/_training/<service>/<label>/``."""
    return offline / project / "_training" / service / label


@dataclass
class StepReport:
    """What one step did."""

    requests: int  # service-log records read
    labels: int  # label records consumed
    emitted: int  # training rows written
    file: Path | None  # the file written (None: nothing matured)
    pending: int  # requests still waiting for their maturity
    time: int | None  # the label log's time C after the step


class LogWaitRunner:
    """The streaming log-and-wait join as a resumable job (see the module docstring)."""

    def __init__(self, log: Log, registry: Any, project: str, schema: LogSchema,
                 label: LabelSource, label_topic: str, out_dir: str | Path,
                 until: int | None = None, retention: int | None = None) -> None:
        self.log = log
        self.registry = registry
        self.project = project
        self.schema = schema
        self.label = label
        self.label_topic = label_topic
        self.topic = log_topic(project, schema.service)
        self.out_dir = Path(out_dir)
        self.until = until
        self.key = state_key(schema.service, label.name)
        self.join = LogWaitJoin(schema, label, retention=retention)
        self.positions: dict[str, dict[int, int]] = {self.topic: {}, label_topic: {}}
        self.seq = 0
        self.done = False  # ``until`` reached and its mature requests emitted
        self._load()

    @classmethod
    def for_store(cls, store: FeatureStore, service: str, labels: str | None = None,
                  label_topic: str | None = None, until: int | None = None,
                  log: Log | None = None) -> LogWaitRunner:
        """A runner on the store's log, registry and offline store.

        ``label_topic`` defaults to the label source's topic when it is a StreamSource.

        Raises:
            LoggingError: no label topic is known.
        """
        from braid.definitions.sources import StreamSource
        from braid.logging.serving import open_repo_log
        from braid_batch.logjoin import pick_labels

        schema = LogSchema.for_service(store.repo, service)
        label = pick_labels(store.repo, schema, labels)
        if label_topic is None:
            if not isinstance(label.source, StreamSource):
                raise LoggingError(f"label source '{label.name}' reads a batch source; name "
                                   "the log topic its labels arrive on (label_topic=...)")
            label_topic = label.source.topic
        store.flush_logs(service)
        offline = store.config.resolve(store.config.offline_store.path)
        return cls(log or open_repo_log(store.config), store.registry, store.project, schema,
                   label, label_topic, training_dir(offline, store.project, service,
                                                    label.name), until=until)

    # ------------------------------------------------------------------ state
    def _load(self) -> None:
        state = self.registry.get_state(self.project, self.key)
        if state is not None:
            if state.get("version") != STATE_VERSION:
                raise LoggingError(f"state {self.key!r} has version {state.get('version')}, "
                                   f"not {STATE_VERSION}; delete it to start over")
            if state.get("label_topic") != self.label_topic:
                raise LoggingError(f"state {self.key!r} reads label topic "
                                   f"{state.get('label_topic')!r}, not {self.label_topic!r}")
            self.seq = state["seq"]
            self.done = state.get("done", False)
            self.positions = {self.topic: _parts(state["log"]),
                              self.label_topic: _parts(state["labels"])}
            j = self.join
            j.time, j._emitted_until = state["time"], state["emitted_until"]
            j.stats.update(state["stats"])
            j._pending = [(due, seq, row) for due, seq, row in state["pending"]]
            j._labels = {tuple(k): [_Label(x[0], x[1], tuple(x[2])) for x in v] for k, v in state["label_state"]}
            j._seen = {(r, n): s for r, n, s in state["seen"]}
            j._seq = itertools.count(state["next_seq"])
        # an emission whose state was never stored: its input is replayed below
        if self.out_dir.exists():
            for f in self.out_dir.iterdir():
                m = _FILE.match(f.name)
                if (m and int(m.group(1)) >= self.seq) or f.name.startswith(".tmp-"):
                    f.unlink()

    def _state(self) -> dict[str, Any]:
        j = self.join
        j.prune()
        next_seq = max((s for _, s, _ in j._pending), default=-1) + 1
        return {
            "version": STATE_VERSION, "label_topic": self.label_topic, "seq": self.seq,
            "done": self.done, "until": self.until,
            "log": {str(p): o for p, o in self.positions[self.topic].items()},
            "labels": {str(p): o for p, o in self.positions[self.label_topic].items()},
            "time": j.time, "emitted_until": j._emitted_until, "stats": j.stats,
            "pending": sorted(j._pending, key=lambda x: (x[0], x[1])),
            "label_state": [[list(k), [[x.ts, x.ing, list(x.values)] for x in v]]
                            for k, v in j._labels.items()],
            "seen": [[r, n, s] for (r, n), s in j._seen.items()],
            "next_seq": next_seq,
        }

    # ------------------------------------------------------------------ reading
    def _read(self, topic: str, stop: Callable[[Record], bool] | None = None,
              ) -> tuple[list[Record], dict[int, tuple[int, int]], set[int]]:
        """Records from the stored positions to the current end offsets, per partition;
        a partition stops before the first record ``stop`` accepts."""
        out: list[Record] = []
        ranges: dict[int, tuple[int, int]] = {}
        stopped: set[int] = set()
        if not self.log.topic_exists(topic):
            return out, ranges, stopped
        pos = self.positions[topic]
        for p, end in sorted(self.log.end_offsets(topic).items()):
            start = at = pos.get(p, 0)
            while at < end and p not in stopped:
                recs = self.log.read_range(topic, p, at, min(end, at + _CHUNK))
                if not recs:
                    break
                for rec in recs:
                    if stop is not None and stop(rec):
                        stopped.add(p)
                        break
                    out.append(rec)
                    at = rec.offset + 1
            if at > start:
                ranges[p] = (start, at)
            pos[p] = at
        return out, ranges, stopped

    def _label_values(self, rec: Record) -> tuple[dict[str, Any], int]:
        try:
            values = orjson.loads(rec.value)
            ts = to_epoch_ms(values[self.label.timestamp_field], self.label.timestamp_field)
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise LoggingError(f"{self.label_topic}/{rec.partition}@{rec.offset}: not a label "
                               f"of '{self.label.name}' ({type(e).__name__}: {e})") from e
        return values, ts

    # ------------------------------------------------------------------ running
    def step(self, final: bool = False) -> StepReport:
        """Read both logs up to their current ends, emit what matured, commit.

        ``final`` (with ``until``): treat the label log as complete up to ``until`` and emit
        every request mature at it, even if no label after ``until`` has been seen.
        """
        j = self.join
        j.rows = []
        requests, log_ranges, _ = self._read(self.topic)
        for rec in requests:
            j.add_request(orjson.loads(rec.value))
        until = self.until

        def beyond(rec: Record) -> bool:
            return until is not None and self._label_values(rec)[1] > until

        labels, lab_ranges, stopped = self._read(self.label_topic, beyond)
        if self.log.topic_exists(self.label_topic) and self.log.partitions(self.label_topic) > 1:
            labels.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
        for rec in labels:
            j.add_label(self._label_values(rec)[0])
        if until is not None and not self.done:
            nparts = (self.log.partitions(self.label_topic)
                      if self.log.topic_exists(self.label_topic) else 0)
            if final or (nparts and len(stopped) == nparts):
                j.advance(until)
                self.done = True
        elif until is not None:
            j.advance(until)  # requests logged late, after the cutoff was passed
        file = self._write(log_ranges, lab_ranges) if j.rows else None
        emitted = len(j.rows)
        if file is not None:
            self.seq += 1
        if requests or labels or file is not None or final:
            self.registry.set_state(self.project, self.key, self._state())
        j.rows = []
        return StepReport(len(requests), len(labels), emitted, file, len(j._pending), j.time)

    def run(self, interval: float = 1.0, steps: int | None = None,
            should_stop: Callable[[], bool] | None = None) -> list[StepReport]:
        """Step until ``steps`` are done or ``should_stop()`` says so (sleeping ``interval``
        seconds after a step that read nothing)."""
        reports: list[StepReport] = []
        while steps is None or len(reports) < steps:
            if should_stop is not None and should_stop():
                break
            report = self.step()
            reports.append(report)
            if not report.requests and not report.labels:
                time.sleep(interval)
        return reports

    def _write(self, log_ranges: dict[int, tuple[int, int]],
               lab_ranges: dict[int, tuple[int, int]]) -> Path:
        parts = [f"log{p}.{a}-{b}" for p, (a, b) in sorted(log_ranges.items())]
        parts += [f"lab{p}.{a}-{b}" for p, (a, b) in sorted(lab_ranges.items())]
        name = f"{self.seq:08d}-{'_'.join(parts) or 'advance'}"
        if len(name) > 200:
            name = name[:200]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        final = self.out_dir / f"{name}.parquet"
        tmp = self.out_dir / f".tmp-{name}.parquet"
        pq.write_table(self.join.table(), tmp)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fd = os.open(self.out_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return final

    def close(self) -> None:
        self.log.close()


def _parts(d: dict[str, int]) -> dict[int, int]:
    return {int(p): int(o) for p, o in d.items()}


def read_output(out_dir: str | Path) -> pa.Table:
    """Every row a runner emitted, in file order, one per ``(request_id, row)`` (first wins),
    sorted as the batch join sorts its rows."""
    files = sorted(f for f in Path(out_dir).glob("*.parquet") if _FILE.match(f.name))
    if not files:
        return pa.table({})
    tables = [pq.read_table(f) for f in files]
    table = pa.concat_tables(tables)
    seen: set[tuple[str, int]] = set()
    keep: list[int] = []
    for i, (r, n) in enumerate(zip(table.column("request_id").to_pylist(),
                                   table.column("row").to_pylist(), strict=True)):
        if (r, n) not in seen:
            seen.add((r, n))
            keep.append(i)
    table = table.take(pa.array(keep, pa.int64()))
    return table.sort_by([("served_at", "ascending"), ("origin", "ascending"),
                          ("request_id", "ascending"), ("row", "ascending")])
