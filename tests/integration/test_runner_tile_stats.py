"""Stream statistics of aggregated features (DESIGN §9): the embedded runner counts each
owned tile's close once it is final, from the online store's tiles, and the merged snapshots
equal the batch pass over the same events (all batch, all stream, or batch before the cutoff
and stream after), across crashes and replays, and as of a time they ignore later closes."""

from __future__ import annotations

import math
import random
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from braid.stats.snapshots import MergedStats
from braid.store import FeatureStore
from braid.timeutil import DAY, HOUR, MINUTE, tile_start, to_epoch_ms
from braid_batch.stats import compute_stats
from braid_streaming.log.base import partition_for
from braid_streaming.runner import handoff

DEFINITIONS = '''
from braid import Aggregation, BatchSource, Entity, FeatureView, StreamSource

user = Entity(name="user", join_keys={"user_id": "int64"})

SCHEMA = {"user_id": "int64", "merchant_id": "int64", "amount": "float64", "ts": "timestamp"}

txns = StreamSource(
    name="txns", topic="txns", schema=SCHEMA, timestamp_field="ts", allowed_lateness="10m",
    partitions=2,
    batch=BatchSource(name="txns_archive", path="data/txns/*.parquet", timestamp_field="ts",
                      schema=SCHEMA))

# The filter keeps the flush events (amount < 0) out of every tile: they only move M(p).
user_spend = FeatureView(
    name="user_spend", entities=[user], source=txns, filter="amount > 0",
    aggregations=[Aggregation(function="count", window="1h", hop="10m"),
                  Aggregation(column="amount", function="sum", window="1h", hop="10m"),
                  Aggregation(column="amount", function="mean", window="30m", hop="10m"),
                  Aggregation(column="amount", function="max", window="1h", hop="10m"),
                  Aggregation(column="amount", function="stddev", window="1h", hop="10m"),
                  Aggregation(column="amount", function="last", window="1h", hop="10m"),
                  Aggregation(column="amount", function="sum", window="1d")])
'''

REFS = ["user_spend:count_1h", "user_spend:amount_sum_1h", "user_spend:amount_mean_30m",
        "user_spend:amount_max_1h", "user_spend:amount_stddev_1h", "user_spend:amount_last_1h",
        "user_spend:amount_sum_1d"]
T0 = to_epoch_ms("2026-03-01T21:00:00Z")
MIDNIGHT = to_epoch_ms("2026-03-02T00:00:00Z")
SPAN = 6 * HOUR  # the events cross midnight: two day chunks
CUTOFF = MIDNIGHT - 2 * HOUR  # the mixed case: batch before, stream after
USERS = list(range(1, 26))


def make_repo(root: Path, online: dict[str, Any] | None = None) -> Path:
    root.mkdir(parents=True)
    online = online or {"type": "sqlite", "path": "data/online.db"}
    lines = "\n".join(f"  {k}: {v}" for k, v in online.items())
    (root / "braid.yaml").write_text("project: shop\nregistry: sqlite:///data/registry.db\n"
                                     f"offline_store:\n  path: data/offline\n"
                                     f"online_store:\n{lines}\n")
    (root / "definitions.py").write_text(textwrap.dedent(DEFINITIONS))
    return root


def make_events(n: int = 900, seed: int = 11) -> list[dict[str, Any]]:
    """Events over six hours in push order, up to 5 minutes out of order (never late with 10
    minutes of lateness), then one flush event per user two hours later so every data tile
    is final on every partition."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        base = T0 + i * SPAN // n
        out.append({"user_id": rnd.choice(USERS), "merchant_id": rnd.randrange(100, 105),
                    "amount": round(rnd.uniform(1, 120), 2),
                    "ts": base - rnd.randrange(0, 5 * MINUTE)})
    flush = T0 + SPAN + 2 * HOUR
    out += [{"user_id": u, "merchant_id": 100, "amount": -1.0, "ts": flush} for u in USERS]
    return out


def write_twin(root: Path, evs: list[dict[str, Any]]) -> None:
    """The events as the stream source's batch twin (what the archive would hold)."""
    (root / "data" / "txns").mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "user_id": pa.array([e["user_id"] for e in evs], pa.int64()),
        "merchant_id": pa.array([e["merchant_id"] for e in evs], pa.int64()),
        "amount": pa.array([e["amount"] for e in evs], pa.float64()),
        "ts": pa.array([e["ts"] for e in evs], pa.timestamp("ms", tz="UTC")),
    })
    pq.write_table(table, root / "data" / "txns" / "events.parquet")


