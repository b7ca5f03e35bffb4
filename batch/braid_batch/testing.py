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
    value = algebra.finalize(spec, algebra.build(spec, triples), a.partial.input_type)
    if value is None and a.default is not None:
        return a.default
    return value
