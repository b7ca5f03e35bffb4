"""The engines ``braid verify parity`` replays the log through, each into its own tile map
``{(entity key, hop, tile_start): {partial column: value}}``.

* :func:`duckdb_tiles`: the compiled DuckDB SQL over the log minus late events (batch).
* :func:`runner_tiles`: the embedded runner itself (``StreamRunner``, as ``braid stream run
  --once`` runs it) on a temporary repository whose local-log topic holds the same records
  in the same partitions and offsets; its tiles are read back from the SQLite online store
  with the online encoding (:class:`~braid.online.encoding.TileCodec`).
* :func:`flink_tiles`: a bounded Flink run against Kafka, tiles read back from the upsert
  topic with braid's Log (last state per key wins), and :func:`flink_dead_letters` from its
  dead-letter topic. No row passes through py4j.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
from sqlglot import exp

from braid.compile.dialect import DUCKDB
from braid.compile.duckdb import DuckDBCompiler
from braid.compile.flink import FlinkCompiler, tiles_topic
from braid.errors import BraidError
from braid.online import OnlineStore
from braid.online.encoding import TileCodec, encode_keys, prune_span
from braid.plan import ViewPlan
from braid_streaming.parity.events import PARTITIONS, VIEW, LogEvent, accepted

TileMap = dict[tuple[tuple[Any, ...], int, int], dict[str, Any]]
_REL = "parity_events"


class ParityError(BraidError):
    """The parity run could not execute (unknown engine, no broker for Flink, a leg that
    cannot be set up)."""


def _tiles_of(con: duckdb.DuckDBPyConnection, plan: ViewPlan, table: pa.Table) -> TileMap:
    con.register(_REL, table)
    compiler = DuckDBCompiler(plan)
    events = compiler.events(exp.Table(this=exp.to_identifier(_REL)), source=plan.source)
    out: TileMap = {}
    for hop in plan.hops:
        rows = con.sql(DUCKDB.render(compiler.tiles_query(events, hop))).to_arrow_table()
        for r in rows.to_pylist():
            key = tuple(r.pop(k) for k in plan.key_names)
            out[(key, hop, r.pop("tile_start"))] = r
    con.unregister(_REL)
    return out


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    return con


def _arrow(rows: Sequence[dict[str, Any]]) -> pa.Table:
    schema = pa.schema([("user_id", pa.int64()), ("ts", pa.int64()), ("amount", pa.float64()),
                        ("country", pa.string())])
    return pa.Table.from_pylist(list(rows), schema=schema)


def duckdb_tiles(plan: ViewPlan, log: list[LogEvent]) -> TileMap:
    """Batch: the compiled DuckDB SQL over every accepted event at once."""
    return _tiles_of(_connect(), plan, _arrow(accepted(log)))


@dataclass
class RunnerRun:
    """What the embedded runner leg produced: its tiles read back from the online store, and
    what else it did that parity checks (dead letters, final offsets, GC)."""

    tiles: TileMap
    #: (partition, offset) of every dead letter with reason ``late``.
    late_letters: set[tuple[int, int]] = field(default_factory=set)
    #: (reason, partition, offset) of the source's dead letters with any other reason.
    other_letters: set[tuple[str, int, int]] = field(default_factory=set)
    offsets: dict[int, int] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)
    batches: int = 0
    #: tiles the store's pruning (DESIGN §4.6, GC only) removed after their last write.
    pruned: int = 0
    #: problems found while reading back (e.g. a tile deleted inside the prune span).
    problems: list[str] = field(default_factory=list)


_REPO_DEFINITIONS = """\
# Written by `braid verify parity`: the parity view on its own source topic.
from braid_streaming.parity.events import parity_view

