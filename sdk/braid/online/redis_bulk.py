"""Script calls of the Redis bulk write paths (materialize), packed column-wise.

``write_rows`` and ``write_tiles`` carry most of the bytes a materialize sends. Their calls
are built from whole Arrow columns (:mod:`braid.online.resp`): every argument of every row is
framed in one vectorized pass, and a call of up to :data:`KEYS_PER_CALL` keys is a header
plus two zero-copy slices. The only per-row Python work left is the hash slot of each key,
and only on a Redis Cluster.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from braid.online.base import RowBatch, TileBatch
from braid.online.encoding import expiry_ms, prune_span
from braid.online.redis_nodes import Command, RedisNodes
from braid.online.resp import Packed, bulk, bulk_text, evalsha_head, join
from braid.plan import ViewPlan

#: Keys per script call (a call runs atomically; this bounds how long it holds the server).
KEYS_PER_CALL = 1000

_BIN = pa.large_binary()


def _const(value: str) -> pa.Scalar:
    return pa.scalar(bulk_text(value), _BIN)


def _text(arr: pa.Array) -> pa.Array:
    return pc.cast(arr, pa.string())


def row_commands(nodes: RedisNodes, sha: str, plan: ViewPlan, batch: RowBatch) -> list[Command]:
    """``WRITE_ROWS`` calls for projection rows (argument layout in :mod:`braid.online.lua`)."""
    n = len(batch.key_array)
    exp = expiry_ms(plan)
    head = bulk_text("" if exp is None else str(exp)) + bulk_text(str(len(batch.fields)))
    parts: list[pa.Array | pa.Scalar] = [bulk(_text(batch.ts)), bulk(_text(batch.ct))]
    nulls = [v.is_null() for v in batch.values]
    if any(v.null_count for v in batch.values):
        flags = [pc.if_else(isnull, "1", "0") for isnull in nulls]
        mask = flags[0] if len(flags) == 1 else pc.binary_join_element_wise(*flags, "")
        some = nulls[0]
        for isnull in nulls[1:]:
            some = pc.or_(some, isnull)
        parts.append(bulk(pc.if_else(some, mask, "")))
    else:
        parts.append(_const(""))
    for field, values in zip(batch.fields, batch.values, strict=True):
        parts += [_const(field), bulk(pc.fill_null(values, ""))]
    rows, keys = join(*parts), batch.key_array
    slots = None
    if nodes.cluster:
        slots = nodes.slots(batch.keys)
        order = np.argsort(slots, kind="stable")
        slots, rows, keys = slots[order], rows.take(order), keys.take(order)
    packed_rows, packed_keys = Packed(rows), Packed(bulk(keys))
    width = 3 + 2 * len(batch.fields)
    return [(slot, [evalsha_head(sha, hi - lo, 2 + width * (hi - lo)),
                    packed_keys.span(lo, hi), head, packed_rows.span(lo, hi)])
            for slot, lo, hi in nodes.chunks(slots, n, KEYS_PER_CALL)]


def tile_commands(nodes: RedisNodes, sha: str, plan: ViewPlan, hop: int,
                  batch: TileBatch) -> list[Command]:
    """``WRITE_TILES`` calls: rows sorted by key (stably, so of two states of one tile the
    later still wins), each key's tiles in one ``HSET``, keys of a call in one slot."""
    keys = batch.key_array
    n = len(keys)
    slots = None
    if nodes.cluster:
        slots = nodes.slots(batch.keys)
        order = pc.sort_indices(pa.table({"s": slots, "k": keys}),
                                sort_keys=[("s", "ascending"), ("k", "ascending")])
        slots = slots[order.to_numpy()]
    else:
        order = pc.sort_indices(keys)
    keys = keys.take(order)
    first = np.ones(n, bool)
    if n > 1:
        first[1:] = pc.not_equal(keys.slice(1), keys.slice(0, n - 1)).to_numpy(
            zero_copy_only=False)
    starts = np.flatnonzero(first)
    counts = np.zeros(n, np.int64)
    counts[starts] = np.diff(np.append(starts, n))
    fields = pc.binary_join_element_wise(f"{hop}:", _text(batch.start_array.take(order)), "")
    prefix = pc.if_else(pa.array(first), bulk(_text(pa.array(counts))),
                        pa.scalar(b"", _BIN))
    rows = Packed(join(prefix, bulk(fields), bulk(batch.value_array.take(order))))
    packed_keys = Packed(bulk(keys.take(pa.array(starts))))
    exp = expiry_ms(plan)
    head = (bulk_text("" if exp is None else str(exp)) + bulk_text(str(hop))
            + bulk_text(str(prune_span(plan, hop))))
    bounds = np.append(starts, n)
    out: list[Command] = []
    run_slots = None if slots is None else slots[starts]
    for slot, a, b in nodes.chunks(run_slots, len(starts), KEYS_PER_CALL):
        lo, hi = int(bounds[a]), int(bounds[b])
        out.append((slot, [evalsha_head(sha, b - a, 3 + (b - a) + 2 * (hi - lo)),
                           packed_keys.span(a, b), head, rows.span(lo, hi)]))
    return out
