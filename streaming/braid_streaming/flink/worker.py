"""The process behind ``braid flink run --local``: runs one compiled job in a PyFlink
MiniCluster and stays alive while it runs (a MiniCluster dies with its Python process,
STACK.md).

Started detached by :func:`braid_streaming.flink.manage.start_local` as
``python -m braid_streaming.flink.worker --job job.json --jar udafs.jar --status status.json``.
It writes its state to the status file (``starting``, ``running`` with the job id,
``finished``, ``failed`` with the cause, e.g. ``braid overflow: ...``, ``stopped``). SIGTERM
or SIGINT stops the job gracefully: a stop-with-savepoint into ``--savepoints`` (the next run
resumes from it), or a cancel if that fails (the retained checkpoints stay,
RETAIN_ON_CANCELLATION). No data moves through py4j.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from braid_streaming.flink.jobfile import read_job

_STOP = {"flag": False}


def _status(path: Path, **fields: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "at": int(time.time() * 1000), **fields}))
    tmp.replace(path)


def _on_signal(signum: int, frame: object) -> None:
    _STOP["flag"] = True


def _stop_job(client: Any, savepoints: str | None) -> str:
    """Stop with a savepoint if possible, else cancel; returns what happened."""
    if savepoints:
        try:
            # PyFlink 2.0.0's stop_with_savepoint calls a 2-argument Java method that Flink
            # 2.0 no longer has; call the 3-argument one (with the format type) directly.
            from pyflink.java_gateway import get_gateway

            fmt = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
            future = client._j_job_client.stopWithSavepoint(False, savepoints, fmt)
            return f"stopped with savepoint {future.get()}"
        except Exception as e:  # a MiniCluster may refuse; the checkpoints remain
            print(f"stop-with-savepoint failed ({str(e).splitlines()[0][:200]}); cancelling",
                  flush=True)
    client.cancel().result()
    return "cancelled (retained checkpoints kept)"


def outcome(client: Any) -> tuple[str, str | None] | None:
    """None while the job runs; once it ended, ``("finished" | "failed" | "canceled",
    why it failed)``. A local MiniCluster shuts down with its job, so a status call that
    fails means the job ended: its execution result tells how."""
    try:
        state = client.get_job_status().result().name
    except Exception:
        state = "ENDED"
    if state not in ("FINISHED", "FAILED", "CANCELED", "ENDED"):
        return None
    if state == "CANCELED":
        return "canceled", None
    error = failure_of(client)
    return ("failed", error) if error else ("finished", None)


def failure_of(client: Any) -> str | None:
    """Why a failed job failed: its ``braid overflow: ...`` line if an int64 sum overflowed
    (DESIGN §4.3), else the first line of the root cause Flink reports."""
    from braid_streaming.flink.runner import overflow_cause

    try:
        client.get_job_execution_result().result()
    except Exception as e:  # a py4j error holding the Java trace
        text = str(e)
        lines = [t.strip() for t in text.splitlines() if "Caused by:" in t]
        return overflow_cause(text) or (lines[-1] if lines else text.splitlines()[0])[:500]
    return None


def run(job_path: Path, jar: Path, status: Path, savepoints: str | None,
        poll_s: float = 1.0) -> int:
    """Run the job until it ends or a stop signal arrives; returns the exit code."""
    from braid_streaming.flink.runner import statement_set, table_env

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    job = read_job(job_path)
    _status(status, state="starting")
    env = table_env(job, jar)
    result = statement_set(env, job).execute()
    client = result.get_job_client()
    job_id = str(client.get_job_id())
    restored = job.settings.get("execution.state-recovery.path")
    _status(status, state="running", job_id=job_id, restored_from=restored)
    print(f"job {job_id} running" + (f", restored from {restored}" if restored else ""),
          flush=True)
    last_check = 0.0
    while not _STOP["flag"]:
        time.sleep(0.1)
        if time.monotonic() - last_check < poll_s:
            continue
        last_check = time.monotonic()
        ended = outcome(client)
        if ended is not None:
            state, error = ended
            _status(status, state=state, job_id=job_id, **({"error": error} if error else {}))
            print(f"job {job_id} {state}" + (f": {error}" if error else ""), flush=True)
            return 0 if state == "finished" else 1
    how = _stop_job(client, savepoints)
    _status(status, state="stopped", job_id=job_id, how=how)
    print(f"job {job_id} {how}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="braid-flink-worker")
    parser.add_argument("--job", required=True, type=Path)
    parser.add_argument("--jar", required=True, type=Path)
    parser.add_argument("--status", required=True, type=Path)
    parser.add_argument("--savepoints", default=None)
    args = parser.parse_args(argv)
    try:
        return run(args.job, args.jar, args.status, args.savepoints)
    except Exception as e:
        traceback.print_exc()
        _status(args.status, state="failed", error=str(e).splitlines()[0][:500])
        return 1


if __name__ == "__main__":
    sys.exit(main())
