"""Cutting and decoding micro-batches ahead of the runner, in a child process (DESIGN §7).

A runner's batch is *defined* by its offset ranges; reading those records from Kafka and
decoding them (JSON -> typed Arrow columns, dead letters, lateness by M(p)) does not depend on
anything the runner writes. So the runner can hand that work to a child process, which reads
its partitions sequentially from the committed offsets, cuts batches with the same rules as
in-process cutting (:func:`cut`), decodes each with the M(p) the previous batch left, and
sends ``(ranges, M before, ingest time, decoded result)`` to the runner. While the runner
applies a batch, the child reads ahead into a buffer of at most one batch; once the buffer
holds a whole batch (a backlog) it cuts and decodes it before it is asked, so the runner
finds it ready (throughput: the two run on two cores). A smaller buffer is cut only when
the runner asks for the next batch, with the usual wait-and-linger rules, so at a steady
rate a batch holds what arrived while the one before was applied (freshness, as with
in-process cutting).

Nothing about exactly-once changes: the runner writes the intent (ranges, M before, ingest
time) before it applies a batch, a replay after a crash re-reads the ranges and decodes them
in-process with the stored M and ingest time (same decisions), and batches the child cut
beyond the last commit are simply dropped with it (the next start reads from the committed
offsets). The child keeps at most :data:`AHEAD` decoded batches waiting (bounded memory).

The child is a fresh interpreter running :func:`main` on one end of a socket pair (never
``multiprocessing``'s spawn, which would re-import the caller's ``__main__``). It
exits when the runner closes its end, including when the runner is killed; it ignores SIGINT
(the runner finishes its batch and closes it). Used for Kafka logs; the local log is read
in-process (reading SQLite pages costs little). The module sits beside the ``runner``
package, not in it, so the child imports only this module, the decoder and its log client
(not the runner's stores, registry and DuckDB) and starts in about a third of the time.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from operator import attrgetter
from pathlib import Path

import numpy as np

from braid.config import KafkaConfig
from braid.definitions.sources import StreamSource
from braid_streaming.ingest import Decoder, IngestResult
from braid_streaming.log.base import Log, LogUnavailableError, Record

#: After the first records of a batch, how long a poll waits for more before the batch is cut.
LINGER_S = 0.005

#: Full batches the child may cut and decode before the runner asks (backlog only).
AHEAD = 1

#: How long the child's poll waits while it reads ahead into its buffer.
READ_AHEAD_S = 0.05


def cut(log: Log, max_batch: int, max_wait_ms: int,
        unavailable: Callable[[LogUnavailableError], None],
        have: list[Record] | None = None) -> list[Record]:
    """Take what the log has, up to ``max_batch`` records (DESIGN §7: bounded by size and
    time), grouped by partition in offset order. Waits up to ``max_wait_ms`` for the first
    records only; after that it keeps taking while records keep arriving within
    ``LINGER_S`` and stops as soon as the log has nothing more, so an idle log never holds a
    partial batch back (freshness) and a backlog still fills whole batches (throughput).
    ``have``: records already polled (they come first). ``unavailable`` is told of each
    failed poll (then the poll is retried until the wait ends)."""
    out: list[Record] = list(have or [])
    deadline = time.monotonic() + max_wait_ms / 1000
    while len(out) < max_batch:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            got = log.poll(max_batch - len(out), timeout=min(left, LINGER_S) if out else left)
        except LogUnavailableError as e:
            unavailable(e)
            time.sleep(min(left, 0.5))
            continue
        if not got and out:
            break  # the log is drained: apply what is there now
        out += got
    # grouped by partition (as a replay reads them); poll keeps each partition's offset
    # order and the sort is stable
    out.sort(key=attrgetter("partition"))
    return out


def ranges_of(records: list[Record], offsets: dict[int, int]) -> dict[int, tuple[int, int]]:
    """The batch's offset range per partition: from the next uncommitted offset to past its
    last record (records grouped by partition, in offset order)."""
    ranges: dict[int, tuple[int, int]] = {}
    for r in records:
        lo = ranges.get(r.partition, (offsets[r.partition], 0))[0]
        ranges[r.partition] = (lo, r.offset + 1)
    return ranges


@dataclass(frozen=True)
class Cut:
    """One batch as the child cut and decoded it."""

    ranges: dict[int, tuple[int, int]]
    max_ts_before: dict[int, int]
    ingest_time_ms: int
    result: IngestResult
    records: int
    record_ts: np.ndarray  # each record's log timestamp (end-to-end delay metrics)


@dataclass(frozen=True)
class FetchSpec:
    """What the child needs to start: where to read, from where, and how to cut."""

    kafka: KafkaConfig
    root: str
    source: StreamSource
    key_fields: list[str]
    partitions: list[int]
    offsets: dict[int, int]
    max_ts: dict[int, int]
    max_batch: int
    max_wait_ms: int


class FetcherError(RuntimeError):
    """The child failed in a way a retry cannot fix (its exception, re-raised here)."""


class Fetcher:
    """The runner's side of the child: start it, take its batches, stop it.

    The child starts (and imports what it needs) when this is built; :meth:`begin` tells it
    where to read, once the runner knows its committed offsets. The runner sends ``"need"``
    (cut the next batch now; answered by a cut or ``("idle", None)`` when nothing came within
    ``max_wait_ms``), ``"more"`` (one read-ahead credit back, after taking a batch cut ahead)
    and ``"stop"``. The child sends ``("cut", (Cut, ahead))``, ``("idle", None)``,
    ``("unavailable", text)`` (a failed poll it retries) and ``("error", exception)`` (it
    stops).
    """

    def __init__(self, client: str = "confluent") -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        here = str(Path(__file__).resolve().parents[2])  # the dir holding braid_streaming
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from braid_streaming.fetcher import main; main()",
             str(theirs.fileno()), client],
            pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        self._conn = Connection(ours.detach())
        self._asked = False  # a "need" is unanswered
        self._finalizer = weakref.finalize(self, _reap, self._proc, self._conn)

    def begin(self, spec: FetchSpec) -> None:
        """Start reading ``spec``'s partitions from its offsets."""
        self._conn.send(spec)

    def take(self, timeout: float, unavailable: Callable[[str], None]) -> Cut | None:
        """The next batch: one cut ahead if the child has it ready, else the one it cuts now;
        None if none came within ``timeout`` seconds (an unanswered ask is answered later).

        Raises:
            FetcherError: the child raised (its exception is the cause) or exited.
        """
        deadline = time.monotonic() + timeout
        try:
            if not self._asked and not self._conn.poll(0):
                self._conn.send("need")
                self._asked = True
            while True:
                if not self._conn.poll(max(0.0, deadline - time.monotonic())):
                    return None
                kind, body = self._conn.recv()
                if kind == "cut":
                    got, ahead = body
                    if ahead:
                        self._send("more")
                    else:
                        self._asked = False
                    return got  # type: ignore[no-any-return]
                if kind == "idle":
                    self._asked = False
                    return None
                if kind == "unavailable":
                    unavailable(body)
                    continue
                raise FetcherError(f"the fetch process failed: {body}") from body
        except (EOFError, OSError) as e:
            raise FetcherError(f"the fetch process exited (code {self._proc.poll()})") from e

    def _send(self, msg: str) -> None:
        try:
            self._conn.send(msg)
        except OSError:
            pass  # it died after sending a whole batch: the next take says so

    def close(self) -> None:
        """Stop the child (it drops what it cut ahead) and wait for it (once)."""
        self._finalizer()


