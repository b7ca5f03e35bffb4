"""Managed Flink runs (``braid flink run|status|stop``, DESIGN §7 "Flink").

A local run is a long-lived process: a local MiniCluster dies with its Python process
(STACK.md), so :func:`start_local` spawns :mod:`braid_streaming.flink.worker` detached (its own
session, output to a log file) and records it under ``<repo>/data/flink/``::

    data/flink/flink.pid        the worker's pid (removed by stop)
    data/flink/flink.log        the worker's output (Flink and braid lines)
    data/flink/status.json      starting | running (job id, restored_from) | stopped | failed
    data/flink/job.json         the compiled job the worker runs
    data/flink/checkpoints/     retained checkpoints (<job id>/chk-N/_metadata)
    data/flink/savepoints/      savepoints written by a graceful stop

Resume: a run restores from the newest ``_metadata`` among the retained checkpoints and
savepoints (``execution.state-recovery.path``, the Flink 2.0 name of
``execution.savepoint.path``). Restored Kafka sources continue from their checkpointed offsets;
only a fresh start uses the startup offsets, computed by :func:`startup_for` as the exact
offsets of time ``C - L`` (DESIGN §6.4) from braid's Log (Tansu answers offsets-for-times
with 0, so the connector's own ``timestamp`` mode is not trusted).

A remote run (:func:`submit_remote`) submits the same statement set to a JobManager's REST
endpoint (``execution.target = remote``) and returns its job id; the cluster then owns the
lifecycle (stop it with ``flink stop`` of Flink's own CLI or the web UI). Its checkpoint
directory must be a path the cluster can reach.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from braid.compile.flink import FlinkCompiler, FlinkJob, skip_reason, tiles_topic
from braid.compile.flink_source import Startup
from braid.errors import BraidError
from braid.plan import ViewPlan
from braid_streaming.flink.jobfile import write_job

RECOVERY_KEY = "execution.state-recovery.path"
WORKER_MODULE = "braid_streaming.flink.worker"


class FlinkManageError(BraidError):
    """A managed Flink run could not be started, found or stopped."""


@dataclass(frozen=True)
class FlinkPaths:
    """Files of the managed run of one repository (under ``flink.state_dir``)."""

    root: Path

    @property
    def pid(self) -> Path:
        return self.root / "flink.pid"

    @property
    def log(self) -> Path:
        return self.root / "flink.log"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def job(self) -> Path:
        return self.root / "job.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def savepoints(self) -> Path:
        return self.root / "savepoints"


@dataclass(frozen=True)
class RunStatus:
    """What ``braid flink status`` shows."""

    running: bool
    pid: int | None
    state: str
    job_id: str | None = None
    restored_from: str | None = None
    latest_checkpoint: str | None = None
    error: str | None = None

    def render(self) -> str:
        head = (f"running (pid {self.pid})" if self.running
                else f"not running (last state: {self.state})")
        lines = [f"flink: {head}"]
        if self.job_id:
            lines.append(f"job id: {self.job_id}")
        if self.restored_from:
            lines.append(f"restored from: {self.restored_from}")
        if self.error:
            lines.append(f"failed: {self.error}")
        lines.append(f"latest checkpoint: {self.latest_checkpoint or 'none'}")
        return "\n".join(lines)


# ------------------------------------------------------------------ compile


def stream_plans(plans: Sequence[ViewPlan]) -> list[ViewPlan]:
    """The plans the Flink job computes."""
    return [p for p in plans if skip_reason(p) is None]


def project_cutoffs(registry: Any, project: str,
                    plans: Sequence[ViewPlan]) -> dict[tuple[str, int], int]:
    """Per (view, hop) the registry's cutoff C (DESIGN §6.4), for the views Flink computes."""
    out: dict[tuple[str, int], int] = {}
    for plan in stream_plans(plans):
        for hop, c in registry.cutoffs(project, plan.namespace).items():
            out[(plan.name, hop)] = c
    return out


def startup_for(log: Any, plans: Sequence[ViewPlan],
                cutoffs: Mapping[tuple[str, int], int]) -> dict[str, Startup]:
    """Per source, exact ``specific-offsets`` at time ``min(C) - L`` (from braid's Log), or
    the earliest offset when the source's views have no cutoff yet."""
    out: dict[str, Startup] = {}
    for plan in stream_plans(plans):
        src = plan.source
        cuts = [c for (view, _), c in cutoffs.items()
                if any(p.name == view and p.source.name == src.name for p in plans)]
        if not cuts:
            out.setdefault(src.name, Startup())
            continue
        assert src.topic is not None
        offsets = log.offsets_for_times(src.topic, min(cuts) - src.allowed_lateness)
        out[src.name] = Startup("specific-offsets", offsets=dict(offsets))
    return out


def compile_job(project: str, plans: Sequence[ViewPlan], bootstrap: str, *,
                cutoffs: Mapping[tuple[str, int], int], startup: Mapping[str, Startup] | None = None,
                bounded: bool = False, paths: FlinkPaths | None = None,
                checkpoint_interval_ms: int = 1000, parallelism: int = 1) -> FlinkJob:
    """The project's job, with checkpoints under ``paths.checkpoints`` when given."""
    return FlinkCompiler(
        project, list(plans), bootstrap, startup=dict(startup or {}), cutoffs=dict(cutoffs),
        bounded=bounded, checkpoint_interval_ms=checkpoint_interval_ms,
        checkpoint_dir=paths.checkpoints.resolve().as_uri() if paths else None,
        parallelism=parallelism,
    ).compile()


