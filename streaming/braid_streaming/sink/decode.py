"""Decode the upsert records of a view's tiles topic into per-hop Arrow tables.

The Flink job writes ``braid.<project>.<view>.tiles`` with upsert-kafka (DESIGN §7,
:mod:`braid.compile.flink`): key = JSON of the entity keys, ``hop`` and ``tile_start``; value =
JSON of every partial column of the view (NULL for the columns of the view's other hops), an
**absolute** tile state. A NULL value is a tombstone: a GROUP BY over an append-only stream
never retracts a tile, so tombstones are counted and skipped (deleting would let an older
state re-emitted after a restore win again).

Within one batch, later records of a tile replace earlier ones (one tile key always lands in
one partition, so offset order is emission order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from braid.compile.duckdb import TILE_START
from braid.compile.flink import HOP
from braid.errors import BraidError
from braid.plan import ViewPlan
from braid_streaming.log.base import Record


class SinkDecodeError(BraidError):
    """A tiles record is not the JSON the Flink job writes (wrong topic or a foreign writer)."""


@dataclass
class DecodedTiles:
    """One batch of one view: per hop a table (keys, ``tile_start``, the hop's partials)."""

    tables: dict[int, pa.Table] = field(default_factory=dict)
    records: int = 0
    tombstones: int = 0
    below_cutoff: int = 0


def _schema(plan: ViewPlan, hop: int) -> pa.Schema:
    fields = [pa.field(k, t.arrow) for k, t in plan.entity_keys]
    fields.append(pa.field(TILE_START, pa.int64()))
    for p in plan.partials_for_hop(hop):
        fields += [pa.field(c, t.arrow) for c, t in zip(p.columns, p.field_types, strict=True)]
    return pa.schema(fields)


def decode_tiles(plan: ViewPlan, records: Sequence[Record],
                 cutoffs: dict[int, int] | None = None) -> DecodedTiles:
    """Decode a batch of tiles records of ``plan``'s topic.

    Args:
        plan: the view's plan.
        records: records of its tiles topic, per partition in offset order.
        cutoffs: per hop the ownership cutoff C; tiles with ``tile_start < C`` belong to
            batch (DESIGN §6.4) and are dropped here.

    Raises:
        SinkDecodeError: a key or value is not the expected JSON object.
    """
    out = DecodedTiles(records=len(records))
    cutoffs = cutoffs or {}
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    names = plan.key_names
    for r in records:
        try:
            key = orjson.loads(r.key) if r.key else None
            value = orjson.loads(r.value) if r.value else None
        except orjson.JSONDecodeError as e:
            raise SinkDecodeError(f"{r.topic}[{r.partition}]@{r.offset}: not JSON ({e})") from None
        if not isinstance(key, dict) or HOP not in key or TILE_START not in key:
            raise SinkDecodeError(f"{r.topic}[{r.partition}]@{r.offset}: key {r.key!r} lacks "
                                  f"'{HOP}'/'{TILE_START}'; is this a braid tiles topic?")
        if value is None:
            out.tombstones += 1
            continue
        hop, start = int(key[HOP]), int(key[TILE_START])
        if start < cutoffs.get(hop, start):
            out.below_cutoff += 1
            continue
        ident = (hop, start, *(key.get(k) for k in names))
        latest.pop(ident, None)  # re-insert: keep emission order
        latest[ident] = {**value, **key}
    by_hop: dict[int, list[dict[str, Any]]] = {}
    for (hop, *_), row in latest.items():
        by_hop.setdefault(hop, []).append(row)
    for hop, rows in by_hop.items():
        if hop not in plan.hops:
            raise SinkDecodeError(f"tiles of view '{plan.name}' at hop {hop} ms; the plan has "
                                  f"hops {list(plan.hops)} (a job of another definition?)")
        schema = _schema(plan, hop)
        out.tables[hop] = pa.table({f.name: pa.array([r.get(f.name) for r in rows], f.type)
                                    for f in schema}, schema=schema)
    return out
