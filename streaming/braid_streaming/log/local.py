"""The local log: SQLite files on disk, so ``push`` and the embedded runner stream without a
broker (DESIGN §7).

Format (one SQLite database per topic, ``<path>/<topic>.sqlite3``, WAL journal,
``synchronous=FULL`` so a committed append survives a crash or power loss)::

    meta(partitions INTEGER, compacted INTEGER)                 -- exactly one row
    p<N>(o INTEGER PRIMARY KEY,   -- offset, dense from 0
         ts INTEGER NOT NULL,     -- record timestamp, epoch ms
         mts INTEGER NOT NULL,    -- max(ts) over offsets <= o: monotone, indexed
         key BLOB, value BLOB NOT NULL)                        -- one table per partition

``mts`` makes ``offsets_for_times`` a single index seek: the first offset whose timestamp is
``>= t`` is exactly the first offset whose running maximum is ``>= t``.

Concurrency: appends run in ``BEGIN IMMEDIATE`` transactions that read the next offset inside
the lock, so any number of writer processes append safely; readers in other processes see
only committed records (WAL readers never block the writer). Compaction is not performed: a
compacted topic keeps every record, and readers that want the latest per key take the last.

Example:
    >>> log = LocalLog("feature_repo/data/log")
    >>> log.create_topic("transactions", 2)
    >>> log.produce("transactions", [(b"7", b"{}", 0)]); log.flush()
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from braid_streaming.log.base import (
    Log,
    LogError,
    OffsetRangeError,
    Record,
    UnknownTopicError,
    check_topic,
)

#: Pending records after which ``produce`` commits without waiting for ``flush``.
AUTO_COMMIT_RECORDS = 50_000
_POLL_SLEEP = 0.01


class LocalLog(Log):
    """An append-only, partitioned log with offsets in SQLite files under ``path``."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._cons: dict[str, sqlite3.Connection] = {}
        self._lock = threading.RLock()
        self._pending: dict[str, list[tuple[int, bytes | None, bytes, int]]] = {}
        self._npending = 0
        self._assigned: dict[str, dict[int, int]] = {}
        self._next = 0

    # ------------------------------------------------------------------ files
    def _file(self, topic: str) -> Path:
        return self.path / f"{check_topic(topic)}.sqlite3"

    def _open(self, file: Path) -> sqlite3.Connection:
        con = sqlite3.connect(file, isolation_level=None, check_same_thread=False,
                              timeout=60.0)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        return con

    def _con(self, topic: str) -> sqlite3.Connection:
        con = self._cons.get(topic)
        if con is None:
            file = self._file(topic)
            if not file.exists():
                raise UnknownTopicError(
                    f"topic {topic!r} does not exist in the local log {self.path}; "
                    "create it (braid push creates source topics)"
                )
            con = self._cons[topic] = self._open(file)
        return con

    # ------------------------------------------------------------------ topics
    def create_topic(self, topic: str, partitions: int, compacted: bool = False) -> None:
        if partitions < 1:
            raise LogError(f"topic {topic!r}: partitions must be >= 1, got {partitions}")
        with self._lock:
            con = self._cons.get(topic) or self._open(self._file(topic))
            self._cons[topic] = con
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute("CREATE TABLE IF NOT EXISTS meta "
                            "(partitions INTEGER NOT NULL, compacted INTEGER NOT NULL)")
                row = con.execute("SELECT partitions FROM meta").fetchone()
                if row is None:
                    con.execute("INSERT INTO meta VALUES (?, ?)", (partitions, int(compacted)))
                    for p in range(partitions):
                        con.execute(f"CREATE TABLE p{p} (o INTEGER PRIMARY KEY, "
                                    "ts INTEGER NOT NULL, mts INTEGER NOT NULL, "
                                    "key BLOB, value BLOB NOT NULL)")
                        con.execute(f"CREATE INDEX p{p}_mts ON p{p}(mts)")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        if row is not None and row[0] != partitions:
            raise LogError(
                f"topic {topic!r} exists with {row[0]} partitions, not {partitions}; "
                "delete it or keep the partition count"
            )
        self._nparts[topic] = partitions

    def _fetch_partitions(self, topic: str) -> int:
        with self._lock:
            try:
                row = self._con(topic).execute("SELECT partitions FROM meta").fetchone()
            except sqlite3.OperationalError:
                row = None  # the file exists but create_topic has not committed yet
        if row is None:
            raise UnknownTopicError(f"topic {topic!r} is being created in {self.path}")
        return int(row[0])

    # ------------------------------------------------------------------ writing
    def _append(self, topic: str, routed: list[tuple[int, bytes | None, bytes, int]]) -> None:
        with self._lock:
            self._pending.setdefault(topic, []).extend(routed)
            self._npending += len(routed)
            if self._npending >= AUTO_COMMIT_RECORDS:
                self._commit()

    def flush(self, timeout: float | None = None) -> None:
        with self._lock:
            self._commit()

    def _commit(self) -> None:
        pending, self._pending, self._npending = self._pending, {}, 0
        for topic, routed in pending.items():
            by_part: dict[int, list[tuple[bytes | None, bytes, int]]] = {}
            for p, k, v, ts in routed:
                by_part.setdefault(p, []).append((k, v, ts))
            con = self._con(topic)
            con.execute("BEGIN IMMEDIATE")
            try:
                for p, recs in by_part.items():
                    last = con.execute(
                        f"SELECT o, mts FROM p{p} ORDER BY o DESC LIMIT 1").fetchone()
                    nxt, mts = (0, None) if last is None else (last[0] + 1, last[1])
                    rows = []
                    for i, (k, v, ts) in enumerate(recs):
                        mts = ts if mts is None or ts > mts else mts
                        rows.append((nxt + i, ts, mts, k, v))
                    con.executemany(f"INSERT INTO p{p} VALUES (?, ?, ?, ?, ?)", rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ reading
    def assign(self, topic: str, partitions: Sequence[int],
               start: Mapping[int, int] | None = None) -> None:
        n = self.partitions(topic)
        start = start or {}
        for p in partitions:
            if not 0 <= p < n:
                raise LogError(f"topic {topic!r} has partitions 0..{n - 1}, not {p}")
        self._assigned[topic] = {p: int(start.get(p, 0)) for p in partitions}

    def position(self, topic: str) -> dict[int, int]:
        return dict(self._assigned.get(topic, {}))

    def poll(self, max_records: int = 10_000, timeout: float = 1.0) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            out = self._poll_once(max_records)
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(min(_POLL_SLEEP, max(0.0, deadline - time.monotonic())))

    def _poll_once(self, max_records: int) -> list[Record]:
        slots = [(t, p) for t, parts in self._assigned.items() for p in parts]
        if not slots:
            return []
        self._next = (self._next + 1) % len(slots)
        out: list[Record] = []
        for i in range(len(slots)):
            if len(out) >= max_records:
                break
            topic, p = slots[(self._next + i) % len(slots)]
            pos = self._assigned[topic][p]
            recs = self._select(topic, p, pos, pos + max_records - len(out))
            if recs:
                out.extend(recs)
                self._assigned[topic][p] = recs[-1].offset + 1
        return out

    def _select(self, topic: str, p: int, start: int, end: int) -> list[Record]:
        with self._lock:
            rows = self._con(topic).execute(
                f"SELECT ?, ?, o, ts, key, value FROM p{p} WHERE o >= ? AND o < ? ORDER BY o",
                (topic, p, start, end)).fetchall()
        return list(map(Record._make, rows))

    def offsets_for_times(self, topic: str, ts_ms: int) -> dict[int, int]:
        out: dict[int, int] = {}
        ends = self.end_offsets(topic)
        with self._lock:
            con = self._con(topic)
            for p in range(self.partitions(topic)):
                row = con.execute(f"SELECT o FROM p{p} WHERE mts >= ? ORDER BY mts, o LIMIT 1",
                                  (ts_ms,)).fetchone()
                out[p] = ends[p] if row is None else int(row[0])
        return out

    def end_offsets(self, topic: str) -> dict[int, int]:
        with self._lock:
            con = self._con(topic)
            out = {}
            for p in range(self.partitions(topic)):
                row = con.execute(f"SELECT MAX(o) FROM p{p}").fetchone()
                out[p] = 0 if row[0] is None else int(row[0]) + 1
        return out

    def read_range(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        n = self.partitions(topic)
        if not 0 <= partition < n:
            raise LogError(f"topic {topic!r} has partitions 0..{n - 1}, not {partition}")
        if end <= start:
            return []
        recs = self._select(topic, partition, start, end)
        if len(recs) != end - start:
            have = self.end_offsets(topic)[partition]
            raise OffsetRangeError(
                f"{topic}/{partition}: offsets [{start}, {end}) asked, the log ends at {have}"
            )
        return recs

    def close(self) -> None:
        with self._lock:
            self._commit()
            for con in self._cons.values():
                con.close()
            self._cons.clear()