def ensure_topics(log: Any, project: str, plans: Sequence[ViewPlan]) -> None:
    """Create the tiles topics (compacted, 1 partition) and the dead-letter topic, so the
    online writer can assign them before the job's first write."""
    from braid_streaming.ingest import dlq_topic

    for plan in stream_plans(plans):
        log.create_topic(tiles_topic(plan), partitions=1, compacted=True)
    log.create_topic(dlq_topic(project), partitions=1)


# ------------------------------------------------------------------ process management


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own finished child (a test, or a CLI in one process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _is_worker(pid: int) -> bool:
    """Whether ``pid`` is a live braid Flink worker (not a zombie, not a reused pid)."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    if state in ("Z", "X"):
        _reap(pid)
        return False
    return WORKER_MODULE.encode() in cmdline


def read_pid(paths: FlinkPaths) -> int | None:
    """The recorded worker pid if that process is alive."""
    try:
        pid = int(paths.pid.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_worker(pid) else None


def latest_checkpoint(paths: FlinkPaths) -> Path | None:
    """The newest complete checkpoint or savepoint (a directory holding ``_metadata``)."""
    found = [*paths.checkpoints.glob("*/chk-*/_metadata"), *paths.savepoints.glob("*/_metadata")]
    if not found:
        return None
    return max(found, key=lambda p: p.stat().st_mtime_ns).parent


def _read_status(paths: FlinkPaths) -> dict[str, Any]:
    try:
        return dict(json.loads(paths.status.read_text()))
    except (OSError, ValueError):
        return {}


def status(paths: FlinkPaths) -> RunStatus:
    """The managed run's state."""
    pid = read_pid(paths)
    st = _read_status(paths)
    ckpt = latest_checkpoint(paths)
    return RunStatus(pid is not None, pid, st.get("state", "never started"), st.get("job_id"),
                     st.get("restored_from"), str(ckpt) if ckpt else None, st.get("error"))


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    errors = [t for t in text if "Error" in t or "Exception" in t]
    return " | ".join((errors or text)[-lines:])[:600]


def start_local(paths: FlinkPaths, job: FlinkJob, jar: Path, *, resume: bool = True,
                wait_running_s: float = 180.0) -> RunStatus:
    """Spawn the worker detached and wait until its job runs (or it finished, if bounded).

    Raises:
        FlinkManageError: a run is already alive, or the worker failed to start (the log's
            last error lines are in the message).
    """
    if (pid := read_pid(paths)) is not None:
        raise FlinkManageError(f"a Flink run is already alive (pid {pid}); "
                               "`braid flink stop` first")
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.checkpoints.mkdir(exist_ok=True)
    paths.savepoints.mkdir(exist_ok=True)
    ckpt = latest_checkpoint(paths) if resume else None
    if ckpt is not None:
        job = replace(job, settings={**job.settings, RECOVERY_KEY: str(ckpt)})
    write_job(job, paths.job)
    paths.status.unlink(missing_ok=True)
    with paths.log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, "--job", str(paths.job), "--jar", str(jar),
             "--status", str(paths.status), "--savepoints", paths.savepoints.resolve().as_uri()],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    paths.pid.write_text(str(proc.pid))
    deadline = time.monotonic() + wait_running_s
    while time.monotonic() < deadline:
        state = _read_status(paths).get("state")
        if state in ("running", "finished"):
            return status(paths)
        if state == "failed" or proc.poll() is not None:
            paths.pid.unlink(missing_ok=True)
            raise FlinkManageError(f"the Flink worker exited ({state or proc.returncode}): "
                                   f"{_tail(paths.log)} (log: {paths.log})")
        time.sleep(0.2)
    raise FlinkManageError(f"the Flink job is not running after {wait_running_s:.0f} s "
                           f"(pid {proc.pid}); see {paths.log}")


def stop(paths: FlinkPaths, timeout_s: float = 60.0) -> bool:
    """Stop the managed run gracefully (SIGTERM: savepoint or cancel, then exit); SIGKILL
    after ``timeout_s``. Returns False if nothing was running."""
    pid = read_pid(paths)
    if pid is None:
        paths.pid.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _is_worker(pid):
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)  # the worker leads its own session
            break
        time.sleep(0.1)
    while not _gone(pid):
        if time.monotonic() > deadline + 10:
            raise FlinkManageError(f"the Flink worker (pid {pid}) does not exit")
        time.sleep(0.1)
    paths.pid.unlink(missing_ok=True)
    return True


def _gone(pid: int) -> bool:
    """Whether the process has fully exited (reaped, or a zombie its parent will reap)."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] in ("Z", "X") and int(fields[1]) != os.getpid()


def submit_remote(job: FlinkJob, jar: Path, address: str) -> str:
    """Submit the statement set to a remote JobManager at ``host:port``; returns the job id.

    Raises:
        FlinkManageError: the address is not ``host:port``.
    """
    from braid_streaming.flink.runner import statement_set, table_env

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise FlinkManageError(f"--remote wants host:port (the JobManager REST endpoint), "
                               f"not {address!r}")
    settings = {**job.settings, "execution.target": "remote", "rest.address": host,
                "rest.port": port}
    remote = replace(job, settings=settings)
    result = statement_set(table_env(remote, jar), remote).execute()
    return str(result.get_job_client().get_job_id())
