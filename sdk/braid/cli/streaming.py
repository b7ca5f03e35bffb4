"""Streaming commands: ``stream run`` (the embedded runner), ``handoff`` and ``push``."""

from __future__ import annotations

import json
import sys

import click

from braid.cli.main import Context, cli
from braid.errors import BraidError

pass_ctx = click.make_pass_decorator(Context)


def _stream_group() -> click.Group:
    """The ``stream`` group, shared with other modules that add subcommands (e.g. sink)."""
    existing = cli.commands.get("stream")
    if isinstance(existing, click.Group):
        return existing

    @cli.group("stream")
    def stream() -> None:
        """Streaming: the embedded micro-batch runner and the online writer."""

    return stream


stream_group = _stream_group()


@stream_group.command("run")
@click.option("--views", default=None, help="Comma-separated views (default: every online "
              "view reading a StreamSource).")
@click.option("--once", is_flag=True, help="Apply what the log holds now, then exit.")
@click.option("--max-batch", default=50_000, show_default=True, help="Records per batch.")
@click.option("--max-wait-ms", default=200, show_default=True,
              help="Longest wait to fill a batch.")
@click.option("--instance", default=0, show_default=True,
              help="This instance's index: it takes partitions p with p % instances == i.")
@click.option("--instances", default=1, show_default=True, help="How many instances run.")
@click.option("--status-every", default=5.0, show_default=True, help="Seconds between status "
              "lines.")
@click.option("--tile-stats/--no-tile-stats", default=True, show_default=True,
              help="Count aggregated features' values at tile closes into the statistics "
              "snapshots (one instance only; without them, batch counts closes once braid "
              "handoff gives it the tiles).")
@click.option("--cache-keys", default=100_000, show_default=True,
              help="Keys whose stored tiles the runner remembers, so merges need not read "
              "them back (one instance only; about 150 bytes per cached tile; 0 turns the "
              "cache off).")
@click.option("--fetch-process/--no-fetch-process", default=True, show_default=True,
              help="With Kafka, read and decode the next batch in a child process while this "
              "one is applied (it overlaps the waits for the broker and the store, on one core "
              "or two; the local log is always read in-process).")
@pass_ctx
def stream_run(ctx: Context, views: str | None, once: bool, max_batch: int, max_wait_ms: int,
               instance: int, instances: int, status_every: float, tile_stats: bool,
               cache_keys: int, fetch_process: bool) -> None:
    """Run the embedded runner: log -> validated events -> tiles and rows online, exactly once.

    SIGTERM or Ctrl-C finishes and commits the batch in flight, then exits.
    """
    def say(line: str) -> None:
        click.echo(line, err=True)

    runner = ctx.store.stream_runner(
        _split(views), max_batch=max_batch, max_wait_ms=max_wait_ms, instance=instance,
        instances=instances, tile_stats=tile_stats, cache_keys=cache_keys,
        fetch_process=fetch_process, say=say, status_every_s=status_every)
    with runner:
        total = runner.run(once=once)
    click.echo(f"processed {total:,} records")


@cli.command()
@click.option("--view", required=True, help="A view reading a StreamSource.")
@click.option("--at", default=None, help="New cutoff (ISO 8601 with zone, or epoch ms); "
              "default now, floored to the largest hop.")
@click.option("--force", is_flag=True, help="Skip the backfill coverage check.")
@pass_ctx
def handoff(ctx: Context, view: str, at: str | None, force: bool) -> None:
    """Move the batch/stream tile ownership cutoff C of a view forward."""
    from braid_streaming.runner import handoff as do_handoff

    when: int | str | None = int(at) if at and at.lstrip("-").isdigit() else at
    click.echo(do_handoff(ctx.store, view, when, force).render())


class PushInputError(BraidError):
    """The rows given to ``braid push`` are not a JSON list of objects."""


@cli.command()
@click.argument("source")
@click.option("--json", "json_file", required=True,
              help="A JSON file with a list of objects (or one per line); '-' reads stdin.")
@pass_ctx
def push(ctx: Context, source: str, json_file: str) -> None:
    """Validate rows and append them to a stream source's log (all or nothing)."""
    text = sys.stdin.read() if json_file == "-" else _read(json_file)
    rows = _parse_rows(text)
    report = ctx.store.push(source, rows)
    click.echo(f"pushed {report.records:,} records to {report.topic}")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise PushInputError(f"cannot read {path}: {e.strerror}") from None


def _parse_rows(text: str) -> list[dict[str, object]]:
    """A JSON list of objects, or JSON lines."""
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as e:
            raise PushInputError(f"not JSON or JSON lines: {e}") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise PushInputError("expected a JSON list of objects, e.g. [{\"user_id\": 1, ...}]")
    return data


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None
