"""A small streaming repository and event sets shared by the runner tests.

``make_stream_repo`` writes ``braid.yaml`` (SQLite or Redis online store, local log or Kafka)
and three views on one StreamSource with a Parquet twin: windowed aggregations over two hops,
a filtered merchant view, and a projection view. ``events`` generates valid, out-of-order
(within the allowed lateness) events; ``bad_records`` the raw records the decoder refuses.
"""

from __future__ import annotations

import random
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from braid.reference import reference_features
from braid.store import FeatureStore
from braid.timeutil import HOUR, MINUTE, tile_start

DEFINITIONS = '''
from braid import Aggregation, BatchSource, Entity, Feature, FeatureView, StreamSource

user = Entity(name="user", join_keys={"user_id": "int64"})
merchant = Entity(name="merchant", join_keys={"merchant_id": "int64"})

SCHEMA = {"user_id": "int64", "merchant_id": "int64", "amount": "float64", "ts": "timestamp"}

txns = StreamSource(
    name="txns", topic="txns", schema=SCHEMA, timestamp_field="ts", allowed_lateness="10m",
    partitions=2,
    batch=BatchSource(name="txns_archive", path="data/txns/*.parquet", timestamp_field="ts",
                      schema=SCHEMA))

user_txn = FeatureView(
    name="user_txn", entities=[user], source=txns,
    aggregations=[Aggregation(function="count", window="1h", hop="10m"),
                  Aggregation(column="amount", function="sum", window="1h", hop="10m"),
                  Aggregation(column="amount", function="mean", window="1h", hop="10m"),
                  Aggregation(column="amount", function="max", window="1h", hop="10m"),
                  Aggregation(column="amount", function="stddev", window="1h", hop="10m"),
                  Aggregation(column="amount", function="last", window="1h", hop="10m"),
                  Aggregation(function="count", window="1d")])

merchant_big = FeatureView(
    name="merchant_big", entities=[merchant], source=txns, filter="amount >= 50",
    aggregations=[Aggregation(function="count", window="1h", hop="10m", name="big_count_1h"),
                  Aggregation(column="amount", function="sum", window="1h", hop="10m",
                              name="big_sum_1h")])

user_last = FeatureView(
    name="user_last", entities=[user], source=txns, ttl="1d",
    features=[Feature(name="last_amount", dtype="float64", expr="amount"),
              Feature(name="last_merchant", dtype="int64", expr="merchant_id")])
'''

USERS = list(range(1, 21))
MERCHANTS = list(range(100, 105))


def make_stream_repo(root: Path, online: dict[str, Any] | None = None,
                     bootstrap: str | None = None, topic: str = "txns") -> Path:
    """Write the repository; ``online`` is the ``online_store`` section (default SQLite),
    ``bootstrap`` a Kafka broker (default: the local log)."""
    root.mkdir(parents=True, exist_ok=True)
    online = online or {"type": "sqlite", "path": "data/online.db"}
    lines = "\n".join(f"  {k}: {v}" for k, v in online.items())
    kafka = f"kafka:\n  bootstrap: {bootstrap}\n" if bootstrap else ""
    (root / "braid.yaml").write_text("project: shop\nregistry: sqlite:///data/registry.db\n"
                                     f"offline_store:\n  path: data/offline\n"
                                     f"online_store:\n{lines}\n{kafka}")
    text = textwrap.dedent(DEFINITIONS).replace('topic="txns"', f'topic="{topic}"')
    (root / "definitions.py").write_text(text)
    return root


def base_time() -> int:
    """An hour boundary ~3 h ago: every generated event is in the past (no ``future``)."""
    return tile_start(int(time.time() * 1000) - 3 * HOUR, HOUR)


def events(t0: int, n: int = 600, seed: int = 7) -> list[dict[str, Any]]:
    """Valid events over 90 minutes, in push order, up to 5 minutes out of order (never late
    with 10 minutes of allowed lateness). Includes one exact duplicate."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        base = t0 + i * (90 * MINUTE) // n
        out.append({"user_id": rnd.choice(USERS), "merchant_id": rnd.choice(MERCHANTS),
                    "amount": round(rnd.uniform(1, 120), 2),
                    "ts": base - rnd.randrange(0, 5 * MINUTE)})
    out.insert(n // 2 + 1, dict(out[n // 2]))  # a duplicate: counted twice, by both paths
    return out


def late_event(t0: int) -> dict[str, Any]:
    """An event far behind every partition's M: dead-lettered as ``late``, archived."""
    return {"user_id": USERS[0], "merchant_id": MERCHANTS[0], "amount": 77.0, "ts": t0 - HOUR}


def bad_records(t0: int) -> list[tuple[bytes, str]]:
    """(raw value, expected reason) pairs the decoder must refuse."""
    future = int(time.time() * 1000) + 2 * HOUR
    return [
        (b'{"user_id": 1, "merchant_id": 100, "amount": 3.0, "ts": ', "malformed_json"),
        (b'{"merchant_id": 100, "amount": 3.0, "ts": %d}' % t0, "missing_field"),
        (b'{"user_id": 1, "merchant_id": 100, "amount": NaN, "ts": %d}' % t0, "non_finite"),
        (b'{"user_id": "x", "merchant_id": 100, "amount": 3.0, "ts": %d}' % t0, "wrong_type"),
        (b'{"user_id": 1, "merchant_id": 100, "amount": 3.0, "ts": "2026-01-01T00:00:00"}',
         "naive_timestamp"),
        (orjson.dumps({"user_id": 1, "merchant_id": 100, "amount": 3.0, "ts": future}), "future"),
    ]


def produce_bad(fs: FeatureStore, records: list[tuple[bytes, str]]) -> None:
    """Append raw records to the source topic (``push`` would refuse them)."""
    from braid_streaming.log import open_log

    topic = fs.repo.sources["txns"].topic  # type: ignore[union-attr]
    with open_log(fs.config.kafka, fs.config.root) as log:
        if not log.topic_exists(topic):
            log.create_topic(topic, 2)
        log.produce(topic, [(None, value, 1) for value, _ in records])
        log.flush()


def expected(fs: FeatureStore, view: str, evs: list[dict[str, Any]], keys: list[Any],
             t: int) -> list[dict[str, Any]]:
    """The Python reference's feature values of ``keys`` at ``t``."""
    plan = fs.repo.plan(view)
    return reference_features(plan, evs, [((k,), t) for k in keys])


def online(fs: FeatureStore, view: str, key: str, keys: list[Any], t: int
           ) -> list[dict[str, Any]]:
    """Online values of every feature of ``view`` at ``t``, one dict per key."""
    names = fs.repo.plan(view).feature_names
    res = fs.get_online_features([{key: k} for k in keys], [f"{view}:{n}" for n in names],
                                 now=t).to_dict()
    return [{n: res[n][i] for n in names} for i in range(len(keys))]


def assert_close(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Equal per DESIGN 4.8 (relative 1e-9 for floats, exact otherwise)."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for name, value in w.items():
            if isinstance(value, float) and g[name] is not None:
                assert g[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
            else:
                assert g[name] == value, (name, g, w)


def test_events_are_never_late() -> None:
    evs = events(0)
    running = evs[0]["ts"]
    for e in evs:
        assert e["ts"] >= running - 10 * MINUTE
        running = max(running, e["ts"])
