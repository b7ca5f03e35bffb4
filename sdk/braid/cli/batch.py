"""Batch commands: backfill, materialize, get-historical."""

from __future__ import annotations

from pathlib import Path

import click

from braid.cli.main import Context, cli
from braid.errors import TimestampError

pass_ctx = click.make_pass_decorator(Context)


@cli.command()
@click.option("--start", default=None, help="Start (ISO 8601 with zone, or epoch ms).")
@click.option("--end", default=None, help="End, exclusive (ISO 8601 with zone, or epoch ms).")
@click.option("--views", default=None, help="Comma-separated views (default: all offline).")
@click.option("--include-late", is_flag=True, help="Also count events archived as late.")
@pass_ctx
def backfill(ctx: Context, start: str | None, end: str | None, views: str | None,
             include_late: bool) -> None:
    """Compute tiles and projection rows into the offline store (Parquet)."""
    report = ctx.store.backfill(_time(start), _time(end), _split(views), include_late)
    click.echo(f"backfilled {report.rows_read:,} events -> {report.tiles_written:,} tiles and "
               f"{report.rows_written:,} rows ({report.events_per_second:,.0f} events/s)")


@cli.command()
@click.option("--views", default=None, help="Comma-separated views (default: all online).")
@click.option("--incremental", is_flag=True, help="Only rows newer than the last run.")
@pass_ctx
def materialize(ctx: Context, views: str | None, incremental: bool) -> None:
    """Load the latest rows and live tiles from the offline into the online store."""
    click.echo(ctx.store.materialize(_split(views), incremental=incremental).render())


@cli.command("get-historical")
@click.option("--entities", required=True,
              help="Entity rows: a Parquet/CSV file with the keys and event_timestamp.")
@click.option("--service", default=None, help="A feature service.")
@click.option("--features", default=None, help="Comma-separated view:feature references.")
@click.option("--out", required=True, help="Output Parquet file.")
@click.option("--as-of-known", is_flag=True, help="Only data known (created) by each time.")
@click.option("--timestamp-column", default="event_timestamp", show_default=True)
@click.option("--require-backfill", is_flag=True,
              help="Fail on times no backfill covered instead of computing them from the source.")
@click.option("--scale", is_flag=True, help="Apply the service's scalers (fitted as of --stats-as-of).")
@click.option("--stats-as-of", default=None,
              help="Fit scalers from statistics of data up to this time (the training split).")
@pass_ctx
def get_historical(ctx: Context, entities: str, service: str | None, features: str | None,
                   out: str, as_of_known: bool, timestamp_column: str, require_backfill: bool,
                   scale: bool, stats_as_of: str | None) -> None:
    """Write a point-in-time correct training set for the entity rows to Parquet."""
    source: object = _read_csv(entities, timestamp_column) if entities.endswith(".csv") \
        else entities
    result = ctx.store.get_historical_features(
        source, features=_split(features), service=service, as_of_known=as_of_known,
        timestamp_column=timestamp_column, scale=scale, stats_as_of=_time(stats_as_of),
        require_backfill=require_backfill)
    path = result.to_parquet(Path(out))
    click.echo(f"wrote {path}")


_ZONE = r"(?:[zZ]|[+-]\d\d(?::?\d\d)?)$"


def _read_csv(path: str, column: str) -> object:
    """Entity rows from CSV: the timestamp column as epoch-ms integers or ISO-8601 text with
    a zone (text without one is refused, as the SDK refuses naive times)."""
    import pandas as pd

    frame = pd.read_csv(path)
    if column not in frame.columns or pd.api.types.is_integer_dtype(frame[column]):
        return frame  # missing: the SDK names it; integers: epoch ms as they are
    text = frame[column].astype("string")
    naive = text.notna() & ~text.str.strip().str.contains(_ZONE, regex=True)
    if naive.any():
        raise TimestampError(
            f"{path}: column '{column}' has times without a zone (row {naive.argmax() + 2}: "
            f"{text[naive].iloc[0]!r}); write them with one, e.g. '2026-01-01T00:00:00Z', "
            "or as epoch milliseconds")
    try:
        frame[column] = pd.to_datetime(text, format="ISO8601", utc=True)
    except (ValueError, TypeError) as e:
        raise TimestampError(f"{path}: column '{column}': {e}") from e
    return frame


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _time(text: str | None) -> int | str | None:
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


@cli.command()
@click.argument("view")
@click.option("--namespace", default=None, help="Namespace to serve (default: the current plan's).")
@click.option("--force", is_flag=True, help="Promote even if the namespace was never backfilled.")
@pass_ctx
def promote(ctx: Context, view: str, namespace: str | None, force: bool) -> None:
    """Switch serving of VIEW to a namespace (after `braid plan` showed a new one)."""
    old, new = ctx.store.promote(view, namespace, force)
    if old == new:
        click.echo(f"{view} already serves {new}")
    else:
        click.echo(f"{view} now serves {new} (was {old or 'nothing'}); `braid gc` removes the old")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@pass_ctx
def gc(ctx: Context, dry_run: bool) -> None:
    """Delete storage of namespaces that neither serve nor match the current definitions."""
    removed = ctx.store.gc(dry_run)
    verb = "would remove" if dry_run else "removed"
    for r in removed:
        click.echo(f"{verb} {r.namespace} ({r.view}): {r.offline_files} offline files, "
                   f"{r.online_keys} online keys")
    if not removed:
        click.echo("nothing to remove")
