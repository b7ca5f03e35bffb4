"""Entry point: the ``braid`` group, repository option and error handling (STYLE 13).

Errors braid raises on purpose print one line and exit 1; ``--verbose`` shows the trace.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from braid.errors import BraidError


def default_repo() -> str:
    """BRAID_REPO, else ./feature_repo if it exists, else the current folder."""
    if os.environ.get("BRAID_REPO"):
        return os.environ["BRAID_REPO"]
    return "feature_repo" if Path("feature_repo/braid.yaml").is_file() else "."


class Context:
    """What every command gets: the repository path and a lazily built FeatureStore."""

    def __init__(self, repo: str, verbose: bool) -> None:
        self.repo = repo
        self.verbose = verbose
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from braid.store import FeatureStore

            self._store = FeatureStore(self.repo)
        return self._store


class BraidGroup(click.Group):
    """A group that turns braid errors into one line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BraidError as e:
            if ctx.obj is not None and getattr(ctx.obj, "verbose", False):
                traceback.print_exc()
            click.echo(f"error: {e}", err=True)
            sys.exit(1)


@click.group(cls=BraidGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--repo", "-r", default=default_repo, show_default="feature_repo or .",
              help="Feature repository folder (holds braid.yaml). Env: BRAID_REPO.")
@click.option("--verbose", "-v", is_flag=True, help="Show the full trace on errors.")
@click.version_option(package_name="braid")
@click.pass_context
def cli(ctx: click.Context, repo: str, verbose: bool) -> None:
    """braid: one feature definition, batch and streaming that agree.

    Typical flow: braid apply, braid backfill, braid materialize, braid get-online.
    """
    ctx.obj = Context(repo, verbose)


def main() -> None:
    """Console script entry point."""
    from braid.cli import definitions  # noqa: F401  (registers commands)

    for extra in ("braid.cli.batch", "braid.cli.online", "braid.cli.streaming", "braid.cli.flink",
                  "braid.cli.stats", "braid.cli.training"):
        try:
            __import__(extra)
        except ImportError:
            pass
    cli()