def run_once(root: Path, **options: Any) -> FeatureStore:
    fs = FeatureStore(root)
    with fs.stream_runner(max_wait_ms=20, **options) as runner:
        runner.run(once=True, install_signals=False)
    return FeatureStore(root)


def all_batch(root: Path, evs: list[dict[str, Any]]) -> FeatureStore:
    make_repo(root)
    write_twin(root, evs)
    fs = FeatureStore(root)
    fs.backfill(progress=False)
    compute_stats(fs.repo, fs.registry)
    return fs


def all_stream(root: Path, evs: list[dict[str, Any]], online: dict[str, Any] | None = None,
               **options: Any) -> FeatureStore:
    make_repo(root, online)
    FeatureStore(root).push("txns", evs)
    return run_once(root, **options)


def active_tiles(evs: list[dict[str, Any]], hop: int, before: int) -> int:
    """How many (user, tile) pairs of ``hop`` hold an event and start before ``before``."""
    return len({(e["user_id"], tile_start(e["ts"], hop)) for e in evs
                if e["amount"] > 0 and tile_start(e["ts"], hop) < before})


def assert_agree(got: MergedStats | None, want: MergedStats | None) -> None:
    """Counts exact; mean and variance under DESIGN §4.8's bounds; min/max to the last bits
    of a sum's rounding; quantiles within both sketches' rank error."""
    assert got is not None and want is not None
    a, b = got.stats, want.stats
    assert (a.count.n, a.count.nulls) == (b.count.n, b.count.nulls) and a.n > 0
    n = a.n
    scale = max(abs(a.min.get()), abs(a.max.get()))
    for x, y, bound in [
        (a.mean, b.mean, 4 * n * 2**-52 * scale),
        (a.moments.get(), b.moments.get(), 4 * n * 2**-52 * (a.mean**2 + a.moments.get())),
        (a.min.get(), b.min.get(), 4 * 2**-52 * scale * 64),
        (a.max.get(), b.max.get(), 4 * 2**-52 * scale * 64),
    ]:
        assert abs(x - y) <= 1e-9 * max(abs(x), abs(y)) + bound, (got.ref, x, y)
    assert a.quantiles is not None and b.quantiles is not None
    eps = a.quantiles.rank_error() + b.quantiles.rank_error()
    probs = [0.1, 0.25, 0.5, 0.75, 0.9]
    for one, other in ((a, b), (b, a)):  # each side's quantile sits at its rank in the other
        assert one.quantiles is not None and other.quantiles is not None
        for p, q in zip(probs, one.quantiles.quantiles(probs) or [], strict=True):
            below = other.quantiles.sketch.get_rank(q, False)  # values < q
            upto = other.quantiles.sketch.get_rank(q, True)  # values <= q (ties count)
            assert below - eps <= p <= upto + eps, (got.ref, p, q, below, upto)


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return make_events()


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, events: list[dict[str, Any]]
          ) -> FeatureStore:
    return all_batch(tmp_path_factory.mktemp("tiles") / "batch", events)


def test_stream_snapshots_equal_batch_snapshots(tmp_path: Path, events: list[dict[str, Any]],
                                                batch: FeatureStore) -> None:
    fs = all_stream(tmp_path / "stream", events, max_batch=97)  # many batches
    end = MIDNIGHT + DAY - 1
    for ref in REFS:
        got, want = fs.stats(ref, as_of=end), batch.stats(ref, as_of=end)
        assert_agree(got, want)
        assert got is not None and set(got.origins) == {"stream"}
        assert got.population == "tile_close"
    hop = 10 * MINUTE
    total = fs.stats("user_spend:count_1h", as_of=end)
    assert total is not None and total.stats.n == active_tiles(events, hop, MIDNIGHT + DAY)


def test_redis_online_store_gives_the_same_snapshots(tmp_path: Path, redis_url: str,
                                                     events: list[dict[str, Any]],
                                                     batch: FeatureStore) -> None:
    fs = all_stream(tmp_path / "stream", events, {"type": "redis", "url": redis_url},
                    max_batch=301)
    end = MIDNIGHT + DAY - 1
    for ref in REFS:
        assert_agree(fs.stats(ref, as_of=end), batch.stats(ref, as_of=end))


