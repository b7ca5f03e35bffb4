"""Script calls of the Redis bulk write paths (materialize), packed column-wise.

``write_rows`` and ``write_tiles`` carry most of the bytes a materialize sends. Their commands
are built from whole Arrow columns (:mod:`braid.online.resp`): every argument of every row is
framed in one vectorized pass, and a script call of up to :data:`KEYS_PER_CALL` keys is a
header plus zero-copy slices. The only per-row Python work left is the hash slot of each key,
and only on a Redis Cluster.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from braid.algebra import MISSING_CREATED
from braid.arrowutil import pylist
from braid.online.base import RowBatch, TileBatch
from braid.online.encoding import expiry_ms
from braid.online.redis_nodes import Command, RedisNodes
from braid.online.resp import Packed, bulk, bulk_text, evalsha_head, join
from braid.online.tilecache import CachedMerge
from braid.plan import ViewPlan

#: Keys per script call (a call runs atomically; this bounds how long it holds the server).
KEYS_PER_CALL = 1000

_BIN = pa.large_binary()


def _text(arr: pa.Array) -> pa.Array:
    return pc.cast(arr, pa.string())


def row_commands(nodes: RedisNodes, sha: str, plan: ViewPlan, batch: RowBatch) -> list[Command]:
    """``WRITE_ROWS`` calls for projection rows (argument layout in
    :mod:`braid.online.lua_rows`: the field names once per call, then per row ts, the
    created time and a NULL mask when the batch has any, and the values)."""
    n = len(batch.key_array)
    exp = expiry_ms(plan)
    parts: list[pa.Array | pa.Scalar] = [bulk(_text(batch.ts))]
    shape = ""
    if not pc.all(pc.equal(batch.ct, MISSING_CREATED)).as_py():
        shape += "c"
        parts.append(bulk(_text(batch.ct)))
    if any(v.null_count for v in batch.values):
        shape += "m"
        nulls = [v.is_null() for v in batch.values]
        flags = [pc.if_else(isnull, "1", "0") for isnull in nulls]
        mask = flags[0] if len(flags) == 1 else pc.binary_join_element_wise(*flags, "")
        some = nulls[0]
        for isnull in nulls[1:]:
            some = pc.or_(some, isnull)
        parts.append(bulk(pc.if_else(some, mask, "")))
    parts += [bulk(pc.fill_null(values, "")) for values in batch.values]
    head = b"".join(bulk_text(a) for a in ["" if exp is None else str(exp), shape,
                                           *batch.fields])
    rows, keys = join(*parts), batch.key_array
    slots = None
    if nodes.cluster:
        slots = nodes.slots(batch.keys)
        order = np.argsort(slots, kind="stable")
        slots, rows, keys = slots[order], rows.take(order), keys.take(order)
    packed_rows, packed_keys = Packed(rows), Packed(bulk(keys))
    width, nhead = 1 + len(shape) + len(batch.fields), 2 + len(batch.fields)
    return [(slot, [evalsha_head(sha, hi - lo, nhead + width * (hi - lo)),
                    packed_keys.span(lo, hi), head, packed_rows.span(lo, hi)], 1)
            for slot, lo, hi in nodes.chunks(slots, n, KEYS_PER_CALL)]


def tile_commands(nodes: RedisNodes, plan: ViewPlan, hop: int,
                  batch: TileBatch) -> tuple[list[Command], list[pa.Array]]:
    """Plain commands writing absolute tile states: per key one ``HSET`` of all its tiles
    (rows sorted by key, stably, so of two states of one tile the later still wins) and
    one ``PEXPIRE``. No script: an absolute state needs no comparison, ``HSET`` is atomic
    per key, and expiry is garbage collection only. Returns the commands (each the keys of
    one slot, with two replies per key) and the keys of each, so the caller can prune the
    keys whose ``HSET`` created a field."""
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
    last = np.zeros(n, bool)
    last[starts - 1] = True  # the row before each run's start ends a run; [-1] ends the last
    counts = np.zeros(n, np.int64)
    counts[starts] = np.diff(np.append(starts, n))
    key_bulk = bulk(keys)
    empty = pa.scalar(b"", _BIN)
    hset = join(pa.scalar(b"*", _BIN), pc.cast(_text(pa.array(2 + 2 * counts)), _BIN),
                pa.scalar(b"\r\n$4\r\nHSET\r\n", _BIN), key_bulk)
    parts = [pc.if_else(pa.array(first), hset, empty),
             bulk(pc.binary_join_element_wise(f"{hop}:", _text(batch.start_array.take(order)),
                                              "")),
             bulk(batch.value_array.take(order))]
    exp = expiry_ms(plan)
    if exp is not None:
        pexpire = join(pa.scalar(b"*3\r\n$7\r\nPEXPIRE\r\n", _BIN), key_bulk,
                       pa.scalar(bulk_text(str(exp)), _BIN))
        parts.append(pc.if_else(pa.array(last), pexpire, empty))
    rows = Packed(join(*parts))
    unique = keys.take(pa.array(starts))
    bounds = np.append(starts, n)
    per_key = 1 if exp is None else 2
    commands: list[Command] = []
    command_keys: list[pa.Array] = []
    for slot, a, b in nodes.chunks(None if slots is None else slots[starts], len(starts),
                                   KEYS_PER_CALL):
        commands.append((slot, [rows.span(int(bounds[a]), int(bounds[b]))], per_key * (b - a)))
        command_keys.append(unique.slice(a, b - a))
    return commands, command_keys


def key_commands(nodes: RedisNodes, sha: str, keys: pa.Array, args: list[str]) -> list[Command]:
    """Script calls over ``keys`` with the same ``args`` for all (e.g. ``PRUNE_TILES``)."""
    slots = None
    if nodes.cluster:
        slots = nodes.slots(pylist(keys))
        order = np.argsort(slots, kind="stable")
        slots, keys = slots[order], keys.take(order)
    packed = Packed(bulk(keys))
    head = b"".join(bulk_text(a) for a in args)
    return [(slot, [evalsha_head(sha, hi - lo, len(args)), packed.span(lo, hi), head], 1)
            for slot, lo, hi in nodes.chunks(slots, len(keys), KEYS_PER_CALL)]


_E = {True: bulk_text("1"), False: bulk_text("0")}
_NUMS = [bulk_text(str(i)) for i in range(1024)]


def _num(i: int) -> bytes:
    """A small count as a RESP bulk string (the common ones framed once)."""
    return _NUMS[i] if i < 1024 else bulk_text(str(i))


def state_calls(nodes: RedisNodes, sha: str, merge: CachedMerge,
                head: list[str]) -> list[Command]:
    """``WRITE_STATES`` calls for a cached merge (argument layout in :mod:`braid.online.lua`):
    each row's field and state framed column-wise, then each key's arguments joined."""
    keys = list(merge.rows)
    slots = None
    if nodes.cluster:
        slots = nodes.slots(keys)
        order = np.argsort(slots, kind="stable")
        slots, keys = slots[order], [keys[i] for i in order]
    pairs: list[bytes] = pylist(join(bulk(pa.array(merge.fields, pa.string())),
                                     bulk(pa.array(merge.values, pa.binary()))))
    key_bulks: list[bytes] = pylist(bulk(pa.array(keys, pa.string())))
    hop = merge.hop
    blobs: list[bytes] = []
    widths: list[int] = []
    rows, deads, expire = merge.rows, merge.dead, merge.expire
    for key in keys:
        r = rows[key]
        n, dead = len(r), deads.get(key)
        m = len(dead) if dead else 0
        parts = [_num(n), _num(m), _E[key in expire]]
        parts += pairs[r.start:r.stop]
        if dead:
            parts += [bulk_text(f"{hop}:{s}") for s in dead]
        blobs.append(b"".join(parts))
        widths.append(3 + 2 * n + m)
    head_bytes = b"".join(bulk_text(a) for a in head)
    return [(slot, [evalsha_head(sha, hi - lo, len(head) + sum(widths[lo:hi])),
                    *key_bulks[lo:hi], head_bytes, *blobs[lo:hi]], 1)
            for slot, lo, hi in nodes.chunks(slots, len(keys), KEYS_PER_CALL)]
