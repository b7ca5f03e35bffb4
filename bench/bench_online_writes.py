"""Write-path comparisons of bench_online.py: braid's bulk writes against raw redis-py.

Each compares one of materialize's online writes with a raw pipelined HSET of the same keys,
fields and values, pre-encoded outside the timing, in alternating rounds (medians). Not a
test: nothing here asserts on time.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from braid.online.encoding import TileCodec
from braid.online.redis_store import RedisOnlineStore
from braid.plan import ViewPlan


def compare_writes(store: RedisOnlineStore, plan: ViewPlan, rows: pa.Table, rounds: int) -> None:
    """Materialize's row write (``write_rows``) against a raw pipelined HSET of the same rows.

    The raw side gets its fields pre-encoded (outside the timing) and writes keys of another
    prefix; braid's side re-writes the view's keys with ``_ts`` moved forward each round, so
    every row wins its last-write-wins comparison and is written.
    """
    n = rows.num_rows
    ids = rows.column("user_id").to_pylist()
    enc = {"_ts": [str(v) for v in rows.column("_ts").to_pylist()],
           "f:a": [repr(v) for v in rows.column("a").to_pylist()],
           "f:b": [str(v) for v in rows.column("b").to_pylist()],
           "f:c": rows.column("c").to_pylist()}
    mappings = [dict(zip(enc, vals, strict=True)) for vals in zip(*enc.values(), strict=True)]
    client = store.client
    raw_t: list[float] = []
    braid_t: list[float] = []

    def raw(r: int) -> None:
        keys = [f"rawbench{r}:{{{i}}}" for i in ids]
        t = time.perf_counter()
        for lo in range(0, n, 1000):
            pipe = client.pipeline(transaction=False)
            for key, mapping in zip(keys[lo:lo + 1000], mappings[lo:lo + 1000], strict=True):
                pipe.hset(key, mapping=mapping)
            pipe.execute()
        raw_t.append(time.perf_counter() - t)

    def braid(r: int) -> None:
        moved = rows.set_column(1, "_ts", pc.add(rows.column("_ts"), r + 1))
        t = time.perf_counter()
        store.write_rows(plan, moved)
        braid_t.append(time.perf_counter() - t)

    for r in range(rounds):
        for fn in ((raw, braid) if r % 2 == 0 else (braid, raw)):
            fn(r)
    rr, br = n / statistics.median(raw_t), n / statistics.median(braid_t)
    print(f"materialize rows: raw pipelined HSET {rr:,.0f} rows/s   braid write_rows "
          f"{br:,.0f} rows/s   braid/raw throughput {br / rr:5.2f}x  ({rounds} rounds)")
    for r in range(rounds):
        client.delete(*[f"rawbench{r}:{{{i}}}" for i in ids])


def tile_table(plan: ViewPlan, hop: int, entities: int, rng: np.random.Generator,
               now: int) -> pa.Table:
    """Every live tile at ``now`` of ``entities`` entities at ``hop`` (the widest window's
    span), random partials."""
    codec = TileCodec(plan, hop)
    span = max(a.tiles for a in plan.aggregations if a.hop == hop)
    k = now // hop
    ids = np.repeat(np.arange(entities), span)
    m = len(ids)
    cols: dict[str, object] = {"user_id": ids,
                               "tile_start": np.tile((np.arange(k - span + 1, k + 1)) * hop,
                                                     entities)}
    for p in codec.partials:
        for col, dtype in zip(p.columns, p.field_types, strict=True):
            cols[col] = (rng.integers(1, 50, m) if dtype == "int64"
                         else rng.standard_normal(m) * 10)
    return pa.table(cols)


def compare_tile_writes(store: RedisOnlineStore, plan: ViewPlan, tables: dict[int, pa.Table],
                        rounds: int) -> None:
    """Materialize's tile write (``write_tiles``, every hop) against a raw pipelined HSET of
    the same tile fields and values, pre-encoded outside the timing: one HSET per (key, hop)
    holding that hop's tiles, 1000 per pipeline."""
    client = store.client
    raw_cmds: list[tuple[str, dict[str, str]]] = []
    for r, (hop, table) in enumerate(tables.items()):
        values = TileCodec(plan, hop).encode_table(table)
        per_key: dict[str, dict[str, str]] = {}
        for uid, start, value in zip(table.column("user_id").to_pylist(),
                                     table.column("tile_start").to_pylist(), values,
                                     strict=True):
            per_key.setdefault(f"rawtiles{r}:{{{uid}}}", {})[f"{hop}:{start}"] = value
        raw_cmds += per_key.items()
    total = sum(t.num_rows for t in tables.values())
    raw_t: list[float] = []
    braid_t: list[float] = []

    def raw() -> None:
        t = time.perf_counter()
        for lo in range(0, len(raw_cmds), 1000):
            pipe = client.pipeline(transaction=False)
            for key, mapping in raw_cmds[lo:lo + 1000]:
                pipe.hset(key, mapping=mapping)
            pipe.execute()
        raw_t.append(time.perf_counter() - t)

    def braid() -> None:
        t = time.perf_counter()
        for hop, table in tables.items():
            store.write_tiles(plan, hop, table)
        braid_t.append(time.perf_counter() - t)

    for r in range(rounds):
        for fn in ((raw, braid) if r % 2 == 0 else (braid, raw)):
            fn()
    rr, br = total / statistics.median(raw_t), total / statistics.median(braid_t)
    print(f"materialize tiles: raw pipelined HSET {rr:,.0f} tiles/s   braid write_tiles "
          f"{br:,.0f} tiles/s   braid/raw throughput {br / rr:5.2f}x  ({rounds} rounds)")
    client.delete(*{key for key, _ in raw_cmds})
