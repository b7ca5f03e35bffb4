"""What a single tile writer knows of the stored tiles of its keys, so merges skip the read.

A streaming runner merges every micro-batch's tile deltas into the stored tiles. Reading the
stored values back before each merge costs a round trip and server time per tile; yet the
runner is the only writer of the tiles it owns (DESIGN §6.4: one streaming engine per view
and namespace, tiles ``>= C``), so after it has seen a key once it knows that key's tiles. A
:class:`TileCache` holds, per (namespace, key), the key's tile fields and guard fields as
last read whole (one ``HGETALL``) or written by this process. A store's ``merge_tiles``
given a cache takes the stored values from it, reading only keys it does not hold.

Trust rules (why the cache cannot corrupt the store):

- Only the namespace's single tile writer may pass a cache: the stores then write the
  merged states as they are (Redis ``WRITE_STATES``, SQLite upserts in the runner's write
  transaction) without comparing them with what is stored. The runner passes one only when
  it runs as one instance (``--instances 1``): several instances share the keys of views
  not keyed like the log, and they merge by reading, as before.
- A failed or partly applied write drops its keys (:meth:`TileCache.drop`); the next merge
  reads them again, with their guard fields, so a retried batch is never applied twice.
- Tiles below a cutoff are batch's (``materialize`` rewrites them): a reader of the cache
  (the tile-close statistics) uses entries only for tiles at or above the cutoff, and the
  runner clears the cache when a cutoff moves (``braid handoff``).
- The writer prunes from what the cache holds (tiles older than the key's newest of the hop
  minus the prune span, DESIGN §4.6) and drops them from the cache in the same step.

Bounded: at most ``max_keys`` keys, least recently used evicted first (an evicted key is
read again when next merged). Memory is about 100-150 bytes per cached tile (95 measured
for 60-byte states); a key of a view with a 1-day window on 1-hour tiles and a 1-hour window
on 10-minute tiles holds about 35 tiles.

Example:
    >>> cache = TileCache()
    >>> store.merge_tiles(plan, hop, deltas, guard=guard, cache=cache)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from braid.arrowutil import pylist
from braid.online.encoding import EXPIRE_REFRESH_MS, FIELD_PREFIX, TileCodec, pruned
from braid.online.tilemerge import merge_tile_values

#: The guard fields' prefix (``SeqGuard.field``).
GUARD_PREFIX = "_seq:"


@dataclass
class CachedKey:
    """One key's tiles (hop -> tile_start -> value) and guard fields (-> seq).

    ``expire_after`` is the ``time.monotonic()`` second after which this writer refreshes
    the key's expiry (0: never set by this process, so the next write sets it)."""

    hops: dict[int, dict[int, bytes]] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)
    expire_after: float = 0.0

    def tiles(self, hop: int) -> dict[int, bytes]:
        """The hop's tiles (created empty), to read and update in place."""
        tiles = self.hops.get(hop)
        if tiles is None:
            tiles = self.hops[hop] = {}
        return tiles

    def dead(self, hop: int, newest: int, span: int) -> list[int]:
        """Starts the store's pruning removes once a tile at ``newest`` is written: those
        older than the hop's newest tile (stored or ``newest``) minus ``span``."""
        tiles = self.hops.get(hop)
        if not tiles:
            return []
        newest = max(newest, max(tiles))
        if min(tiles) >= newest - span:  # the usual case, without a pass in Python
            return []
        return pruned(tiles, newest, span)


class TileCache:
    """Stored tiles of the keys one writer merges, per namespace and key (see the module).

    Args:
        max_keys: keys kept at most; the least recently merged are evicted.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("a tile cache needs max_keys >= 1")
        self.max_keys = max_keys
        self._keys: OrderedDict[tuple[str, str], CachedKey] = OrderedDict()
        self.hits = 0
        self.loads = 0

    def __len__(self) -> int:
        return len(self._keys)

    def entries(self, namespace: str, keys: Iterable[str]
                ) -> tuple[dict[str, CachedKey], list[str]]:
        """The entries of ``keys`` the cache holds (marked as recently used, and kept by the
        caller even if a later load evicts them), and the keys it lacks (to be read whole
        and :meth:`load`-ed)."""
        found: dict[str, CachedKey] = {}
        missing: list[str] = []
        have = self._keys
        for k in keys:
            entry = have.get((namespace, k))
            if entry is None:
                missing.append(k)
            else:
                have.move_to_end((namespace, k))
                found[k] = entry
        self.hits += len(found)
        return found, missing

    def load(self, namespace: str, key: str, stored: Mapping[str, bytes]) -> CachedKey:
        """Remember a key from its whole stored hash (projection fields are left out)."""
        entry = CachedKey()
        for f, v in stored.items():
            if f.startswith(GUARD_PREFIX):
                entry.seqs[f] = int(v)
            elif not f.startswith(FIELD_PREFIX) and not f.startswith("_"):
                hop, _, start = f.partition(":")
                entry.tiles(int(hop))[int(start)] = bytes(v)
        self._put((namespace, key), entry)
        self.loads += 1
        return entry

    def peek(self, namespace: str, key: str) -> CachedKey | None:
        """A key's entry without marking it used (readers that are not merges)."""
        return self._keys.get((namespace, key))

    def drop(self, namespace: str, keys: Iterable[str]) -> None:
        """Forget keys (their write failed, partly applied, or met another writer)."""
        for k in keys:
            self._keys.pop((namespace, k), None)

    def clear(self) -> None:
        """Forget everything (a cutoff moved, or a batch failed)."""
        self._keys.clear()

    def _put(self, where: tuple[str, str], entry: CachedKey) -> None:
        self._keys[where] = entry
        self._keys.move_to_end(where)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)


