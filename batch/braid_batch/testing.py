"""Test helpers: tiny feature repositories in a folder, and a slow, obviously-correct Python
rendering of DESIGN §4.1-4.2 to compare the SQL against.

The reference reads the source Parquet files row by row and loops; it supports views whose
projections and aggregation inputs are plain columns and that have no filter.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from braid import algebra
from braid.algebra import MISSING_CREATED
from braid.plan import ROWS_INPUT, AggregationPlan, ViewPlan
from braid.timeutil import tile_start

Event = dict[str, Any]


def make_repo(root: Path, definitions: str, offline: str = "offline") -> Path:
    """Write ``braid.yaml`` (project ``t``) and ``defs.py`` with ``definitions`` into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "braid.yaml").write_text(f"project: t\noffline_store: {{path: {offline}}}\n")
    (root / "defs.py").write_text(textwrap.dedent(definitions))
    return root


def write_events(path: Path, rows: list[Event], types: dict[str, pa.DataType]) -> Path:
    """Write ``rows`` as Parquet; epoch-ms ints in timestamp columns become timestamp[ms, UTC]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, t in types.items():
        values = [r.get(name) for r in rows]
        if pa.types.is_timestamp(t):
            arrays[name] = pa.array(values, pa.int64()).cast(t)
        else:
            arrays[name] = pa.array(values, t)
    pq.write_table(pa.table(arrays), path)
    return path


def source_events(plan: ViewPlan, path: Path, include_late: bool = False) -> list[Event]:
    """Valid events of a Parquet source with ``_ts``/``_ct`` (None if missing) in epoch ms."""
    src = plan.batch_source
    assert src is not None and plan.filter is None
    out = []
    for row in pq.read_table(path).to_pylist():
        if any(row.get(k) is None for k in plan.key_names) or row[src.timestamp_field] is None:
            continue
        if any(isinstance(v, float) and not math.isfinite(v) for v in row.values()):
            continue
        if row.get("_late") and not include_late:
            continue
        row["_ts"] = _ms(row[src.timestamp_field])
        row["_ct"] = _ms(row[src.created_field]) if src.created_field else None
        if row["_ct"] is None:
            row["_ct"] = None
        if row.get("_ingested_at") is not None:
            row["_ingested_at"] = _ms(row["_ingested_at"])
        out.append(row)
    return out


def _ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    import datetime as dt

    return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def value_encoding(values: Iterable[Any]) -> str:
    """The tie-break encoding of braid_batch.offline.value_key, for ints and strings."""
    return "\x1f".join("" if v is None else str(v) for v in values)


def ref_projection(plan: ViewPlan, events: list[Event], key: tuple[Any, ...], t: int,
                   as_of_known: bool = False) -> dict[str, Any]:
    """Projection values at ``t`` by DESIGN §4.1 (defaults applied)."""
    names = [p.name for p in plan.projections]
    best: tuple[Any, ...] | None = None
    chosen: Event | None = None
    for e in events:
        if tuple(e[k] for k in plan.key_names) != key or e["_ts"] > t:
            continue
        ct = MISSING_CREATED if e["_ct"] is None else e["_ct"]
        if as_of_known and ct > t:
            continue
        rank = (e["_ts"], ct, value_encoding(e[n] for n in names))
        if best is None or rank > best:
            best, chosen = rank, e
    fresh = chosen is not None and (plan.ttl is None or chosen["_ts"] >= t - plan.ttl)
    out = {}
    for p in plan.projections:
        v = chosen[p.name] if fresh and chosen is not None else None
        out[p.name] = p.default if v is None else v
    return out


def ref_aggregation(a: AggregationPlan, plan: ViewPlan, events: list[Event],
                    key: tuple[Any, ...], t: int, as_of_known: bool = False) -> Any:
    """Aggregation value at ``t`` by DESIGN §4.2-4.3 with the Python algebra."""
    h = a.hop
    ks = tile_start(t, h)
    triples = []
    for e in events:
        if tuple(e[k] for k in plan.key_names) != key:
            continue
        if not ks - a.window + h <= tile_start(e["_ts"], h) <= ks or e["_ts"] > t:
            continue
        if as_of_known and e.get("_ingested_at") is not None and e["_ingested_at"] > t:
            continue
        v = 1 if a.partial.input == ROWS_INPUT else e[a.partial.input]
        triples.append((e["_ts"], e["_ct"], v))
    spec = a.partial.spec
    partial = algebra.build(spec, triples)
    value = algebra.finalize(spec, partial, a.partial.input_type)
    if (partial is None or value is None) and a.default is not None:
        return a.default  # a declared default replaces the empty value (algebra_sql.finalize)
    return value


#: Day-aligned base time of the tricky data set (2023-11-14T00:00:00Z).
T0 = 1_699_920_000_000
MIN5 = 300_000

TRICKY_DEFS = """
from braid.definitions import Aggregation, BatchSource, Entity, Feature, FeatureView

