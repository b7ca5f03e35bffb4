"""Statistics commands: ``braid stats compute | show | drift`` (DESIGN §9, §10)."""

from __future__ import annotations

import click

from braid.cli.main import Context, cli

pass_ctx = click.make_pass_decorator(Context)


@cli.group()
def stats() -> None:
    """Running statistics of numeric features (snapshots in the registry)."""


@stats.command("compute")
@click.option("--views", default=None, help="Comma-separated views (default: all offline).")
@click.option("--start", default=None, help="Start (ISO 8601 with zone, or epoch ms).")
@click.option("--end", default=None, help="End, exclusive (ISO 8601 with zone, or epoch ms).")
@pass_ctx
def compute(ctx: Context, views: str | None, start: str | None, end: str | None) -> None:
    """Compute statistics from the offline store and snapshot them per day (origin batch)."""
    from braid_batch.stats import compute_stats

    store = ctx.store
    names = [v.strip() for v in views.split(",") if v.strip()] if views else None
    for r in compute_stats(store.repo, store.registry, names, _ms(start), _ms(end)):
        click.echo(f"{r.view}: {len(r.stats)} features, {r.chunks} chunks, "
                   f"{len(r.snapshot_ids)} snapshots")


@stats.command("show")
@click.argument("ref")
@click.option("--as-of", default=None, help="Only data with event time <= this time.")
@click.option("--bins", default=10, show_default=True, help="Histogram bins.")
@pass_ctx
def show(ctx: Context, ref: str, as_of: str | None, bins: int) -> None:
    """Count, nulls, mean, std, min, max, quantiles and a text histogram of REF."""
    merged = ctx.store.stats(ref, as_of=_ms(as_of))
    if merged is None:
        raise click.ClickException(f"no statistics of {ref}; run `braid stats compute`")
    click.echo(render(merged.summary(), merged.stats.histogram(bins)))


@stats.command("drift")
@click.argument("ref")
@click.option("--between", nargs=2, required=True, metavar="T1 T2",
              help="Compare data up to T1 with data in (T1, T2].")
@pass_ctx
def drift_cmd(ctx: Context, ref: str, between: tuple[str, str]) -> None:
    """How far REF moved: mean shift in std units and a KS-like distance of the sketches."""
    from braid.definitions.service import resolve_reference
    from braid.stats import drift
    from braid.stats.snapshots import merged_as_of, merged_between

    store = ctx.store
    t1, t2 = _ms(between[0]), _ms(between[1])
    assert t1 is not None and t2 is not None
    view, _ = resolve_reference(ref, store.repo.views)
    ns = store.repo.plan(view.name).namespace
    a = merged_as_of(store.registry, store.project, ref, t1, ns)
    b = merged_between(store.registry, store.project, ref, t1, t2, ns)
    if a is None or b is None:
        raise click.ClickException(f"{ref}: no statistics on one side of {t1}; run "
                                   "`braid stats compute` over both periods")
    d = drift(a.stats, b.stats)
    shift = "n/a" if d["mean_shift"] is None else f"{d['mean_shift']:+.4f}"
    click.echo(f"{ref}: before n={a.stats.n} mean={a.stats.mean:.6g} | after n={b.stats.n} "
               f"mean={b.stats.mean:.6g}")
    click.echo(f"mean shift (std units): {shift}")
    click.echo(f"ks distance: {d['ks']:.4f}")


def render(summary: dict[str, object], histogram: list[tuple[float, float, float]],
           width: int = 40) -> str:
    """The text of ``braid stats show``."""
    lines = [f"{summary['ref']}  [{summary['start']}, {summary['end']})  "
             f"population={summary['population']} chunks={summary['chunks']}"]
    for k in ("count", "nulls", "mean", "std", "min", "max"):
        v = summary[k]
        lines.append(f"  {k:<6} {v:.6g}" if isinstance(v, float) else f"  {k:<6} {v}")
    qs = summary.get("quantiles") or {}
    assert isinstance(qs, dict)
    lines.append("  quantiles " + "  ".join(f"p{round(p * 100)}={v:.6g}" for p, v in qs.items()))
    top = max((f for _, _, f in histogram), default=0.0) or 1.0
    for lo, hi, f in histogram:
        lines.append(f"  [{lo:>12.6g}, {hi:>12.6g}) {'#' * round(width * f / top):<{width}} "
                     f"{f:6.2%}")
    return "\n".join(lines)


def _ms(text: str | None) -> int | None:
    if text is None:
        return None
    from braid.timeutil import to_epoch_ms

    return to_epoch_ms(int(text) if text.lstrip("-").isdigit() else text, "time")
