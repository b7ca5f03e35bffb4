"""Log-and-wait commands (DESIGN §8, §10): ``braid training-set --from-logs`` and
``braid verify skew`` (also ``braid verify-skew``).

``verify`` is shared with other command modules: ``skew`` joins the group if it exists and
creates it otherwise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from braid.cli.main import Context, cli
from braid.errors import BraidError

pass_ctx = click.make_pass_decorator(Context)


def _group(name: str, help_text: str) -> click.Group:
    found = cli.commands.get(name)
    if isinstance(found, click.Group):
        return found
    group = click.Group(name, help=help_text)
    cli.add_command(group)
    return group


def _time(text: str | None) -> int | str | None:
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


@cli.command("training-set")
@click.option("--from-logs", "from_logs", is_flag=True,
              help="Build from serving logs joined with late labels (log-and-wait).")
@click.option("--stream", is_flag=True, help="Run the streaming log-and-wait join: read the "
              "service log and the label log from where the last run stopped and append the "
              "rows that matured under <offline>/<project>/_training/<service>/<labels>/.")
@click.option("--service", required=True, help="The feature service whose lookups were logged.")
@click.option("--out", default=None, help="Output Parquet file (--from-logs).")
@click.option("--cutoff", default=None, help="Cutoff C (ISO 8601 with zone or epoch ms; "
              "default: now, or none with --stream). Requests mature at C and labels "
              "ingested by C count; with --stream, labels after C are not read.")
@click.option("--labels", default=None, help="Label source (default: the only one that joins).")
@click.option("--start", default=None, help="Only requests served at or after this time.")
@click.option("--end", default=None, help="Only requests served before this time.")
@click.option("--label-topic", default=None, help="--stream: the log topic labels arrive on "
              "(default: the label source's topic when it is a stream source).")
@click.option("--once", is_flag=True, help="--stream: one step up to the logs' current ends.")
@click.option("--final", is_flag=True, help="--stream with --cutoff: the label log is "
              "complete up to C; emit every request mature at C.")
@click.option("--interval", default=1.0, type=float, show_default=True,
              help="--stream: seconds to wait when both logs have nothing new.")
@pass_ctx
def training_set(ctx: Context, from_logs: bool, stream: bool, service: str, out: str | None,
                 cutoff: str | None, labels: str | None, start: str | None, end: str | None,
                 label_topic: str | None, once: bool, final: bool, interval: float) -> None:
    """Write a log-and-wait training set (logged values + labels at a cutoff) to Parquet,
    or with --stream run the resumable streaming join."""
    if stream:
        if from_logs or out or start or end:
            raise BraidError("--stream does not take --from-logs, --out, --start or --end")
        _stream(ctx, service, labels, label_topic, cutoff, once, final, interval)
        return
    if not from_logs:
        raise BraidError("training-set builds from logs only: pass --from-logs (or --stream; "
                         "point-in-time training sets: braid get-historical)")
    if out is None:
        raise BraidError("--from-logs needs --out FILE")
    result = ctx.store.get_training_set_from_logs(service, labels=labels, start=_time(start),
                                                  end=_time(end), cutoff=_time(cutoff))
    path = result.to_parquet(Path(out))
    origins = result.to_arrow().column("origin").to_pylist()
    click.echo(f"wrote {path}: {len(result):,} rows ({origins.count('logged'):,} logged), "
               f"training set {result.name}")


def _stream(ctx: Context, service: str, labels: str | None, label_topic: str | None,
            cutoff: str | None, once: bool, final: bool, interval: float) -> None:
    from braid.timeutil import to_epoch_ms
    from braid_streaming.logwait_runner import LogWaitRunner

    until = None if cutoff is None else to_epoch_ms(_time(cutoff), "cutoff")
    if final and until is None:
        raise BraidError("--final needs --cutoff")
    runner = LogWaitRunner.for_store(ctx.store, service, labels, label_topic, until=until)
    try:
        while True:
            r = runner.step(final=final)
            if r.requests or r.labels or r.file is not None or once:
                click.echo(f"read {r.requests:,} requests, {r.labels:,} labels; emitted "
                           f"{r.emitted:,} rows" + (f" to {r.file}" if r.file else "")
                           + f"; {r.pending:,} pending")
            if once or runner.done:
                break
            if not r.requests and not r.labels:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        runner.close()


def _skew(ctx: Context, service: str, start: str | None, end: str | None,
          limit: int | None) -> None:
    from braid.timeutil import to_epoch_ms
    from braid_batch.logjoin_skew import skew_report

    store = ctx.store
    store.flush_logs(service)
    lo = None if start is None else to_epoch_ms(_time(start), "start")
    hi = None if end is None else to_epoch_ms(_time(end), "end")
    report = skew_report(store.repo, service, lo, hi, limit)
    click.echo(report.render())
    if report.mismatches:
        sys.exit(1)


_SKEW_OPTIONS = [
    click.option("--service", required=True, help="The feature service whose logs to check."),
    click.option("--start", default=None, help="Only requests served at or after this time."),
    click.option("--end", default=None, help="Only requests served before this time."),
    click.option("--limit", default=None, type=int, help="Check at most this many rows."),
]


def _with_options(f):  # type: ignore[no-untyped-def]
    for option in reversed(_SKEW_OPTIONS):
        f = option(f)
    return f


@_group("verify", "Checks that engines agree (DESIGN §4.8).").command("skew")
@_with_options
@pass_ctx
def verify_skew(ctx: Context, service: str, start: str | None, end: str | None,
                limit: int | None) -> None:
    """Compare logged (served) values with point-in-time values known at serving time.

    Exits 1 if any value differs under DESIGN §4.8.
    """
    _skew(ctx, service, start, end, limit)


@cli.command("verify-skew")
@_with_options
@pass_ctx
def verify_skew_alias(ctx: Context, service: str, start: str | None, end: str | None,
                      limit: int | None) -> None:
    """Alias of ``braid verify skew``."""
    _skew(ctx, service, start, end, limit)