def test_as_of_ignores_later_tile_closes(tmp_path: Path, events: list[dict[str, Any]],
                                         batch: FeatureStore) -> None:
    fs = all_stream(tmp_path / "stream", events, max_batch=500)
    first_day = MIDNIGHT - 1
    got = fs.stats("user_spend:count_1h", as_of=first_day)
    assert got is not None and got.end == MIDNIGHT
    # exactly the closes of tiles starting before midnight, none of the later ones
    assert got.stats.n == active_tiles(events, 10 * MINUTE, MIDNIGHT)
    assert got.stats.n < active_tiles(events, 10 * MINUTE, MIDNIGHT + DAY)
    for ref in REFS:
        assert_agree(fs.stats(ref, as_of=first_day), batch.stats(ref, as_of=first_day))
    assert fs.stats("user_spend:count_1h", as_of=T0 - 1) is None


def test_batch_before_cutoff_and_stream_after_equal_all_batch(
        tmp_path: Path, events: list[dict[str, Any]], batch: FeatureStore) -> None:
    root = make_repo(tmp_path / "mixed")
    write_twin(root, [e for e in events if e["ts"] < CUTOFF])
    fs = FeatureStore(root)
    fs.backfill(end=CUTOFF, progress=False)
    handoff(fs, "user_spend", at=CUTOFF)
    fs.materialize(now=CUTOFF)  # the batch tiles the stream's first windows need
    compute_stats(fs.repo, fs.registry)
    fs.push("txns", events)  # the runner starts at the offsets for C - L
    fs = run_once(root, max_batch=113)
    end = MIDNIGHT + DAY - 1
    for ref in REFS:
        got = fs.stats(ref, as_of=end)
        assert got is not None and set(got.origins) == {"batch", "stream"}
        assert_agree(got, batch.stats(ref, as_of=end))


class Crash(Exception):
    """Injected after a chunk merge: the batch's closes are saved, its offsets are not."""


def test_replay_after_a_crash_counts_each_close_once(tmp_path: Path,
                                                     events: list[dict[str, Any]],
                                                     batch: FeatureStore) -> None:
    root = make_repo(tmp_path / "crash")
    FeatureStore(root).push("txns", events)
    calls = {"n": 0}

    def die(view: str, hop: int | None, chunk: int) -> None:
        calls["n"] += 1
        if calls["n"] in (9, 25, 40):  # three crashes, each after closes were saved
            raise Crash()

    for _ in range(3):
        with pytest.raises(Crash):
            run_once(root, max_batch=120, chunk_keys=5, hook=die)
    fs = run_once(root, max_batch=120, chunk_keys=5, hook=die)
    end = MIDNIGHT + DAY - 1
    for ref in REFS:
        assert_agree(fs.stats(ref, as_of=end), batch.stats(ref, as_of=end))
    # a replay of everything the snapshots hold changes nothing either
    again = run_once(root)
    got = again.stats("user_spend:count_1h", as_of=end)
    assert got is not None and got.stats.n == active_tiles(events, 10 * MINUTE, MIDNIGHT + DAY)
    assert not math.isnan(got.stats.mean or 0.0)


def test_a_lagging_partition_closes_early_and_still_equals_batch(tmp_path: Path) -> None:
    """One partition goes quiet after an hour, so min_p M(p) stalls there while the other
    runs five hours ahead: its keys' tiles close early, before their windows are pruned, and
    the totals still equal batch (each key's events come from one partition: exact)."""
    lagging = {u for u in USERS if partition_for(orjson.dumps({"user_id": u}), 2) == 1}
    assert lagging and lagging != set(USERS)
    evs = [e for e in make_events() if not (e["user_id"] in lagging and e["ts"] >= T0 + HOUR)]
    flush = [e for e in evs if e["amount"] < 0]
    data = [e for e in evs if e["amount"] > 0]
    batch = all_batch(tmp_path / "batch", evs)
    root = make_repo(tmp_path / "stream")
    FeatureStore(root).push("txns", data)
    fs = run_once(root, max_batch=60)
    # the quiet partition holds M back at T0 + 1h: only tiles ending 10 minutes before that
    # are final; counting more means the other partition's keys closed early
    got = fs.stats("user_spend:count_1h", as_of=MIDNIGHT + DAY - 1)
    final_only = active_tiles(data, 10 * MINUTE, T0 + HOUR)
    assert got is not None and got.stats.n > final_only
    FeatureStore(root).push("txns", flush + [{**flush[0], "user_id": u} for u in lagging])
    fs = run_once(root, max_batch=60)
    end = MIDNIGHT + DAY - 1
    for ref in REFS:
        assert_agree(fs.stats(ref, as_of=end), batch.stats(ref, as_of=end))