{view} = parity_view({topic!r})
"""


def _write_repo(root: Path, plan: ViewPlan) -> None:
    """A repository with the SQLite online store and the local log, holding the parity view."""
    (root / "braid.yaml").write_text(
        f"project: {plan.project}\n"
        "registry: sqlite:///data/registry.db\n"
        "offline_store: {path: data/offline}\n"
        "online_store: {type: sqlite, path: data/online.db}\n"
        "kafka: {bootstrap: null, local_log_path: data/log}\n")
    (root / "definitions.py").write_text(
        _REPO_DEFINITIONS.format(view=VIEW, topic=plan.source.topic))


class _TileReader:
    """Reads every tile of the view's namespace back from the online store (``read_hash`` on
    each entity key, fields ``<hop>:<tile_start>`` decoded with :class:`TileCodec`).

    Called after every applied chunk as well as at the end, so a tile the store prunes later
    (GC relative to the key's newest tile, DESIGN §4.6) is still compared at its last write;
    such a tile can receive no accepted event afterwards (window + hop > allowed lateness).
    """

    def __init__(self, store: OnlineStore, plan: ViewPlan, keys: list[tuple[Any, ...]]) -> None:
        self.store, self.plan = store, plan
        self.codecs = {hop: TileCodec(plan, hop) for hop in plan.hops}
        self.keys = keys
        table = pa.table({name: [k[i] for k in keys]
                          for i, name in enumerate(plan.key_names)})
        self.store_keys = encode_keys(plan, table)
        self.seen: TileMap = {}
        self.chunks = 0

    def hook(self, view: str, hop: int | None, chunk: int) -> None:
        if hop is not None:
            self.chunks += 1
            self.read()

    def read(self) -> TileMap:
        """The tiles stored now (also folded into :attr:`seen`)."""
        now: TileMap = {}
        for key, store_key in zip(self.keys, self.store_keys, strict=True):
            for name, raw in self.store.read_hash(store_key).items():
                hop_text, _, start_text = name.partition(":")
                if not (hop_text.isdigit() and start_text.lstrip("-").isdigit()):
                    continue  # guard fields _seq:<runner>.<hop>, projections f:<name>
                hop = int(hop_text)
                codec = self.codecs[hop]
                fields: dict[str, Any] = {}
                for p, state in zip(codec.partials, codec.decode(raw), strict=True):
                    fields.update(zip(p.columns, state or (None,) * len(p.columns),
                                      strict=True))
                now[(key, hop, int(start_text))] = fields
        self.seen.update(now)
        return now


def runner_tiles(plan: ViewPlan, log: list[LogEvent], batch_records: int = 37) -> RunnerRun:
    """The embedded runner (:class:`~braid_streaming.runner.StreamRunner`) over the log.

    A temporary repository (``braid.yaml``: SQLite online store, local log; the environment's
    BRAID_* overrides are ignored) defines the parity view on the same topic. The log's
    records are appended to a local-log topic with the same partition count, in the same
    partitions and order, so every record has the offset it has in the Flink leg's topic and
    the lateness decisions of DESIGN §4.4 are the same. The runner then runs ``--once`` with
    ``batch_records``-record micro-batches (many batches, ranges cut mid-partition) through
    the full intent / guarded merge / commit protocol. Nothing is backfilled, so the runner
    gives each hop the cutoff ``STREAM_OWNS_ALL``: the stream owns every tile and starts at
    offset 0 (DESIGN §6.4). Tiles are read back from the online store.
    """
    from braid.config import load_config
    from braid.store import FeatureStore
    from braid_streaming.ingest import dlq_topic
    from braid_streaming.log import open_log

    assert plan.source.topic is not None
    topic = plan.source.topic
    with tempfile.TemporaryDirectory(prefix="braid-parity-") as tmp:
        root = Path(tmp)
        _write_repo(root, plan)
        fs = FeatureStore(root, config=load_config(root, env={}))
        try:
            repo_plan = fs.repo.plan(VIEW)
            if repo_plan.namespace != plan.namespace:
                raise ParityError(f"the runner's repository lowers the parity view to namespace "
                                  f"{repo_plan.namespace}, the other engines to {plan.namespace}")
            with open_log(fs.config.kafka, root) as local:
                local.create_topic(topic, partitions=PARTITIONS)
                for p in range(PARTITIONS):
                    local.produce(topic, [(None, e.payload, e.row["ts"]) for e in log
                                          if e.partition == p], partition=p)
                local.flush()
                ends = local.end_offsets(topic)
            keys = sorted({tuple(e.row[k] for k in plan.key_names) for e in log})
            reader = _TileReader(fs.online, repo_plan, keys)
            with fs.stream_runner([VIEW], max_batch=batch_records, max_wait_ms=20,
                                  hook=reader.hook, status_every_s=3600.0) as runner:
                runner.run(once=True, install_signals=False)
                offsets = {p: o for s in runner.sources for p, o in s.state.offsets.items()}
                batches = sum(s.state.seq for s in runner.sources)
            final = reader.read()
            out = RunnerRun(reader.seen, offsets=offsets, ends=dict(ends), batches=batches)
            _check_pruned(repo_plan, reader.seen, final, out)
            with open_log(fs.config.kafka, root) as local:
                dlq = dlq_topic(plan.project)
                for part, end in local.end_offsets(dlq).items():
                    for r in local.read_range(dlq, part, 0, end):
                        letter = orjson.loads(r.value or b"{}")
                        where = (letter.get("partition"), letter.get("offset"))
                        if letter.get("topic") != topic:
                            out.problems.append(f"dead letter {letter.get('reason')} from "
                                                f"topic {letter.get('topic')!r}")
                        elif letter.get("reason") == "late":
                            out.late_letters.add(where)
                        else:
                            out.other_letters.add((letter.get("reason"), *where))
        finally:
            fs.online.close()
            fs.registry.close()
    return out


def _check_pruned(plan: ViewPlan, seen: TileMap, final: TileMap, out: RunnerRun) -> None:
    """Tiles seen during the run but gone at the end must be older than their key's newest
    tile of the hop by more than the prune span (GC, DESIGN §4.6); anything else is lost."""
    newest: dict[tuple[tuple[Any, ...], int], int] = {}
    for key, hop, start in final:
        newest[(key, hop)] = max(start, newest.get((key, hop), start))
    for key, hop, start in sorted(set(seen) - set(final)):
        top = newest.get((key, hop))
        if top is not None and start < top - prune_span(plan, hop):
            out.pruned += 1
        else:
            out.problems.append(f"tile {(key, hop, start)} was written, then deleted by the "
                                "store inside its prune span")


def flink_tiles(plan: ViewPlan, log: list[LogEvent], bootstrap: str,
                jar: Any = None) -> TileMap:
    """A bounded Flink run of the compiled job against the broker at ``bootstrap``."""
    from braid_streaming.flink.runner import execute
    from braid_streaming.log import ConfluentLog

    assert plan.source.topic is not None
    topic = plan.source.topic
    with ConfluentLog(bootstrap) as kafka:
        kafka.create_topic(topic, partitions=PARTITIONS)
        for p in range(PARTITIONS):  # sealed: a bounded reader sees every record (STACK.md)
            kafka.produce_sealed(topic, [(None, e.payload, e.row["ts"]) for e in log
                                         if e.partition == p], partition=p)
        execute(FlinkCompiler(plan.project, [plan], bootstrap, bounded=True).compile(), jar)
        out_topic = tiles_topic(plan)
        ends = kafka.end_offsets(out_topic)
        out: TileMap = {}
        for part, end in ends.items():
            for r in kafka.read_range(out_topic, part, 0, end):
                key = orjson.loads(r.key or b"{}")
                tile = (tuple(key[k] for k in plan.key_names), key["hop"], key["tile_start"])
                if not r.value:
                    out.pop(tile, None)
                    continue
                value = orjson.loads(r.value)
                out[tile] = {c: value.get(c) for p in plan.partials_for_hop(tile[1])
                             for c in p.columns}
    return out


def flink_dead_letters(plan: ViewPlan, bootstrap: str) -> set[tuple[str, int, int]]:
    """(reason, partition, offset) of the dead letters a :func:`flink_tiles` run wrote for
    the view's source (the sink is at-least-once: a letter may be written twice)."""
    from braid.compile.flink_source import dlq_topic
    from braid_streaming.log import ConfluentLog

    out: set[tuple[str, int, int]] = set()
    with ConfluentLog(bootstrap) as kafka:
        topic = dlq_topic(plan.project)
        for part, end in kafka.end_offsets(topic).items():
            for r in kafka.read_range(topic, part, 0, end):
                letter = orjson.loads(r.value or b"{}")
                if letter.get("topic") == plan.source.topic:
                    out.add((letter["reason"], letter["partition"], letter["offset"]))
    return out


def unique_names() -> tuple[str, str]:
    """A fresh (project, topic) so a shared broker never mixes runs."""
    tag = uuid.uuid4().hex[:10]
    return f"parity{tag}", f"braid.parity.{tag}.events"
