"""The online layout, pinned byte for byte (DESIGN §6), and its text encodings."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest

from braid.definitions import Aggregation, BatchSource, Entity, Feature, FeatureView
from braid.errors import StoreError
from braid.online import OnlineStore, SqliteOnlineStore
from braid.online.encoding import (
    TileCodec,
    encode_floats,
    encode_keys,
    escape_key_part,
    expiry_ms,
    prune_span,
)
from braid.online.tilemerge import decode_columns
from braid.plan import ViewPlan, lower
from braid.timeutil import DAY, HOUR, MINUTE

H = 10 * MINUTE


@pytest.fixture(scope="module")
def plan() -> ViewPlan:
    user = Entity(name="user", join_keys={"user_id": "int64"})
    shop = Entity(name="shop", join_keys={"shop": "string"})
    src = BatchSource(name="txn", path="t/*.parquet", timestamp_field="ts",
                      created_timestamp_field="ct",
                      schema={"user_id": "int64", "shop": "string", "ts": "timestamp",
                              "ct": "timestamp", "amount": "float64", "city": "string",
                              "vip": "bool"})
    view = FeatureView(
        name="golden", entities=[user, shop], source=src, ttl="1d",
        features=[Feature(name="amount", dtype="float64"), Feature(name="city", dtype="string"),
                  Feature(name="vip", dtype="bool")],
        aggregations=[Aggregation(function="count", window="1h", hop="10m"),
                      Aggregation(column="amount", function="mean", window="1h", hop="10m"),
                      Aggregation(column="city", function="last", window="1h", hop="10m")])
    return lower(view, "demo")


GOLDEN_KEY = "braid:demo:golden__53d7b40c2372:{42:a\\:b\\}\\\\}"
GOLDEN_FIELDS = {
    "_ts": b"1700000000123",
    "_ct": b"1700000000999",
    "f:amount": b"0.1",
    "f:vip": b"1",
    # count | mean (s, n) | last (ts, ct, v) -- the last partial is empty in the older tile
    "600000:1699999800000": b"2,2.5,2,1699999999000,-9223372036854775808,x%2Cy",
    "600000:1699999200000": b"1,-0.0,1,,,",
}


@pytest.fixture(params=["redis", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[OnlineStore]:
    if request.param == "redis":
        from braid.online.redis_store import RedisOnlineStore

        s: OnlineStore = RedisOnlineStore(request.getfixturevalue("redis_url"))
    else:
        s = SqliteOnlineStore(f"{tmp_path}/online.db")
    yield s
    s.close()


def test_golden_key_and_fields(store: OnlineStore, plan: ViewPlan) -> None:
    keys = {"user_id": pa.array([42, 42], pa.int64()), "shop": ["a:b}\\", "a:b}\\"]}
    store.write_rows(plan, pa.table({
        "user_id": [42], "shop": ["a:b}\\"], "_ts": [1_700_000_000_123],
        "_ct": [1_700_000_000_999], "amount": [0.1], "city": pa.array([None], pa.string()),
        "vip": [True]}))
    store.write_tiles(plan, H, pa.table({
        **keys, "tile_start": [1_699_999_800_000, 1_699_999_200_000],
        "_rows__count__n": pa.array([2, 1], pa.int64()),
        "amount__mean__s": [2.5, -0.0], "amount__mean__n": pa.array([2, 1], pa.int64()),
        "city__last__ts": pa.array([1_699_999_999_000, None], pa.int64()),
        "city__last__ct": pa.array([-(2**63), None], pa.int64()),
        "city__last__v": ["x,y", None]}))
    assert store.read_hash(GOLDEN_KEY) == GOLDEN_FIELDS
    if hasattr(store, "client"):  # the raw bytes as any Redis client sees them
        assert store.client.hgetall(GOLDEN_KEY.encode()) == {  # type: ignore[attr-defined]
            k.encode(): v for k, v in GOLDEN_FIELDS.items()}


def test_key_encoding(plan: ViewPlan) -> None:
    table = pa.table({"user_id": [-1, 7], "shop": ["plain", "a\\:}"]})
    prefix = "braid:demo:golden__53d7b40c2372:{"
    assert encode_keys(plan, table) == [prefix + "-1:plain}", prefix + "7:a\\\\\\:\\}}"]
    assert escape_key_part("a\\:}") == "a\\\\\\:\\}"


def test_float_text_equals_repr() -> None:
    rng = np.random.default_rng(1)
    xs = rng.standard_normal(20_000) * 10.0 ** rng.integers(-320, 308, 20_000)
    xs = np.concatenate([xs[np.isfinite(xs)], [0.0, -0.0, 1e15, 1e16, 1e-4, 1e-5, 100.0,
                                              5e-324, 2.0**53, 0.1, 1e9, 999999999.5]])
    got = encode_floats(pa.array(xs)).to_pylist()
    assert got == [repr(float(x)) for x in xs]
    assert encode_floats(pa.array([None, 1.0])).to_pylist() == [None, "1.0"]


def test_tile_codec_round_trip(plan: ViewPlan) -> None:
    codec = TileCodec(plan, H)
    rng = random.Random(5)
    for _ in range(200):
        partials = [
            rng.choice([None, (rng.randrange(10**6),)]),
            rng.choice([None, (rng.uniform(-1e9, 1e9), rng.randrange(1, 9))]),
            rng.choice([None, (rng.randrange(-10**12, 10**12), -(2**63),
                               rng.choice(["", "%", ",", "a,%2C", "é"]))]),
        ]
        assert codec.decode(codec.encode(partials).encode()) == partials
    assert codec.lua_layout == "SiSfiLiis"


def test_decode_columns_of_lists_and_arrays_agree(plan: ViewPlan) -> None:
    codec = TileCodec(plan, H)
    rng = random.Random(6)
    values = [codec.encode([(rng.randrange(9),), (rng.uniform(0, 9), 2), None]).encode()
              for _ in range(50)] + [None]
    names = [c for p in codec.partials for c in p.columns]
    as_list = decode_columns(codec, values)
    assert as_list.column_names == names
    assert decode_columns(codec, pa.array(values, pa.binary())).equals(as_list)
    assert as_list.slice(50).to_pylist() == [dict.fromkeys(names)]  # absent: all NULL
    first = codec.decode(values[0])
    assert as_list.column(names[0])[0].as_py() == first[0][0]
    for bad in ([b"1,2"], pa.array([b"1,2"], pa.binary())):
        with pytest.raises(StoreError, match=r"tile value b'1,2' has 2 fields, the plan"):
            decode_columns(codec, bad)


def test_expiry_and_prune_span(plan: ViewPlan) -> None:
    assert expiry_ms(plan) == DAY + DAY  # max(ttl=1d, 1h + 10m + 0) + 1 day
    assert prune_span(plan, H) == HOUR + H + plan.source.allowed_lateness  # max W + h + L


def test_import_braid_does_not_import_redis() -> None:
    code = "import sys, braid, braid.online; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_lua_float_format_round_trips(request: pytest.FixtureRequest) -> None:
    """The Lua merge writes the shortest of %.15g/%.16g/%.17g: the same double as repr."""
    import redis

    from braid.online.lua import PRELUDE

    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    rng = random.Random(9)
    xs = [0.1, 1e16, -0.0, 1e-300, 5e-324, 1.7976931348623157e308, 2 / 3, 100.0]
    xs += [rng.uniform(-1, 1) * 10.0 ** rng.randrange(-300, 300) for _ in range(300)]
    script = PRELUDE + "local out = {} for i, a in ipairs(ARGV) do out[i] = fmt(tonumber(a)) end return out"
    got = client.eval(script, 0, *[repr(x) for x in xs])
    for x, text in zip(xs, got, strict=True):
        assert float(text) == x and math.copysign(1, float(text)) == math.copysign(1, x)
