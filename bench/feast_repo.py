"""Feast 0.67 over the online benchmark's data, for ``bench_online.py --feast``.

A Feast repo in a temp folder: a FileSource over the Parquet file of the benchmark's rows
(``user_id``, ``ts``, ``a``, ``b``, ``c``), the ``user`` entity (join key ``user_id``, int64),
one feature view ``bench`` with the three projections, and Feast's Redis online store on the
benchmark's private ``redis-server`` in its own logical database (so a round of materialize
can start from an empty database without touching braid's keys). ``write_source`` writes
that Parquet file, which braid's materialize side reads too. Feast is imported inside the
functions that use it, so the rest of the benchmark runs without it.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

FEATURES = ["bench:a", "bench:b", "bench:c"]


def write_source(root: Path, rows: pa.Table) -> Path:
    """The benchmark's rows (``user_id``, ``_ts`` epoch ms, ``a``, ``b``, ``c``) as the Parquet
    event source both materializes read: ``<root>/data/rows.parquet`` with ``ts`` in ms, UTC."""
    path = root / "data" / "rows.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    events = pa.table({"user_id": rows.column("user_id"),
                       "ts": rows.column("_ts").cast(pa.timestamp("ms", tz="UTC")),
                       "a": rows.column("a"), "b": rows.column("b"), "c": rows.column("c")})
    pq.write_table(events, path)
    return path


def feast_online_store(root: Path, parquet: Path, port: int, db: int) -> Any:
    """Apply the Feast repo and return its ``FeatureStore``.

    The view has no TTL (``ttl=0``): braid reads at the benchmark's fixed ``NOW`` while Feast
    reads at the wall clock, years later, so a TTL would hide every value on Feast's side.
    """
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.repo_config import RepoConfig
    from feast.types import Float64, Int64, String

    repo_dir = root / "feast_online"
    repo_dir.mkdir(exist_ok=True)
    config = RepoConfig(project="bench", provider="local", repo_path=repo_dir,
                        registry=str(repo_dir / "registry.db"),
                        offline_store={"type": "file"},
                        online_store={"type": "redis",
                                      "connection_string": f"127.0.0.1:{port},db={db}"},
                        entity_key_serialization_version=3)
    store = FeatureStore(config=config)
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    source = FileSource(name="bench_rows", path=str(parquet), timestamp_field="ts")
    view = FeatureView(name="bench", entities=[user], ttl=timedelta(0), source=source,
                       schema=[Field(name="a", dtype=Float64), Field(name="b", dtype=Int64),
                               Field(name="c", dtype=String)],
                       online=True)
    with contextlib.redirect_stdout(io.StringIO()):
        store.apply([user, view])
    return store


def feast_materialize(store: Any, start_ms: int, end_ms: int) -> float:
    """Seconds of Feast's ``materialize`` of ``[start_ms, end_ms)`` into the online store.

    Its progress bar and messages are swallowed so the benchmark's output stays readable.
    """
    start = datetime.fromtimestamp(start_ms / 1000, UTC)
    end = datetime.fromtimestamp(end_ms / 1000, UTC)
    sink = io.StringIO()
    began = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        store.materialize(start, end, feature_views=["bench"])
    return time.perf_counter() - began


def feast_read(store: Any, entity_rows: list[dict[str, int]]) -> Callable[[], dict[str, Any]]:
    """The timed Feast call: ``get_online_features(...).to_dict()`` for ``entity_rows``."""
    def read() -> dict[str, Any]:
        return store.get_online_features(features=FEATURES, entity_rows=entity_rows).to_dict()
    return read


def agreement(braid: dict[str, list[Any]], feast: dict[str, list[Any]]) -> str:
    """``"N/N values agree"`` over the entities and features of two ``to_dict`` results (both
    name columns ``user_id``, ``a``, ``b``, ``c``); a value missing on both sides disagrees."""
    if braid["user_id"] != feast["user_id"]:
        return f"entity columns differ: braid {braid['user_id'][:5]}, Feast {feast['user_id'][:5]}"
    total = same = 0
    for name in (ref.split(":", 1)[1] for ref in FEATURES):
        for x, y in zip(braid[name], feast[name], strict=True):
            total += 1
            same += x is not None and x == y
    return f"{same}/{total} values agree"
