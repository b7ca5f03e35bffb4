"""``braid stream run``: the embedded runner over every selected stream source (DESIGN §7).

One :class:`~braid_streaming.runner.source.SourceRunner` per StreamSource, stepped in turn in
one thread, each with its own log client. SIGTERM / SIGINT finish and commit the current batch,
then stop. A status line is printed every ``status_every_s`` seconds.

Example:
    >>> runner = StreamRunner(FeatureStore("feature_repo"))
    >>> runner.run(once=True)       # apply everything in the log now, then return
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from braid_streaming.log import open_log
from braid_streaming.runner.apply import ChunkHook
from braid_streaming.runner.source import RunnerOptions, Say, SourceRunner
from braid_streaming.runner.state import RunnerError
from braid_streaming.runner.views import source_key_fields, stream_views

if TYPE_CHECKING:
    from braid.store import FeatureStore

#: Give up on ``--once`` when no batch made progress for this long.
ONCE_STALL_S = 60.0


class StreamRunner:
    """The embedded micro-batch runner of a feature store.

    Args:
        store: the feature store (repository, registry, online store, log config).
        views: views to run (default: every online view reading a StreamSource).
        options: batching and partition share.
        hook: called after each applied chunk (tests inject crashes here).
        say: where status lines go (default: nowhere).
        status_every_s: seconds between status lines.
    """

    def __init__(self, store: FeatureStore, views: list[str] | None = None,
                 options: RunnerOptions | None = None, hook: ChunkHook | None = None,
                 say: Say | None = None, status_every_s: float = 5.0) -> None:
        self.store = store
        self.options = options or RunnerOptions()
        self.say: Say = say or (lambda _: None)
        self.status_every_s = status_every_s
        self._stop = threading.Event()
        root = Path(store.config.root)
        self.sources: list[SourceRunner] = []
        for name, (source, plans) in stream_views(store.repo, views).items():
            log = open_log(store.config.kafka, root)
            self.sources.append(SourceRunner(
                store.project, source, plans, log, store.online, store.registry, root,
                source_key_fields(store.repo, name), self.options, hook, self.say,
                kafka=store.config.kafka))
        self._started = False

    def start(self) -> None:
        """Check and repair state, assign partitions (idempotent)."""
        if not self._started:
            for s in self.sources:
                s.start()
            self._started = True

    def step(self) -> int:
        """One batch per source; returns the records processed."""
        self.start()
        return sum(s.step() for s in self.sources)

    def stop(self) -> None:
        """Ask :meth:`run` to stop after the batch in flight."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, once: bool = False, install_signals: bool = True) -> int:
        """Process batches until stopped (or, with ``once``, until the log end seen at start).

        Returns:
            How many records were processed.
        """
        self.start()
        restore = self._install_signals() if install_signals else {}
        targets = [s.log.end_offsets(s.source.topic) for s in self.sources] if once else []
        total, last_status, last_progress = 0, time.monotonic(), time.monotonic()
        try:
            while not self._stop.is_set():
                if once and all(s.caught_up(t) for s, t in zip(self.sources, targets,
                                                               strict=True)):
                    break
                n = self.step()
                total += n
                now = time.monotonic()
                if n:
                    last_progress = now
                elif once and now - last_progress > ONCE_STALL_S:
                    raise RunnerError(f"--once: no records for {ONCE_STALL_S:.0f}s before the "
                                      "log end seen at start; is the broker reachable?")
                if now - last_status >= self.status_every_s:
                    self._status()
                    last_status = now
        finally:
            for sig, handler in restore.items():
                signal.signal(sig, handler)
        self._status()
        return total

    def _status(self) -> None:
        for s in self.sources:
            s.refresh_lag()
            self.say(s.metrics.status_line())

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, frame: FrameType | None) -> None:
            self.say(f"signal {signum}: finishing the current batch, then stopping")
            self._stop.set()

        old: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.getsignal(sig)
            signal.signal(sig, handler)
        return old

    def close(self) -> None:
        for s in self.sources:
            s.close()

    def __enter__(self) -> StreamRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
