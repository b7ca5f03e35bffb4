"""Flink and online-writer commands: ``braid flink compile|run|status|stop``,
``braid stream sink`` and ``braid verify parity`` (DESIGN §7, §10).

The ``stream`` and ``verify`` groups are shared with other command modules: this module adds
its commands to them if they exist, and creates them otherwise.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

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


flink = _group("flink", "Compile, run and stop the project's Flink job.")
stream = _group("stream", "Streaming: the embedded runner and the online writer.")
verify = _group("verify", "Checks that engines agree (DESIGN §4.8).")


def _bootstrap(ctx: Context) -> str:
    bootstrap = ctx.store.config.kafka.bootstrap
    if not bootstrap:
        raise BraidError("Flink reads Kafka: set kafka.bootstrap in braid.yaml or "
                         "BRAID_KAFKA_BOOTSTRAP")
    return str(bootstrap)


def _paths(ctx: Context) -> Any:
    from braid_streaming.flink.manage import FlinkPaths

    cfg = ctx.store.config
    return FlinkPaths(cfg.resolve(cfg.flink.state_dir))


def _job(ctx: Context, bounded: bool, exact_startup: bool) -> Any:
    from braid_streaming.flink.manage import compile_job, project_cutoffs, startup_for

    store = ctx.store
    plans = store.repo.plans()
    cutoffs = project_cutoffs(store.registry, store.project, plans)
    startup = None
    if exact_startup:
        from braid_streaming.flink.manage import ensure_topics
        from braid_streaming.log import open_log

        with open_log(store.config.kafka, store.config.root) as log:
            startup = startup_for(log, plans, cutoffs)
            ensure_topics(log, store.project, plans)
    flink_cfg = store.config.flink
    return compile_job(store.project, plans, _bootstrap(ctx), cutoffs=cutoffs, startup=startup,
                       bounded=bounded, paths=_paths(ctx),
                       checkpoint_interval_ms=flink_cfg.checkpoint_interval_ms,
                       parallelism=flink_cfg.parallelism)


@flink.command("compile")
@click.option("--out", default=None, help="Write the script to this file instead of stdout.")
@pass_ctx
def flink_compile(ctx: Context, out: str | None) -> None:
    """Print the project's Flink SQL statement set (cutoffs from the registry)."""
    text = _job(ctx, bounded=False, exact_startup=False).text()
    if out:
        Path(out).write_text(text)
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)


@flink.command("run")
@click.option("--local", "mode", flag_value="local", default=True,
              help="A managed MiniCluster process on this machine (default).")
@click.option("--remote", default=None, metavar="HOST:PORT",
              help="Submit to a remote JobManager's REST endpoint instead.")
@click.option("--bounded", is_flag=True, help="Stop at the offsets seen at start (replays).")
@click.option("--fresh", is_flag=True, help="Ignore retained checkpoints (start over).")
@pass_ctx
def flink_run(ctx: Context, mode: str, remote: str | None, bounded: bool, fresh: bool) -> None:
    """Run the job: a detached local process (pid and log under data/flink/), resumed from
    the latest retained checkpoint, or a submission to a remote cluster."""
    from braid_streaming.flink.manage import start_local, submit_remote
    from braid_streaming.flink.udafs import build_udaf_jar

    remote = remote or (ctx.store.config.flink.remote
                        if ctx.store.config.flink.mode == "remote" else None)
    job = _job(ctx, bounded, exact_startup=True)
    jar = build_udaf_jar()
    if remote:
        click.echo(f"submitted job {submit_remote(job, jar, remote)} to {remote}")
        return
    paths = _paths(ctx)
    st = start_local(paths, job, jar, resume=not fresh)
    click.echo(st.render())
    click.echo(f"log: {paths.log}")


@flink.command("status")
@pass_ctx
def flink_status(ctx: Context) -> None:
    """Show whether the managed local run is alive, its job and latest checkpoint."""
    from braid_streaming.flink.manage import status

    click.echo(status(_paths(ctx)).render())


@flink.command("stop")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds before SIGKILL.")
@pass_ctx
def flink_stop(ctx: Context, timeout: float) -> None:
    """Stop the managed local run gracefully (savepoint or cancel; checkpoints are kept)."""
    from braid_streaming.flink.manage import stop

    click.echo("stopped" if stop(_paths(ctx), timeout) else "no Flink run is alive")


@stream.command("sink")
@click.option("--once", is_flag=True, help="Apply what is there now and exit.")
@click.option("--max-records", default=10_000, show_default=True)
@pass_ctx
def stream_sink(ctx: Context, once: bool, max_records: int) -> None:
    """Apply the Flink tiles topics to the online store (count-guarded, stream-owned tiles
    only), committing offsets in the registry. Runs until SIGTERM/Ctrl-C."""
    from braid_streaming.log import open_log
    from braid_streaming.sink import RegistryOffsets, TileSink

    store = ctx.store
    reg, project = store.registry, store.project
    stop = {"flag": False}

    def _on_signal(signum: int, frame: object) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with open_log(store.config.kafka, store.config.root) as log:
        sink = TileSink(store.online, store.repo.plans(), log, RegistryOffsets(reg, project),
                        cutoffs=lambda plan: reg.cutoffs(project, plan.namespace))
        if not sink.plans:
            raise BraidError("no view is computed by Flink (stream source + aggregations)")
        if once:
            while sink.run_once(max_records, timeout=1.0):
                pass
        else:
            click.echo(f"sink: {len(sink.plans)} tiles topic(s) -> online store", err=True)
            sys.stderr.flush()
            sink.run(lambda: stop["flag"], max_records)
    r = sink.report
    click.echo(f"applied {r.records:,} records: {r.tiles_written:,} tiles written, "
               f"{r.tiles_skipped:,} older states skipped, {r.below_cutoff:,} batch-owned, "
               f"{r.tombstones:,} tombstones")


@verify.command("parity")
@click.option("--bootstrap", default=None, help="Kafka for the Flink engine (default: config).")
@click.option("--engines", default="duckdb,runner,flink", show_default=True,
              help="Comma-separated: duckdb, runner (the embedded runner; alias: stream), "
                   "flink.")
@click.option("--events", "n_events", default=400, show_default=True)
@click.option("--seed", default=7, show_default=True)
@pass_ctx
def verify_parity(ctx: Context, bootstrap: str | None, engines: str, n_events: int,
                  seed: int) -> None:
    """Replay one adversarial event log through DuckDB batch, the embedded runner and Flink;
    compare every tile and sampled feature values under DESIGN 4.8; non-zero exit on any
    mismatch."""
    from braid_streaming.parity import run_parity

    if bootstrap is None and "flink" in engines:
        bootstrap = _bootstrap(ctx)
    report = run_parity([e.strip() for e in engines.split(",") if e.strip()],
                        bootstrap=bootstrap, n_events=n_events, seed=seed)
    click.echo(report.render())
    if not report.ok:
        sys.exit(1)
