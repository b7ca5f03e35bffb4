"""Commands about serving: ``braid serve`` (the HTTP server) and ``braid get-online``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from braid.cli.main import Context, cli
from braid.errors import BraidError, EntityKeyError

pass_ctx = click.make_pass_decorator(Context)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=6566, show_default=True, type=int, help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Server processes (each holds its own store connections).")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@pass_ctx
def serve(ctx: Context, host: str, port: int, workers: int, log_level: str) -> None:
    """Serve online features (Feast's HTTP shapes), /health, /metrics and the discovery page.

    POST /get-online-features, GET /health, GET /metrics, GET /api/..., and the web page at /.
    """
    try:
        import uvicorn

        from braid.server.app import create_app
    except ImportError as e:
        raise BraidError(f"braid serve needs the server extra ({e.name} is missing): "
                         "pip install 'braid[server]'") from None
    repo = str(Path(ctx.repo).resolve())
    os.environ["BRAID_REPO"] = repo  # read by the worker processes' app factory
    click.echo(f"braid serving {repo} on http://{host}:{port} ({workers} worker(s))")
    if workers == 1:
        uvicorn.run(create_app(repo), host=host, port=port, log_level=log_level,
                    access_log=False)
    else:
        uvicorn.run("braid.server.app:create_app_from_env", factory=True, host=host,
                    port=port, workers=workers, log_level=log_level, access_log=False)


@cli.command("get-online")
@click.option("--entity", "-e", "entities", multiple=True, required=True,
              help="A join key value, KEY=VALUE; repeat a key for several rows.")
@click.option("--features", "-f", default=None,
              help="Comma-separated 'view:feature' references.")
@click.option("--service", "-s", default=None, help="A feature service name.")
@click.option("--full-feature-names", is_flag=True, help="Name outputs view__feature.")
@click.option("--now", default=None,
              help="Read time: ISO 8601 with zone or epoch ms (default: now).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the HTTP server's (Feast-shaped) JSON response.")
@pass_ctx
def get_online(ctx: Context, entities: tuple[str, ...], features: str | None,
               service: str | None, full_feature_names: bool, now: str | None,
               as_json: bool) -> None:
    """Look up online features: values, statuses and event times.

    Example: braid get-online -e user_id=1 -e merchant_id=3 --service fraud_v1
    """
    from braid.server.online import OnlineEndpoint
    from braid.timeutil import to_epoch_ms

    refs = [f.strip() for f in features.split(",") if f.strip()] if features else None
    if (refs is None) == (service is None):
        raise click.UsageError("pass exactly one of --features a:b,c:d or --service NAME")
    endpoint = OnlineEndpoint(ctx.store)
    plan = endpoint.plan(refs, service, full_feature_names)
    columns = parse_entities(entities, {k: str(t) for k, t in plan.keys.items()})
    at = None
    if now is not None:
        at = int(now) if now.lstrip("-").isdigit() else to_epoch_ms(now, "--now")
    response = endpoint.read(refs, service, columns, full_feature_names, now=at)
    if as_json:
        click.echo(json.dumps(response, indent=2))
    else:
        click.echo(render_table(response, len(columns)))


def parse_entities(items: tuple[str, ...], key_types: dict[str, str]) -> dict[str, list[Any]]:
    """``("user_id=1", "user_id=2")`` -> ``{"user_id": [1, 2]}``, typed by the join keys."""
    out: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise EntityKeyError(f"--entity {item!r}: write KEY=VALUE, e.g. user_id=1")
        if key not in key_types:
            raise EntityKeyError(f"--entity {item!r}: no requested view is keyed by '{key}'; "
                                 f"expected: {', '.join(key_types)}")
        value: Any = raw
        if key_types[key] == "int64":
            try:
                value = int(raw)
            except ValueError:
                raise EntityKeyError(f"--entity {item!r}: '{key}' is int64, got {raw!r}"
                                     ) from None
        out.setdefault(key, []).append(value)
    return out


def render_table(response: dict[str, Any], nkeys: int) -> str:
    """One line per (entity row, feature): keys, feature, value, status, event time.

    ``nkeys`` is how many leading results are join keys (Feast puts them first).
    """
    names = response["metadata"]["feature_names"]
    results = response["results"]
    header = ["row", *names[:nkeys], "feature", "value", "status", "event_time"]
    lines: list[list[str]] = []
    rows = len(results[0]["values"]) if results else 0
    for i in range(rows):
        keys = [str(results[k]["values"][i]) for k in range(nkeys)]
        for j in range(nkeys, len(names)):
            r = results[j]
            value = r["values"][i]
            lines.append([str(i), *keys, names[j], "null" if value is None else str(value),
                          r["statuses"][i], r["event_timestamps"][i]])
    widths = [max(len(x) for x in col) for col in zip(header, *lines, strict=True)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *lines])