@dataclass
class CachedMerge:
    """One hop's merge of deltas into cached tiles.

    ``rows`` maps each applied key to its rows, a range (guard-skipped keys are left out); per row
    ``starts``, ``fields`` and the merged ``values``; per key the tile starts pruning drops
    (``dead``) and whether its expiry is due (``expire``). The cache holds the merge as soon
    as it is computed (so a second merge of a key in the same batch sees it, or is skipped
    by the guard); a store whose write then fails drops the keys, and the runner clears the
    cache on any failed batch. :meth:`commit` runs once the write is acknowledged."""

    namespace: str
    hop: int
    entries: dict[str, CachedKey]
    rows: dict[str, range]
    starts: list[int]
    fields: list[str]
    values: list[bytes]
    dead: dict[str, list[int]]
    expire: set[str]

    def commit(self, cache: TileCache, expiry_s: float | None) -> None:
        """The write was acknowledged: note the expiries it set."""
        now = time.monotonic()
        for key in self.rows:
            entry = self.entries[key]
            if cache.peek(self.namespace, key) is not entry:
                # evicted and read again while this write was in flight: that read may
                # have missed it, so forget the key (the next merge reads it again)
                cache.drop(self.namespace, [key])
            elif key in self.expire and expiry_s is not None:
                entry.expire_after = now + min(EXPIRE_REFRESH_MS / 1000, expiry_s)


def key_runs(keys: list[str]) -> tuple[np.ndarray | None, dict[str, range]]:
    """Each key's rows as one contiguous range: ``(None, ranges)`` when every key's rows
    are already adjacent (deltas come ordered by key), else ``(order, ranges)`` with the
    stable order that makes them so (the ranges are of the reordered rows)."""
    if not keys:
        return None, {}
    encoded = pc.dictionary_encode(pa.array(keys, pa.string()))
    codes = encoded.indices.to_numpy(zero_copy_only=False)  # numbered by first appearance
    order = None
    if len(codes) > 1 and bool(np.any(np.diff(codes) < 0)):  # a key comes back later
        order = np.argsort(codes, kind="stable")
        codes = codes[order]
    bounds = [0, *(np.flatnonzero(np.diff(codes)) + 1).tolist(), len(codes)]
    names: list[str] = pylist(encoded.dictionary)  # in code order: the runs' order
    return order, {k: range(lo, hi) for k, lo, hi in zip(names, bounds[:-1], bounds[1:],
                                                          strict=True)}


def cached_merge(cache: TileCache, namespace: str, codec: TileCodec, deltas: pa.Table,
                 keys: list[str], starts: list[int], guard: tuple[str, int] | None,
                 span: int, read: Callable[[list[str]], Sequence[Mapping[str, bytes]]]
                 ) -> CachedMerge:
    """The merge of ``deltas`` (one row per distinct (key, tile_start)) into the cached
    tiles; keys the cache lacks are read whole with ``read`` first. The cache holds the
    merged states, pruning and guard once they are computed (see :class:`CachedMerge`).
    The merge's rows are the deltas' with each key's rows made adjacent (``rows`` are
    ranges of them)."""
    hop = codec.hop
    order, rows = key_runs(keys)
    entries, missing = cache.entries(namespace, rows)
    if missing:
        for key, stored in zip(missing, read(missing), strict=True):
            entries[key] = cache.load(namespace, key, stored)
    if guard is not None:
        done = [k for k in rows if entries[k].seqs.get(guard[0], -1) >= guard[1]]
        if done:  # applied before a crash: the replay skips them (DESIGN §7)
            gone = set(done)
            keep = [(k, r) for k, r in rows.items() if k not in gone]
            at = np.arange(len(keys)) if order is None else order
            order = np.concatenate([at[r.start:r.stop] for _, r in keep] or [at[:0]])
            rows, lo = {}, 0
            for k, r in keep:
                rows[k], lo = range(lo, lo + len(r)), lo + len(r)
    if order is not None:
        deltas = deltas.take(pa.array(order, pa.int64()))
        keys, starts = [keys[i] for i in order], [starts[i] for i in order]
    old: list[bytes | None] = []
    dead: dict[str, list[int]] = {}
    expire: set[str] = set()
    now = time.monotonic()
    for key, r in rows.items():
        entry = entries[key]
        tiles = entry.hops.get(hop)
        mine = starts[r.start:r.stop]
        got = [tiles.get(s) for s in mine] if tiles else [None] * len(mine)
        old += got
        if None in got:  # only a new tile moves the key's newest tile, and with it pruning
            pruned_starts = entry.dead(hop, max(mine), span)
            if pruned_starts:
                dead[key] = pruned_starts
        if entry.expire_after <= now:
            expire.add(key)
    values = merge_tile_values(codec, old, deltas) if rows else []
    for key, r in rows.items():  # computed without error: the cache holds it now
        entry = entries[key]
        tiles = entry.tiles(hop)
        tiles.update(zip(starts[r.start:r.stop], values[r.start:r.stop], strict=True))
        for s in dead.get(key, ()):
            del tiles[s]
        if guard is not None:
            entry.seqs[guard[0]] = guard[1]
    return CachedMerge(namespace, hop, entries, rows, starts, [f"{hop}:{s}" for s in starts],
                       values, dead, expire)