def _reap(proc: subprocess.Popen[bytes], conn: Connection) -> None:
    try:
        conn.send("stop")
    except OSError:
        pass
    conn.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------- the child


def _serve(conn: Connection) -> None:
    from braid_streaming.log import open_log

    spec: FetchSpec | str = conn.recv()
    if not isinstance(spec, FetchSpec):  # "stop": the runner closed before it started
        return
    log = open_log(spec.kafka, spec.root)
    topic, limit = spec.source.topic, spec.max_batch
    decoder = Decoder(spec.source, spec.key_fields)
    offsets, max_ts = dict(spec.offsets), dict(spec.max_ts)
    log.assign(topic, spec.partitions, {p: offsets[p] for p in spec.partitions})
    credits, need = AHEAD, False
    buffer: list[Record] = []  # polled, not cut yet: at most one batch

    def unavailable(e: LogUnavailableError) -> None:
        conn.send(("unavailable", str(e)))

    def send(records: list[Record], ahead: bool) -> None:  # records grouped by partition
        nonlocal max_ts
        ranges = ranges_of(records, offsets)
        now = time.time_ns() // 1_000_000
        result = decoder.decode(records, max_ts, now)
        stamps = np.fromiter((r.timestamp_ms for r in records), np.int64, len(records))
        conn.send(("cut", (Cut(ranges, max_ts, now, result, len(records), stamps), ahead)))
        offsets.update({p: e for p, (_, e) in ranges.items()})
        max_ts = dict(result.max_ts)

    try:
        while True:
            full = len(buffer) >= limit
            idle = full and not credits and not need  # nothing to do but wait for the runner
            while conn.poll(READ_AHEAD_S if idle else 0.0):
                msg = conn.recv()
                if msg == "stop":
                    return
                if msg == "need":
                    need = True
                else:
                    credits += 1
                idle = False
            if need:  # the runner waits: cut now (what the buffer holds comes first)
                records, buffer, need = cut(log, limit, spec.max_wait_ms, unavailable,
                                            buffer), [], False
                if records:
                    send(records, ahead=False)
                else:
                    conn.send(("idle", None))
            elif full and credits:  # a backlog: cut a whole batch before it is asked for
                # a prefix of the buffer holds a prefix of each partition's records
                records, buffer, credits = buffer[:limit], buffer[limit:], credits - 1
                records.sort(key=attrgetter("partition"))  # stable: offset order within each
                send(records, ahead=True)
            elif not full:
                try:
                    buffer += log.poll(limit - len(buffer), timeout=READ_AHEAD_S)
                except LogUnavailableError as e:
                    unavailable(e)
                    time.sleep(READ_AHEAD_S)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the runner is gone
    except Exception as e:  # noqa: BLE001 - sent to the runner, which raises it
        try:
            conn.send(("error", e))
        except Exception:  # noqa: BLE001 - unpicklable: send its text
            conn.send(("error", RuntimeError(f"{type(e).__name__}: {e}")))
    finally:
        log.close()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when to stop
    conn = Connection(int(sys.argv[1]))
    # import the client now, while the runner is still starting (the spec comes later)
    importlib.import_module("braid_streaming.log." + sys.argv[2].replace("-", "_"))
    try:
        _serve(conn)
    except (EOFError, OSError):
        pass
    finally:
        conn.close()