user = Entity(name="user", join_keys={"user_id": "int64"})
merchant = Entity(name="merchant", join_keys={"merchant_id": "string"})
tx = BatchSource(name="tx", path="data/tx.parquet", timestamp_field="ts",
                 created_timestamp_field="ct",
                 schema={"user_id": "int64", "merchant_id": "string", "ts": "timestamp",
                         "ct": "timestamp", "amount": "float64", "cat": "string",
                         "score": "int64"})
user_tx = FeatureView(
    name="user_tx", entities=[user], source=tx, ttl="1h",
    features=[Feature(name="amount", dtype="float64"), Feature(name="cat", dtype="string",
                                                              default="none")],
    aggregations=[
        Aggregation(function="count", window="1h"),
        Aggregation(column="amount", function="sum", window="1h"),
        Aggregation(column="amount", function="mean", window="10m"),
        Aggregation(column="amount", function="min", window="1d"),
        Aggregation(column="amount", function="max", window="1d"),
        Aggregation(column="amount", function="last", window="1h"),
        Aggregation(column="amount", function="var", window="1h"),
        Aggregation(column="amount", function="stddev", window="1d"),
        Aggregation(column="score", function="sum", window="2h", hop="1h", default=-1),
    ])
pair = FeatureView(
    name="pair", entities=[user, merchant], source=tx,
    features=[Feature(name="score", dtype="int64")],
    aggregations=[Aggregation(column="score", function="max", window="30m")])
"""

TRICKY_TYPES = {
    "user_id": pa.int64(), "merchant_id": pa.string(), "ts": pa.timestamp("ms", tz="UTC"),
    "ct": pa.timestamp("ms", tz="UTC"), "amount": pa.float64(), "cat": pa.string(),
    "score": pa.int64(), "_late": pa.bool_(),
}


def tricky_events(n_random: int = 300, seed: int = 0) -> list[Event]:
    """Hand-made edge cases plus random events over two days around ``T0``."""
    import random

    rnd = random.Random(seed)
    e: list[Event] = []

    def add(user: int, ts: int, ct: int | None = None, amount: float | None = 1.0,
            cat: str | None = "a", score: int | None = 1, merchant: str = "m1",
            late: bool = False) -> None:
        e.append({"user_id": user, "merchant_id": merchant, "ts": ts, "ct": ct,
                  "amount": amount, "cat": cat, "score": score, "_late": late})

    add(1, T0 + 1000, T0 + 2000, 1.0, "a")        # same ts, different created times
    add(1, T0 + 1000, T0 + 3000, 2.0, "b")
    add(1, T0 + 1000, None, 9.0, "z")             # missing created sorts lowest
    add(2, T0 + 5000, None, 5.0, "a")             # same ts and created: value encoding
    add(2, T0 + 5000, None, 5.0, "b")
    add(3, T0 + MIN5, T0 + MIN5, 4.0)             # exactly on tile boundaries
    add(3, T0 + 2 * MIN5, None, None, None, None) # NULL values
    add(3, T0 + 12 * MIN5, None, 6.0)
    add(3, T0 + 13 * MIN5 - 1, None, 7.0)
    add(4, -1, None, 3.0)                         # before the epoch
    add(4, -MIN5 - 1, None, 2.0)
    add(5, T0 + 10_000, None, 100.0, late=True)   # late: excluded by default
    add(5, T0 + 20_000, None, 1e9 + 1, merchant="m2")
    add(5, T0 + 30_000, None, 1e9 + 2, merchant="m2")
    for _ in range(n_random):
        ts = T0 + rnd.randrange(-86_400_000, 86_400_000)
        ct = ts + rnd.randrange(0, 600_000) if rnd.random() < 0.7 else None
        amount = None if rnd.random() < 0.1 else float(rnd.randrange(-1000, 1000)) / 4
        add(rnd.randrange(1, 8), ts, ct, amount, rnd.choice(["a", "b", None]),
            rnd.randrange(0, 50), rnd.choice(["m1", "m2"]))
    return e


def tricky_times(events: list[Event], ttl: int = 3_600_000) -> list[int]:
    """Query times: at, just before and after each event, at ``ts + ttl`` and just past it."""
    out = []
    for ev in events[:14]:
        ts = ev["ts"]
        out += [ts, ts - 1, ts + 1, ts + ttl, ts + ttl + 1, ts - ts % MIN5 + MIN5]
    return out
