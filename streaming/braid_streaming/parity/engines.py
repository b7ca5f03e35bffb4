"""The engines ``braid verify parity`` replays the log through, each into its own tile map
``{(entity key, hop, tile_start): {partial column: value}}``.

* :func:`duckdb_tiles`: the compiled DuckDB SQL over the log minus late events (batch).
* :func:`stream_tiles`: the embedded runner's path, as far as it exists: the log in a local
  Log, polled in micro-batches, decoded by :mod:`braid_streaming.ingest` (lateness carried per
  partition) and aggregated by the same compiled DuckDB SQL per micro-batch; the deltas are
  merged with the algebra's merge. (Until ``braid_streaming.runner`` lands this is a
  partial stand-in for it: same decoder, same SQL, no intent/commit protocol.)
* :func:`flink_tiles`: a bounded Flink run against Kafka, tiles read back from the upsert
  topic with braid's Log (last state per key wins). No row passes through py4j.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Sequence
from typing import Any

import duckdb
import orjson
import pyarrow as pa
from sqlglot import exp

from braid.algebra import merge
from braid.compile.dialect import DUCKDB
from braid.compile.duckdb import DuckDBCompiler
from braid.compile.flink import FlinkCompiler, tiles_topic
from braid.plan import ViewPlan
from braid_streaming.parity.events import PARTITIONS, LogEvent, accepted, parity_source

TileMap = dict[tuple[tuple[Any, ...], int, int], dict[str, Any]]
_REL = "parity_events"


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


def _merge_into(plan: ViewPlan, total: TileMap, delta: TileMap) -> None:
    for tile, fields in delta.items():
        old = total.get(tile)
        if old is None:
            total[tile] = fields
            continue
        for p in plan.partials_for_hop(tile[1]):
            a = tuple(old[c] for c in p.columns)
            b = tuple(fields[c] for c in p.columns)
            merged = merge(p.spec, None if all(v is None for v in a) else a,
                           None if all(v is None for v in b) else b)
            old.update(zip(p.columns, merged or (None,) * len(p.columns), strict=True))


def stream_tiles(plan: ViewPlan, log: list[LogEvent], batch_records: int = 37) -> TileMap:
    """Micro-batches of a local Log through the ingest decoder and the DuckDB SQL."""
    from braid_streaming.ingest import Decoder
    from braid_streaming.log import LocalLog

    assert plan.source.topic is not None
    topic = plan.source.topic
    total: TileMap = {}
    con = _connect()
    with tempfile.TemporaryDirectory() as tmp, LocalLog(tmp) as local:
        local.create_topic(topic, partitions=PARTITIONS)
        for p in range(PARTITIONS):
            local.produce(topic, [(None, e.payload, e.row["ts"]) for e in log
                                  if e.partition == p], partition=p)
        local.flush()
        local.assign(topic, list(range(PARTITIONS)), {p: 0 for p in range(PARTITIONS)})
        decoder = Decoder(parity_source(topic), key_fields=plan.key_names)
        max_ts: dict[int, int] = {}
        while True:
            records = local.poll(max_records=batch_records, timeout=0.1)
            if not records:
                break
            result = decoder.decode(records, max_ts=max_ts)
            max_ts = result.max_ts
            on_time = result.on_time.select(["user_id", "ts", "amount", "country"])
            _merge_into(plan, total, _tiles_of(con, plan, on_time))
    return total


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


def unique_names() -> tuple[str, str]:
    """A fresh (project, topic) so a shared broker never mixes runs."""
    tag = uuid.uuid4().hex[:10]
    return f"parity{tag}", f"braid.parity.{tag}.events"
