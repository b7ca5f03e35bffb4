"""Commands about definitions: init, generate, plan, apply, compile, list, search, describe."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import click

from braid.cli.main import Context, cli

pass_ctx = click.make_pass_decorator(Context)


@cli.command()
@click.argument("path", type=click.Path(file_okay=False), default="feature_repo")
@click.option("--project", default=None, help="Project name (default: the folder name).")
def init(path: str, project: str | None) -> None:
    """Scaffold a new feature repository at PATH."""
    from braid.cli.scaffold import scaffold

    written = scaffold(Path(path), project)
    for p in written:
        click.echo(f"created {p}")
    click.echo(f"next: cd {path} && braid apply")


@cli.command()
@click.option("--events", default=200_000, show_default=True, help="Number of transactions.")
@click.option("--days", default=14, show_default=True, help="Days of history.")
@click.option("--end", "end", default=None,
              help="End of the data, ISO 8601 with zone (default: the current UTC hour).")
@click.option("--seed", default=7, show_default=True)
@click.option("--out", default=None, help="Output folder (default: <repo>/data).")
@pass_ctx
def generate(ctx: Context, events: int, days: int, end: str | None, seed: int,
             out: str | None) -> None:
    """Write deterministic synthetic fraud data (transactions, profiles, chargebacks)."""
    from braid.examples.fraud import FraudDataSpec
    from braid.examples.fraud import generate as run
    from braid.timeutil import HOUR, to_epoch_ms

    end_ms = to_epoch_ms(end, "--end") if end else int(time.time() * 1000) // HOUR * HOUR
    target = Path(out) if out else Path(ctx.repo) / "data"
    t0 = time.perf_counter()
    counts = run(FraudDataSpec(events=events, days=days, end_ms=end_ms, seed=seed), target)
    secs = time.perf_counter() - t0
    summary = ", ".join(f"{v:,} {k}" for k, v in counts.items())
    click.echo(f"wrote {summary} to {target} in {secs:.1f}s")


@cli.command()
@pass_ctx
def plan(ctx: Context) -> None:
    """Show what `braid apply` would change (added, changed, removed; new namespaces)."""
    click.echo(ctx.store.plan().render())


@cli.command()
@pass_ctx
def apply(ctx: Context) -> None:
    """Register the repository's definitions (every version is kept)."""
    diff = ctx.store.apply()
    click.echo(diff.render())


@cli.command("compile")
@click.option("--target", type=click.Choice(["duckdb", "flink", "all"]), default="all",
              show_default=True)
@click.option("--out", default="build", show_default=True, help="Output folder.")
@pass_ctx
def compile_cmd(ctx: Context, target: str, out: str) -> None:
    """Write runnable SQL per view: DuckDB (backfill) and Flink (one statement set)."""
    for path in ctx.store.compile(target, out):
        click.echo(f"wrote {path}")


@cli.command("list")
@click.option("--kind", type=click.Choice(["entity", "source", "view", "service", "label"]),
              default=None)
@pass_ctx
def list_cmd(ctx: Context, kind: str | None) -> None:
    """List the repository's definitions."""
    repo = ctx.store.repo
    groups = {"entity": repo.entities, "source": repo.sources, "view": repo.views,
              "service": repo.services, "label": repo.labels}
    for k, objs in groups.items():
        if kind and k != kind:
            continue
        for name, obj in objs.items():
            click.echo(f"{k:8} {name:28} {obj.description[:70]}")


def _search(ctx: Context, text: str, tag: str | None, owner: str | None, entity: str | None,
            limit: int, as_json: bool) -> None:
    hits = ctx.store.search(text, tag=tag, owner=owner, entity=entity, limit=limit)
    if as_json:
        click.echo(json.dumps([_plain(h) for h in hits], indent=2, default=str))
        return
    if not hits:
        click.echo(f"no match for {text!r}")
        return
    width = shutil.get_terminal_size((100, 20)).columns
    for h in hits:
        d = _plain(h)
        line = f"{d.get('score', 0):6.1f}  {d.get('kind', ''):8} {d.get('name', ''):40} " \
               f"[{d.get('matched', '')}] {d.get('description', '')}"
        click.echo(line[:width])


def _plain(hit: Any) -> dict[str, Any]:
    if isinstance(hit, dict):
        return hit
    if hasattr(hit, "model_dump"):
        return dict(hit.model_dump())
    if hasattr(hit, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(hit)
    return dict(vars(hit))


def _describe(ctx: Context, name: str, as_json: bool) -> None:
    from braid.cli.render import render_description

    info = ctx.store.describe(name)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        click.echo(render_description(info))


_search_options = [
    click.argument("text"),
    click.option("--tag", default=None, help="Only objects with this tag (key or key=value)."),
    click.option("--owner", default=None, help="Only objects of this owner."),
    click.option("--entity", default=None, help="Only views of this entity."),
    click.option("--limit", default=20, show_default=True),
    click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
]


def _with_options(options: list[Any]) -> Any:
    def wrap(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f
    return wrap


@cli.group()
def features() -> None:
    """Discover features: search and describe."""


@features.command("search")
@_with_options(_search_options)
@pass_ctx
def features_search(ctx: Context, **kw: Any) -> None:
    """Ranked search over names, features, tags, descriptions, owners and columns."""
    _search(ctx, **kw)


@cli.command("search")
@_with_options(_search_options)
@pass_ctx
def search_alias(ctx: Context, **kw: Any) -> None:
    """Alias of `braid features search`."""
    _search(ctx, **kw)


@features.command("describe")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def features_describe(ctx: Context, name: str, as_json: bool) -> None:
    """Show a view: schema, windows, source, entities, versions, lineage, coverage."""
    _describe(ctx, name, as_json)


@cli.command("describe")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def describe_alias(ctx: Context, name: str, as_json: bool) -> None:
    """Alias of `braid features describe`."""
    _describe(ctx, name, as_json)
