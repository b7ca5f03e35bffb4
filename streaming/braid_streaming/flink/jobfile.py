"""A compiled :class:`~braid.compile.flink.FlinkJob` as a JSON file, so the managed worker
process runs exactly the job the CLI compiled (and ``braid flink status`` can show it)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from braid.compile.flink import FlinkJob


def write_job(job: FlinkJob, path: Path) -> Path:
    """Write ``job`` atomically to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(job), indent=1))
    tmp.replace(path)
    return path


def read_job(path: Path) -> FlinkJob:
    """The job written by :func:`write_job`."""
    raw = json.loads(path.read_text())
    return FlinkJob(**raw)
