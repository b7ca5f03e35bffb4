"""Online store benchmark: braid's write and read paths against raw redis-py on the same server.

Starts a private ``redis-server`` (never the machine's shared one), writes N entities, then
times interleaved iterations of the braid read and the raw HMGET it is built on, and prints
p50s and ratios. Not a test: nothing here asserts on time.

    .venv/bin/python bench/bench_online.py --entities 100000 --iters 2000

Materialize is compared with a raw pipelined HSET of the same rows, pre-encoded (fields
``_ts``, ``f:<name>``), and of the same tiles (fields ``<hop>:<tile_start>``),
``--write-rounds`` alternating rounds in one run (medians). braid also gives every key its
garbage-collection expiry (DESIGN §4.6), which a bare HSET does not: a second raw baseline,
HSET + PEXPIRE, sends the same commands braid's write of a fresh key causes.

``--feast`` adds Feast 0.67 on the same server and data (bench/feast_repo.py): the rows go to
a Parquet file; a raw pipelined HSET, braid's full materialize (backfill to its offline store
untimed, then offline store -> Redis) and Feast's ``materialize`` of the same rows take turns
over ``--feast-rounds`` rounds, each into an empty logical database of its own; the
3-projection reads time Feast's ``get_online_features(...).to_dict()`` in the same iterations
as braid and raw, after checking that Feast's values equal braid's. Windowed reads have no
Feast counterpart (said in the output). A Feast failure is printed and the run goes on.

    .venv/bin/python bench/bench_online.py --feast [--entities 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import feast_repo  # bench/feast_repo.py, beside this script; imports Feast only when used
import numpy as np
import pyarrow as pa
import redis
from bench_online_writes import (
    compare_tile_writes,
    compare_writes,
    pipelined_hset,
    row_mappings,
    tile_table,
)
from redis.utils import HIREDIS_AVAILABLE

from braid.definitions import Aggregation, BatchSource, Entity, Feature, FeatureView
from braid.online import OnlineReader
from braid.online.encoding import TileCodec, expiry_ms, key_prefix
from braid.online.redis_store import RedisOnlineStore
from braid.plan import ViewPlan, lower
from braid.repo import load_repo
from braid_batch.backfill import backfill
from braid_batch.materialize import materialize
from braid_batch.testing import make_repo

NOW = 1_700_000_000_000
# The shape of feature_repo's user_txn_stats: 4 windows (4 hops) x 5 functions.
WINDOWS = ["10m", "1h", "24h", "7d"]
FUNCS = ["count", "sum", "mean", "max", "stddev"]
# --feast: each materialize writes its own logical database (flushed before each round).
FEAST_DB, BRAID_DB, RAW_DB, RAW_EXPIRY_DB = 1, 2, 3, 4
# The entities read: 7 alone, then 100 spread over the first 1,300 ids.
SAMPLE_IDS = [7] + [i * 13 for i in range(100)]
# braid's view over the Parquet Feast reads too: the 3 projections of ``make_plan``'s view.
BRAID_DEFS = """
from braid.definitions import BatchSource, Entity, Feature, FeatureView
user = Entity(name="user", join_keys={"user_id": "int64"})
src = BatchSource(name="rows", path="data/rows.parquet", timestamp_field="ts",
                  schema={"user_id": "int64", "ts": "timestamp", "a": "float64",
                          "b": "int64", "c": "string"})
bench = FeatureView(name="bench", entities=[user], source=src, ttl="30d",
                    features=[Feature(name="a", dtype="float64"),
                              Feature(name="b", dtype="int64"),
                              Feature(name="c", dtype="string")])
