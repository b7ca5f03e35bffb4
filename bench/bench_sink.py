"""Online writer throughput (``braid stream sink``): Flink's tiles topic -> Redis.

Run: ``python bench/bench_sink.py [--tiles 100000] [--emits 2]``. Produces a tiles topic as
the Flink job writes it (upsert-kafka JSON: key = entity, hop, tile_start; value = the tile's
absolute partial states), each tile emitted ``--emits`` times with growing states, to a
private Tansu (or BRAID_KAFKA_BOOTSTRAP) through confluent-kafka. Then, into separate
databases of one private appendonly redis-server, in the same run:

* the writer (``TileSink`` over the confluent client: decode, ownership cutoffs, the count
  guard that never lowers a tile, offsets committed after each poll);
* the raw baseline: a bare confluent poll loop that HSETs each record's value as it came,
  one redis-py pipeline per poll (no decoding, no guard, no offsets).

Prints records/s of each and their ratio. Not a test.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from braid.compile.flink import tiles_topic  # noqa: E402
from braid.config import KafkaConfig  # noqa: E402
from braid.online.encoding import key_prefix  # noqa: E402
from braid.plan import ViewPlan  # noqa: E402
from braid_streaming.log import open_log  # noqa: E402
from braid_streaming.sink import MemoryOffsets, TileSink  # noqa: E402
from tests.integration.test_stream_sink import T0, H, make_plan  # noqa: E402

POLL = 10_000


def records(tiles: int, emits: int) -> list[tuple[bytes, bytes, int]]:
    """Each tile's states as Flink emits them: the count grows with every emission."""
    rnd = random.Random(1)
    users = max(1, tiles // 10)
    out = []
    for i in range(tiles):
        user, start = i % users, T0 + (i // users) * H
        key = json.dumps({"user_id": user, "hop": H, "tile_start": start}).encode()
        n, s, vmax = 0, 0.0, 0.0
        for _ in range(emits):
            for _ in range(rnd.randrange(1, 4)):
                x = round(rnd.uniform(1, 200), 2)
                n, s, vmax = n + 1, s + x, max(vmax, x)
            value = {"_rows__count__n": n, "amount__sum__s": s, "amount__var__n": n,
                     "amount__var__mean": s / n, "amount__var__m2": 0.0,
                     "amount__max__v": vmax}
            out.append((key, json.dumps(value).encode(), start))
    return out


def sink_rate(plan: ViewPlan, kafka: KafkaConfig, url: str, n: int) -> float:
    from braid.online import RedisOnlineStore

    store = RedisOnlineStore(url)
    with open_log(kafka, Path(".")) as log:
        sink = TileSink(store, [plan], log, MemoryOffsets())
        sink.assign()
        t = time.perf_counter()
        while sink.report.records < n:
            sink.run_once(max_records=POLL, timeout=1.0)
        rate = n / (time.perf_counter() - t)
    written = sink.report.tiles_written
    store.close()
    print(f"{'':10} writer: {written:,} tile writes, {sink.report.tiles_skipped:,} skipped "
          "by the count guard")
    return rate


def raw_rate(plan: ViewPlan, kafka: KafkaConfig, url: str, n: int) -> float:
    import redis

    client = redis.Redis.from_url(url)
    topic, prefix = tiles_topic(plan), key_prefix(plan)
    with open_log(kafka, Path(".")) as log:
        parts = log.partitions(topic)
        log.assign(topic, list(range(parts)), dict.fromkeys(range(parts), 0))
        got, t = 0, time.perf_counter()
        while got < n:
            batch = log.poll(POLL, timeout=1.0)
            pipe = client.pipeline(transaction=False)
            for r in batch:
                k = json.loads(r.key)
                pipe.hset(f"{prefix}{k['user_id']}}}", f"{k['hop']}:{k['tile_start']}", r.value)
            pipe.execute()
            got += len(batch)
        rate = n / (time.perf_counter() - t)
    client.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiles", type=int, default=100_000)
    ap.add_argument("--emits", type=int, default=2)
    args = ap.parse_args()
    from bench.servers import kafka_bootstrap, private_redis

    plan = make_plan()
    data = records(args.tiles, args.emits)
    with (tempfile.TemporaryDirectory() as tmp, private_redis(Path(tmp) / "redis") as redis,
          kafka_bootstrap() as bootstrap):
        kafka = KafkaConfig(bootstrap=bootstrap)
        with open_log(kafka, Path(tmp)) as log:
            log.create_topic(tiles_topic(plan), partitions=2, compacted=True)
            for lo in range(0, len(data), 50_000):
                log.produce(tiles_topic(plan), data[lo:lo + 50_000])
            log.flush()
        n = len(data)
        print(f"{n:,} tiles records ({args.tiles:,} tiles x {args.emits} emissions), "
              f"confluent-kafka + Redis")
        writer = sink_rate(plan, kafka, redis.url, n)
        raw = raw_rate(plan, kafka, redis.url[:-1] + "1", n)
        print(f"{'':10} writer {writer:>10,.0f} rec/s   raw consume + HSET {raw:>10,.0f} "
              f"rec/s   ratio {writer / raw:5.2f}")

if __name__ == "__main__":
    main()
