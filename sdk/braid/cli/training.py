"""Log-and-wait commands (DESIGN §8, §10): ``braid training-set --from-logs`` and
``braid verify skew`` (also ``braid verify-skew``).

``verify`` is shared with other command modules: ``skew`` joins the group if it exists and
creates it otherwise.
"""

from __future__ import annotations

import sys
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
@click.option("--from-logs", "from_logs", is_flag=True, required=True,
              help="Build from serving logs joined with late labels (log-and-wait).")
@click.option("--service", required=True, help="The feature service whose lookups were logged.")
@click.option("--out", required=True, help="Output Parquet file.")
@click.option("--cutoff", default=None, help="Cutoff C (ISO 8601 with zone or epoch ms; "
              "default: now). Requests mature at C and labels ingested by C count.")
@click.option("--labels", default=None, help="Label source (default: the only one that joins).")
@click.option("--start", default=None, help="Only requests served at or after this time.")
@click.option("--end", default=None, help="Only requests served before this time.")
@pass_ctx
def training_set(ctx: Context, from_logs: bool, service: str, out: str, cutoff: str | None,
                 labels: str | None, start: str | None, end: str | None) -> None:
    """Write a log-and-wait training set (logged values + labels at a cutoff) to Parquet."""
    if not from_logs:
        raise BraidError("training-set builds from logs only: pass --from-logs (point-in-time "
                         "training sets: braid get-historical)")
    result = ctx.store.get_training_set_from_logs(service, labels=labels, start=_time(start),
                                                  end=_time(end), cutoff=_time(cutoff))
    path = result.to_parquet(Path(out))
    origins = result.to_arrow().column("origin").to_pylist()
    click.echo(f"wrote {path}: {len(result):,} rows ({origins.count('logged'):,} logged), "
               f"training set {result.name}")


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
