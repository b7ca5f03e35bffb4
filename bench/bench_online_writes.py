"""Write-path comparisons of bench_online.py: braid's bulk writes against raw redis-py.

Each compares one of materialize's online writes with a raw pipelined HSET of the same keys,
fields and values, pre-encoded outside the timing, in alternating rounds (medians). Not a
test: nothing here asserts on time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from braid.online.encoding import TileCodec, expiry_ms
from braid.online.redis_store import RedisOnlineStore
from braid.plan import ViewPlan


class Meter:
    """Wall time, this process's CPU time (all threads) and the server's CPU time of timed
    calls: CPU is what the machine's load does not inflate (it is shared, so walls are noisy)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.wall: list[float] = []
        self.cpu: list[tuple[float, float]] = []  # (client, server)

    def _server_cpu(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def __call__(self, fn: Callable[[], object]) -> None:
        s0, c0, t0 = self._server_cpu(), time.process_time(), time.perf_counter()
        fn()
        t1, c1, s1 = time.perf_counter(), time.process_time(), self._server_cpu()
        self.wall.append(t1 - t0)
        self.cpu.append((c1 - c0, s1 - s0))

    def rate(self, n: int) -> float:
        return n / statistics.median(self.wall)

    def cpu_text(self, n: int, unit: str) -> str:
        c = statistics.median(x for x, _ in self.cpu) * 1e6 / n
        s = statistics.median(y for _, y in self.cpu) * 1e6 / n
        return f"client {c:.2f} + server {s:.2f} = {c + s:.2f} us/{unit}"


def pipelined_hset(client: Any, commands: list[tuple[str, dict[str, str]]],
                   expire_ms: int | None = None) -> None:
    """The raw baseline: one HSET per (key, mapping), 1,000 per redis-py pipeline; with
    ``expire_ms`` each followed by the key's ``PEXPIRE`` (the commands braid's write of a
    fresh key sends: DESIGN §4.6 gives every key a garbage-collection expiry)."""
    for lo in range(0, len(commands), 1000):
        pipe = client.pipeline(transaction=False)
        for key, mapping in commands[lo:lo + 1000]:
            pipe.hset(key, mapping=mapping)
            if expire_ms is not None:
                pipe.pexpire(key, expire_ms)
        pipe.execute()


def row_mappings(rows: pa.Table) -> list[dict[str, str]]:
    """The benchmark rows' hash fields (``_ts``, ``f:a``, ``f:b``, ``f:c``), pre-encoded as
    braid stores them, for the raw baselines."""
    enc = {"_ts": [str(v) for v in rows.column("_ts").to_pylist()],
           "f:a": [repr(v) for v in rows.column("a").to_pylist()],
           "f:b": [str(v) for v in rows.column("b").to_pylist()],
           "f:c": rows.column("c").to_pylist()}
    return [dict(zip(enc, vals, strict=True)) for vals in zip(*enc.values(), strict=True)]


def report(what: str, unit: str, n: int, raw: Meter, braid: Meter, rounds: int) -> None:
    rr, br = raw.rate(n), braid.rate(n)
    print(f"materialize {what}: raw pipelined HSET {rr:,.0f} {unit}s/s   braid {br:,.0f} "
          f"{unit}s/s   braid/raw throughput {br / rr:5.2f}x  ({rounds} rounds)")
    print(f"  cpu per {unit}: raw {raw.cpu_text(n, unit)}   braid {braid.cpu_text(n, unit)}")


def compare_writes(store: RedisOnlineStore, plan: ViewPlan, rows: pa.Table, rounds: int) -> None:
    """Materialize's row write (``write_rows``) against a raw pipelined HSET of the same rows.

    The raw side gets its fields pre-encoded (outside the timing) and writes keys of another
    prefix; braid's side re-writes the view's keys with ``_ts`` moved forward each round, so
    every row wins its last-write-wins comparison and is written. This is the comparing path
    (the keys exist: ``HMGET`` + ``HSET`` + ``PTTL`` per row); a call whose keys are all
    absent takes the cheaper fresh path (``HSET`` + ``PEXPIRE``), which the first
    ``write_rows:`` line and ``--feast``'s materialize (each into an empty database) time.
    """
    n = rows.num_rows
    ids = rows.column("user_id").to_pylist()
    mappings = row_mappings(rows)
    client = store.client
    raw_m, braid_m = Meter(client), Meter(client)

    def raw(r: int) -> None:
        commands = list(zip([f"rawbench{r}:{{{i}}}" for i in ids], mappings, strict=True))
        raw_m(lambda: pipelined_hset(client, commands))

    def braid(r: int) -> None:
        moved = rows.set_column(1, "_ts", pc.add(rows.column("_ts"), r + 1))
        braid_m(lambda: store.write_rows(plan, moved))

    for r in range(rounds):
        for fn in ((raw, braid) if r % 2 == 0 else (braid, raw)):
            fn(r)
    report("rows (write_rows)", "row", n, raw_m, braid_m, rounds)
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
    holding that hop's tiles, 1000 per pipeline; and against the same HSETs each followed by
    the key's ``PEXPIRE``, which braid sends too (DESIGN §4.6: every key gets a
    garbage-collection expiry; a bare HSET leaves that work out)."""
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
    raw_m, braid_m, exp_m = Meter(client), Meter(client), Meter(client)
    exp = expiry_ms(plan)

    def braid() -> None:
        for hop, table in tables.items():
            store.write_tiles(plan, hop, table)

    sides = [(raw_m, lambda: pipelined_hset(client, raw_cmds)), (braid_m, braid),
             (exp_m, lambda: pipelined_hset(client, raw_cmds, exp))]
    for r in range(rounds):
        for meter, fn in sides[r % 3:] + sides[:r % 3]:
            meter(fn)
    report("tiles (write_tiles)", "tile", total, raw_m, braid_m, rounds)
    er = exp_m.rate(total)
    print(f"  raw HSET + PEXPIRE {er:,.0f} tiles/s   braid/this {braid_m.rate(total) / er:5.2f}x"
          f"   cpu per tile: raw {exp_m.cpu_text(total, 'tile')}")
    client.delete(*{key for key, _ in raw_cmds})