"""


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


def write(store: RedisOnlineStore, plan: ViewPlan, n: int, tile_entities: int,
          rounds: int) -> pa.Table:
    """Writes the rows and tiles the reads use; returns the rows."""
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
    tables = {hop: tile_table(plan, hop, tile_entities, rng, NOW) for hop in plan.hops}
    total = sum(t.num_rows for t in tables.values())
    t = time.perf_counter()
    for hop, table in tables.items():
        store.write_tiles(plan, hop, table)
    dt = time.perf_counter() - t
    print(f"write_tiles: {total:,} tiles in {dt:.2f}s = {total / dt:,.0f} tiles/s")
    compare_tile_writes(store, plan, tables, rounds)
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
    return rows


def compare(name: str, iters: int, raw: Callable[[], object], braid: Callable[[], object],
            feast: Callable[[], object] | None = None) -> None:
    """p50s and ratios of calls timed in the same iterations, their order rotating."""
    calls = [raw, braid] + ([feast] if feast else [])
    times: list[list[float]] = [[] for _ in calls]
    for i in range(iters):
        for j in range(len(calls)):
            k = (i + j) % len(calls)
            t = time.perf_counter()
            calls[k]()
            times[k].append(time.perf_counter() - t)
    r, b = (statistics.median(ts) * 1e3 for ts in times[:2])
    paired = statistics.median(y / x for x, y in zip(times[0], times[1], strict=True))
    print(f"{name:<40} raw p50 {r:7.3f} ms   braid p50 {b:7.3f} ms   ratio {b / r:5.2f}x"
          f"   median paired ratio {paired:5.2f}x")
    if feast:
        f = statistics.median(times[2]) * 1e3
        print(f"{'':<40} Feast p50 {f:7.3f} ms   Feast/raw {f / r:5.2f}x   Feast/braid "
              f"{f / b:5.2f}x")


def setup_feast(root: Path, rows: pa.Table, port: int) -> Any:
    """Feast's ``FeatureStore`` over the rows, or the reason it could not be built (a str)."""
    try:
        return feast_repo.feast_online_store(root, feast_repo.write_source(root, rows), port,
                                             FEAST_DB)
    except Exception as e:  # noqa: BLE001 - a benchmark reports any setup failure and goes on
        return f"Feast setup failed: {type(e).__name__}: {e}"


def hset_rows(client: redis.Redis, rows: pa.Table, expire_ms: int | None = None
              ) -> Callable[[], float]:
    """A timed raw pipelined HSET of ``rows`` (fields pre-encoded outside the timing, batches
    of 1,000 keys) returning its seconds: the baseline materialize is measured against. With
    ``expire_ms`` each HSET is followed by the key's ``PEXPIRE`` (``pipelined_hset``); on the
    server the expiry costs about as much as the HSET."""
    keys = [f"raw:{{{i}}}" for i in rows.column("user_id").to_pylist()]
    commands = list(zip(keys, row_mappings(rows), strict=True))

    def timed() -> float:
        t = time.perf_counter()
        pipelined_hset(client, commands, expire_ms)
        return time.perf_counter() - t
    return timed


def compare_materialize(root: Path, port: int, fs: Any, rows: pa.Table, rounds: int) -> bool:
    """Raw pipelined HSET, braid's materialize (offline store -> Redis) and Feast's, their
    order rotating, each round into an empty database of its own; prints rows/s and ratios.
    Returns False (with the reason printed) if Feast's materialize fails."""
    repo = load_repo(make_repo(root, BRAID_DEFS))
    backfill(repo, progress=False)  # builds braid's offline store: Feast's Parquet is given too
    braid_db = RedisOnlineStore(f"redis://127.0.0.1:{port}/{BRAID_DB}")
    dbs = {"raw": redis.Redis(port=port, db=RAW_DB), "braid": braid_db.client,
           "Feast": redis.Redis(port=port, db=FEAST_DB),
           "raw+expiry": redis.Redis(port=port, db=RAW_EXPIRY_DB)}
    expire = expiry_ms(repo.plan("bench"))
    sides: dict[str, Callable[[], float]] = {
        "raw": hset_rows(dbs["raw"], rows),
        "braid": lambda: timed_call(lambda: materialize(repo, braid_db, ["bench"], now=NOW)),
        "Feast": lambda: feast_repo.feast_materialize(fs, NOW - 2 * 10**6, NOW + 1000),
        "raw+expiry": hset_rows(dbs["raw+expiry"], rows, expire)}
    times: dict[str, list[float]] = {side: [] for side in sides}
    order = list(sides)
    for r in range(rounds):
        for side in order[r % len(order):] + order[:r % len(order)]:
            dbs[side].flushdb()
            try:
                times[side].append(sides[side]())
            except Exception as e:  # noqa: BLE001 - Feast's failure is reported, the run goes on
                print(f"{side} materialize failed: {type(e).__name__}: {e}")
                return False
    written = ", ".join(f"{side} {db.dbsize():,}" for side, db in dbs.items())
    plan = repo.plan("bench")
    mine = OnlineReader(braid_db, {f"bench:{f}": (plan, f) for f in ("a", "b", "c")})
    sample = [{"user_id": i} for i in SAMPLE_IDS]
    agree = feast_repo.agreement(mine.read(sample, NOW).to_dict(),
                                 feast_repo.feast_read(fs, sample)())
    braid_db.close()
    raw, bm, fm, rx = (rows.num_rows / statistics.median(times[side]) for side in sides)
    print(f"materialize {rows.num_rows:,} rows: median of {rounds} rounds, each into an empty "
          f"db (keys written: {written})")
    print(f"  raw pipelined HSET {raw:>10,.0f} rows/s\n"
          f"  braid materialize  {bm:>10,.0f} rows/s  {bm / raw:5.2f}x raw  "
          "(reads braid's offline store with DuckDB, then write_rows)\n"
          f"  Feast materialize  {fm:>10,.0f} rows/s  {fm / raw:5.2f}x raw  "
          f"braid/Feast {bm / fm:5.2f}x  (reads the Parquet source with its file store)\n"
          f"  raw HSET + PEXPIRE {rx:>10,.0f} rows/s  braid/this {bm / rx:5.2f}x  (the same "
          f"commands braid sends: every key gets its expiry, {expire:,} ms, DESIGN §4.6)")
    print(f"  materialized values, braid vs Feast on {len(sample)} entities: {agree}")
    return True


