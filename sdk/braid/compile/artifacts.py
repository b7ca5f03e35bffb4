"""Compiled artifacts on disk: what ``braid compile`` writes and the golden tests compare."""

from __future__ import annotations

from pathlib import Path

from braid.compile.duckdb import DuckDBCompiler
from braid.errors import BraidError
from braid.repo import Repo

TARGETS = ("duckdb", "flink")


def render_artifacts(repo: Repo, target: str = "all", bootstrap: str | None = None) -> dict[str, str]:
    """Relative path -> file content for every view and target.

    Paths in the DuckDB files are written relative to the repository root (the SQL is run
    from there), so the artifacts do not depend on where the repository lives.
    """
    if target not in (*TARGETS, "all"):
        raise BraidError(f"unknown compile target {target!r}; use duckdb, flink or all")
    out: dict[str, str] = {}
    if target in ("duckdb", "all"):
        for plan in repo.plans():
            if plan.offline:
                out[f"duckdb/{plan.name}.sql"] = DuckDBCompiler(plan).script(Path("."))
    if target in ("flink", "all"):
        flink = _flink_statement_set(repo, bootstrap or repo.config.kafka.bootstrap
                                     or "localhost:9092")
        if flink is not None:
            out[f"flink/{repo.project}.sql"] = flink
    return out


def _flink_statement_set(repo: Repo, bootstrap: str) -> str:
    from braid.compile.flink import compile_project

    return compile_project(repo.project, repo.plans(), bootstrap)


def write_artifacts(repo: Repo, target: str, out: Path) -> list[Path]:
    """Write :func:`render_artifacts` under ``out``; returns the paths written."""
    written = []
    for rel, text in render_artifacts(repo, target).items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
