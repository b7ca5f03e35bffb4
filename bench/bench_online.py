"""Online store benchmark: braid's write and read paths against raw redis-py on the same server.

Starts a private ``redis-server`` (never the machine's shared one), writes N entities, then
times interleaved iterations of the braid read and the raw HMGET it is built on, and prints
p50s and ratios. Not a test: nothing here asserts on time.

    .venv/bin/python bench/bench_online.py --entities 100000 --iters 2000

Materialize is compared with a raw pipelined HSET of the same rows, pre-encoded (fields
``_ts``, ``f:<name>``), ``--write-rounds`` alternating rounds in one run (medians).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from braid.definitions import Aggregation, BatchSource, Entity, Feature, FeatureView
from braid.online import OnlineReader
from braid.online.encoding import TileCodec, key_prefix
from braid.online.redis_store import RedisOnlineStore
from braid.plan import ViewPlan, lower

NOW = 1_700_000_000_000
# The shape of feature_repo's user_txn_stats: 4 windows (4 hops) x 5 functions.
WINDOWS = ["10m", "1h", "24h", "7d"]
FUNCS = ["count", "sum", "mean", "max", "stddev"]


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "yes", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def make_plan() -> ViewPlan:
    user = Entity(name="user", join_keys={"user_id": "int64"})
    src = BatchSource(name="txn", path="t/*.parquet", timestamp_field="ts",
                      schema={"user_id": "int64", "ts": "timestamp", "a": "float64",
                              "b": "int64", "c": "string"})
    view = FeatureView(
        name="bench", entities=[user], source=src, ttl="30d",
        features=[Feature(name="a", dtype="float64"), Feature(name="b", dtype="int64"),
                  Feature(name="c", dtype="string")],
        aggregations=[Aggregation(column="a", function=f, window=w)
                      for w in WINDOWS for f in FUNCS])
    return lower(view, "bench")


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


def write(store: RedisOnlineStore, plan: ViewPlan, n: int, tile_entities: int,
          rounds: int) -> None:
    rng = np.random.default_rng(0)
    rows = pa.table({"user_id": np.arange(n), "_ts": NOW - rng.integers(0, 10**6, n),
                     "_ct": pa.nulls(n, pa.int64()), "a": rng.standard_normal(n) * 100,
                     "b": rng.integers(0, 10**9, n), "c": [f"city{i % 97}" for i in range(n)]})
    t = time.perf_counter()
    store.write_rows(plan, rows)
    dt = time.perf_counter() - t
    print(f"write_rows: {n:,} rows in {dt:.2f}s = {n / dt:,.0f} rows/s")
    compare_writes(store, plan, rows, rounds)
    t = time.perf_counter()
    store.write_rows(plan, rows)  # all older-or-equal: every row compared, none written
    dt = time.perf_counter() - t
    print(f"write_rows (replayed, all lose): {n / dt:,.0f} rows/s")
    total = 0
    t = time.perf_counter()
    for hop in plan.hops:
        codec = TileCodec(plan, hop)
        span = max(a.tiles for a in plan.aggregations if a.hop == hop)
        k = NOW // hop
        ids = np.repeat(np.arange(tile_entities), span)
        starts = np.tile((np.arange(k - span + 1, k + 1)) * hop, tile_entities)
        m = len(ids)
        cols: dict[str, object] = {"user_id": ids, "tile_start": starts}
        for p in codec.partials:
            for col, dtype in zip(p.columns, p.field_types, strict=True):
                cols[col] = (rng.integers(1, 50, m) if dtype == "int64"
                             else rng.standard_normal(m) * 10)
        store.write_tiles(plan, hop, pa.table(cols))
        total += m
    dt = time.perf_counter() - t
    print(f"write_tiles: {total:,} tiles in {dt:.2f}s = {total / dt:,.0f} tiles/s")
    t = time.perf_counter()
    hop = plan.hops[0]
    table = pa.table({"user_id": np.arange(tile_entities), "tile_start": np.full(
        tile_entities, NOW // hop * hop)} | {
        c: (np.ones(tile_entities, np.int64) if d == "int64" else np.ones(tile_entities))
        for p in TileCodec(plan, hop).partials for c, d in zip(p.columns, p.field_types, strict=True)})
    store.merge_tiles(plan, hop, table)
    dt = time.perf_counter() - t
    print(f"merge_tiles: {tile_entities:,} tiles in {dt:.2f}s = {tile_entities / dt:,.0f} "
          "tiles/s")


def compare(name: str, iters: int, raw: Callable[[], object],
            braid: Callable[[], object]) -> None:
    rt: list[float] = []
    bt: list[float] = []
    for i in range(iters):
        pair = ((raw, rt), (braid, bt)) if i % 2 == 0 else ((braid, bt), (raw, rt))
        for fn, acc in pair:
            t = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t)
    r, b = statistics.median(rt) * 1e3, statistics.median(bt) * 1e3
    paired = statistics.median(y / x for x, y in zip(rt, bt, strict=True))
    print(f"{name:<40} raw p50 {r:7.3f} ms   braid p50 {b:7.3f} ms   ratio {b / r:5.2f}x"
          f"   median paired ratio {paired:5.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--tile-entities", type=int, default=2_000)
    ap.add_argument("--iters", type=int, default=2_000)
    ap.add_argument("--write-rounds", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_redis(workdir)
        try:
            run(f"redis://127.0.0.1:{port}/0", args)
        finally:
            proc.terminate()
            proc.wait()


def run(url: str, args: argparse.Namespace) -> None:
    import redis

    plan = make_plan()
    store = RedisOnlineStore(url)
    write(store, plan, args.entities, args.tile_entities, args.write_rounds)
    client = redis.Redis.from_url(url)
    prefix = key_prefix(plan)
    proj = OnlineReader(store, {f"bench:{f}": (plan, f) for f in ("a", "b", "c")})
    fields = ["_ts", "f:a", "f:b", "f:c"]
    compare("1 entity x 3 projections", args.iters,
            lambda: client.hmget(f"{prefix}7}}", fields),
            lambda: proj.read([{"user_id": 7}], NOW).to_dict())
    rows = [{"user_id": i * 13} for i in range(100)]
    keys = [f"{prefix}{r['user_id']}}}" for r in rows]

    def raw100() -> object:
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.hmget(k, fields)
        return pipe.execute()

    compare("100 entities x 3 projections", args.iters // 4, raw100,
            lambda: proj.read(rows, NOW).to_dict())
    names = [a.name for a in plan.aggregations]
    win = OnlineReader(store, {f"bench:{n}": (plan, n) for n in names})
    tile_fields = []
    for hop in plan.hops:
        span = max(a.tiles for a in plan.aggregations if a.hop == hop)
        k = NOW // hop
        tile_fields += [f"{hop}:{j * hop}" for j in range(k - span + 1, k + 1)]
    compare(f"1 entity x 4 windows x 5 fns ({len(tile_fields)} tiles)", args.iters,
            lambda: client.hmget(f"{prefix}7}}", tile_fields),
            lambda: win.read([{"user_id": 7}], NOW).to_dict())
    tile_rows = [{"user_id": i * (args.tile_entities // 100)} for i in range(100)]
    tile_keys = [f"{prefix}{r['user_id']}}}" for r in tile_rows]

    def raw100_tiles() -> object:
        pipe = client.pipeline(transaction=False)
        for k in tile_keys:
            pipe.hmget(k, tile_fields)
        return pipe.execute()

    compare("100 entities x 4 windows x 5 fns", args.iters // 10, raw100_tiles,
            lambda: win.read(tile_rows, NOW).to_dict())
    print("sample:", {k: v for k, v in list(win.read([{"user_id": 7}], NOW).to_dict().items())[:4]})
    store.close()


if __name__ == "__main__":
    main()