def timed_call(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--tile-entities", type=int, default=2_000)
    ap.add_argument("--iters", type=int, default=2_000)
    ap.add_argument("--write-rounds", type=int, default=4)
    ap.add_argument("--feast", action="store_true", help="also time Feast 0.67 (see above)")
    ap.add_argument("--feast-rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_redis(workdir)
        try:
            run(port, Path(workdir), args)
        finally:
            proc.terminate()
            proc.wait()


def run(port: int, root: Path, args: argparse.Namespace) -> None:
    plan = make_plan()
    store = RedisOnlineStore(f"redis://127.0.0.1:{port}/0")
    rows = write(store, plan, args.entities, args.tile_entities, args.write_rounds)
    repos = root / "repos"  # beside the redis-server's files: the Parquet, braid's and Feast's repo
    fs = setup_feast(repos, rows, port) if args.feast else None
    if isinstance(fs, str):
        print(fs)
        fs = None
    elif fs is not None and not compare_materialize(repos, port, fs, rows, args.feast_rounds):
        fs = None
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; redis-py parser: "
          f"{'hiredis' if HIREDIS_AVAILABLE else 'pure Python (hiredis not installed)'} "
          "(braid, raw and Feast all read through redis-py)")
    read_projections(store, plan, port, args.iters, fs)
    read_windows(store, plan, port, args, args.feast)
    store.close()


def read_projections(store: RedisOnlineStore, plan: ViewPlan, port: int, iters: int,
                     fs: Any) -> None:
    """1 and 100 entities x 3 projections: raw HMGET, braid and (with ``fs``) Feast."""
    client = redis.Redis(port=port)
    prefix = key_prefix(plan)
    proj = OnlineReader(store, {f"bench:{f}": (plan, f) for f in ("a", "b", "c")})
    fields = ["_ts", "f:a", "f:b", "f:c"]
    one, rows = [{"user_id": SAMPLE_IDS[0]}], [{"user_id": i} for i in SAMPLE_IDS[1:]]
    feast1 = feast100 = None
    if fs is not None:
        feast1, feast100 = feast_repo.feast_read(fs, one), feast_repo.feast_read(fs, rows)
        print(f"read values, braid vs Feast on {len(SAMPLE_IDS)} entities:", feast_repo.agreement(
            proj.read(one + rows, NOW).to_dict(), feast_repo.feast_read(fs, one + rows)()))
    compare("1 entity x 3 projections", iters,
            lambda: client.hmget(f"{prefix}7}}", fields),
            lambda: proj.read(one, NOW).to_dict(), feast1)
    keys = [f"{prefix}{r['user_id']}}}" for r in rows]

    def raw100() -> object:
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.hmget(k, fields)
        return pipe.execute()

    compare("100 entities x 3 projections", iters // 4, raw100,
            lambda: proj.read(rows, NOW).to_dict(), feast100)


def read_windows(store: RedisOnlineStore, plan: ViewPlan, port: int, args: argparse.Namespace,
                 feast: bool) -> None:
    """1 and 100 entities x 4 windows x 5 functions: raw HMGET of the tiles and braid."""
    client = redis.Redis(port=port)
    prefix = key_prefix(plan)
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
    if feast:
        print(f"{'':<40} Feast: not timed, it has no windowed read. Feast 0.67 computes "
              "window aggregations (Stream/BatchFeatureView) in a compute engine when it writes, "
              "and rejects them at read time (\"Time window aggregation is not supported in "
              "online serving\").")
    print("sample:", {k: v for k, v in list(win.read([{"user_id": 7}], NOW).to_dict().items())[:4]})


if __name__ == "__main__":
    main()
