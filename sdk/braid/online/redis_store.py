"""Redis online store: one hash per (project, namespace, entity) (DESIGN §6).

Writes go through Lua scripts (:mod:`braid.online.lua`) applied to batches of up to
``KEYS_PER_CALL`` keys, all calls of a write pipelined in one round trip per node
(:mod:`braid.online.redis_nodes`); the bulk paths of materialize pack their calls column-wise
(:mod:`braid.online.redis_bulk`). Reads are pipelined HMGETs, one per key.

A Redis Cluster (URL ``redis+cluster://host:port``) works the same way: keys are hash-tagged
on the entity, so the keys of each multi-key script call are chosen from one hash slot, and
every call and read goes to the node serving its slot, all nodes in parallel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from braid.algebra import OverflowError64
from braid.arrowutil import pylist
from braid.errors import StoreError
from braid.online.base import (
    FieldRequest,
    NewTiles,
    OnlineStore,
    SeqGuard,
    TileBatch,
    count_positions,
    merge_keys,
    prepare_rows,
    prepare_tiles,
)
from braid.online.encoding import TileCodec, expiry_ms, key_array, prune_span
from braid.online.lua import (
    MERGE_TILES,
    MERGE_WRITE,
    PRUNE_TILES,
    READ_FIELDS,
    READ_HASHES,
    WRITE_STATES,
    WRITE_TILES_MONOTONIC,
)
from braid.online.lua_rows import write_rows_script
from braid.online.redis_bulk import (
    KEYS_PER_CALL,
    key_commands,
    row_commands,
    state_calls,
    tile_commands,
)
from braid.online.redis_nodes import Command, Deferred, RedisNodes, Script
from braid.online.resp import pack
from braid.online.tilecache import TileCache, cached_merge
from braid.online.tilemerge import merge_tile_values
from braid.plan import ViewPlan

_G = TypeVar("_G")
_T = TypeVar("_T")
_ONE = "1"
_NEW = {True: "1", False: "0"}  # MERGE_WRITE's prune flag: some tile of the key is new

#: Rows packed per slice of a bulk write (see ``RedisOnlineStore._slices``), and slices
#: packed at once.
SLICE_ROWS = 8192
PACK_THREADS = 2
#: One script call: the hash slot of its keys, the keys and the other arguments.
Call = tuple[int, list[str], list[str | bytes]]


class RedisOnlineStore(OnlineStore):
    """The online store on Redis (or anything speaking its protocol with Lua).

    ``url`` is ``redis://host:port/db`` for one server or ``redis+cluster://host:port`` for a
    Redis Cluster (any node; the others are discovered). ``client`` is the redis-py client
    (``Redis`` or ``RedisCluster``) for single-key commands.

    Example:
        >>> store = RedisOnlineStore("redis://127.0.0.1:6379/0")
        >>> store.write_rows(plan, rows_table)
    """

    def __init__(self, url: str, **client_options: Any) -> None:
        self.url = url
        self.nodes = RedisNodes(url, **client_options)
        self.client = self.nodes.client
        self._errors = self.nodes.errors
        self._rows: dict[int, Script] = {}  # WRITE_ROWS per number of projections
        self._prune = Script(PRUNE_TILES)
        self._merge = Script(MERGE_TILES)
        self._merge_write = Script(MERGE_WRITE)
        self._read = Script(READ_FIELDS)
        self._monotonic = Script(WRITE_TILES_MONOTONIC)
        self._states = Script(WRITE_STATES)
        self._hashes = Script(READ_HASHES)
        self._deferred: Deferred | None = None  # inside batch(): replies read at its end
        self._new_tiles = NewTiles()  # where a merge runs (merge_tiles)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Cached tile merges (:meth:`merge_tiles` with a cache) and :meth:`write_rows` made
        inside are sent at once and their replies read at the end, so the server applies
        them while the caller computes the next; the cache learns of them only then, and
        ``write_rows`` returns the rows it sent (not how many won). On one server only (a
        cluster's writes go out per node as made)."""
        if self._deferred is not None or self.nodes.cluster:
            yield
            return
        self._deferred = deferred = Deferred(self.nodes)
        try:
            yield
        except BaseException:
            deferred.abort()
            raise
        finally:
            self._deferred = None
        try:
            deferred.finish()
        except self.nodes.failures as e:
            raise StoreError(f"redis write failed on {self.url}: {e}") from e

    # ------------------------------------------------------------------ writes

    def write_rows(self, plan: ViewPlan, table: pa.Table) -> int:
        if table.num_rows == 0 or not plan.projections:
            return 0

        n = len(plan.projections)
        script = self._rows.get(n)
        if script is None:
            script = self._rows[n] = Script(write_rows_script(n))

        def build(part: pa.Table) -> list[Command]:
            return row_commands(self.nodes, script.sha, plan, prepare_rows(plan, part))

        if self._deferred is not None:  # inside batch(): the replies are read at its end
            def done(replies: list[Any]) -> None:
                self._check(replies, "write")

            for commands in _pack_ahead(self._slices(table, None), build):
                self._defer(commands, script, done)
            return table.num_rows
        return self._total(script, _pack_ahead(self._slices(table, None), build))

    def write_tiles(self, plan: ViewPlan, hop: int, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        keys = key_array(plan, table)
        order = pc.sort_indices(keys)  # stable: of two states of one tile the later still wins
        table, keys = table.take(order), keys.take(order)

        sent: list[pa.Array] = []

        def build(part: pa.Table) -> tuple[list[Command], list[pa.Array]]:
            return tile_commands(self.nodes, plan, hop, prepare_tiles(plan, hop, part))

        def batches() -> Iterator[list[Command]]:
            for commands, command_keys in _pack_ahead(self._slices(table, keys), build):
                sent.extend(command_keys)
                yield commands

        replies = self._execute(batches(), None, "write")
        # HSET replies how many fields it created. None: every tile existed, so the key's
        # newest tile did not move and earlier prunes left nothing to do; else prune the key.
        grown = []
        for ks, r in zip(sent, replies, strict=True):
            created = np.asarray(r if isinstance(r, list) else [r], np.int64)
            grown.append(ks.filter(pa.array(created[::len(created) // len(ks)] > 0)))
        grown = [k for k in grown if len(k)]
        if grown:
            self._total(self._prune, [key_commands(
                self.nodes, self._prune.sha, pa.concat_arrays(grown),
                [str(hop), str(prune_span(plan, hop))])])
        return table.num_rows

    def _slices(self, table: pa.Table, keys: pa.Array | None) -> Iterator[pa.Table]:
        """``table`` in slices of about ``SLICE_ROWS`` rows, cut between keys when ``keys``
        (sorted) is given, so that packing a slice overlaps the server running the one
        before. On a cluster the table stays whole: calls are cut by slot, and slices would
        only make them smaller."""
        n = table.num_rows
        if self.nodes.cluster or n <= SLICE_ROWS:
            yield table
            return
        lo = 0
        while lo < n:
            hi = min(lo + SLICE_ROWS, n)
            if keys is not None:
                while hi < n and keys[hi] == keys[hi - 1]:
                    hi += 1
            yield table.slice(lo, hi - lo)
            lo = hi

    def write_tiles_monotonic(self, plan: ViewPlan, hop: int, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        batch = prepare_tiles(plan, hop, table)
        positions = ",".join(str(p + 1) for p in count_positions(batch.codec))  # Lua: 1-based
        calls = self._tile_calls(plan, hop, batch, [positions])
        return sum(self._run(self._monotonic, calls))

    def merge_tiles(self, plan: ViewPlan, hop: int, table: pa.Table,
                    guard: SeqGuard | None = None, cache: TileCache | None = None) -> int:
        """Read the stored tiles (one pipelined round trip), merge the deltas column-wise in
        Python (:mod:`braid.online.tilemerge`) and write with ``MERGE_WRITE``, which applies
        a call only if the fields still hold what was read; a call that meets a concurrent
        change is redone by the server-side ``MERGE_TILES`` merge.

        With a ``cache`` (:mod:`braid.online.tilecache`; the namespace's single tile writer
        only) the stored values come from it and only keys it lacks are read (whole, once);
        the merged states, the guard and the pruned fields of each key are written by
        ``WRITE_STATES`` without comparing, and inside :meth:`batch` their replies are read
        at its end. Without a cache, when most deltas are for tiles beyond any merged before (a
        backlog, a new hop), there is little to read: the server-side merge writes them in
        one call per batch of keys, without the read round trip. Every path gives the same
        values (the algebra's merge)."""
        if table.num_rows == 0:
            return 0
        codec = TileCodec(plan, hop)
        keys, starts, unique = merge_keys(plan, hop, table)
        if not unique:
            if cache is not None:
                cache.drop(plan.namespace, keys)
            return self._merge_in_lua(plan, hop, table, guard)
        if cache is not None:
            try:
                return self._merge_cached(plan, hop, codec, table, keys, starts, guard, cache)
            except BaseException:  # what was applied is unknown: read these keys again
                cache.drop(plan.namespace, keys)
                raise
        if self._new_tiles.mostly_new(plan, hop, starts, guard):
            return self._merge_in_lua(plan, hop, table, guard)
        return self._merge_known(plan, hop, codec, table, keys, starts, guard)

    def _merge_cached(self, plan: ViewPlan, hop: int, codec: TileCodec, table: pa.Table,
                      keys: list[str], starts: list[int], guard: SeqGuard | None,
                      cache: TileCache) -> int:
        """The merge of a namespace's only tile writer: stored values from ``cache``, the
        merged states, guard and pruning written by ``WRITE_STATES`` without comparing."""
        m = cached_merge(cache, plan.namespace, codec, table, keys, starts,
                         (guard.field, guard.seq) if guard else None, prune_span(plan, hop),
                         self.read_hashes)
        if not m.rows:
            return 0
        exp = expiry_ms(plan)
        head = [guard.field if guard else "", str(guard.seq) if guard else "",
                "" if exp is None else str(exp)]
        commands = state_calls(self.nodes, self._states.sha, m, head)

        def done(replies: list[Any]) -> None:
            self._check(replies, "write")
            m.commit(cache, None if exp is None else exp / 1000)

        if self._deferred is not None:
            self._defer(commands, self._states, done)
        else:
            done(self._execute([commands], self._states, "write"))
        return len(m.rows)

    def _merge_known(self, plan: ViewPlan, hop: int, codec: TileCodec, table: pa.Table,
                     keys: list[str], starts: list[int], guard: SeqGuard | None) -> int:
        """The client-side merge of :meth:`merge_tiles`: read, merge, ``MERGE_WRITE``."""
        fields = [f"{hop}:{s}" for s in starts]
        rows: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            rows.setdefault(key, []).append(i)
        old: list[bytes | None] = [None] * len(keys)
        todo = self._read_tiles(rows, fields, guard, old)
        if not todo:
            return 0
        if len(todo) < len(rows):
            take = pa.array([i for k in todo for i in rows[k]], pa.int64())
            table, idx = table.take(take), pylist(take)
            keys, fields, old = ([xs[i] for i in idx] for xs in (keys, fields, old))
            rows = {}
            for i, key in enumerate(keys):
                rows.setdefault(key, []).append(i)
        values = merge_tile_values(codec, old, table)
        calls = self._merge_write_calls(plan, hop, rows, fields, old, values, guard)
        applied, redo = 0, []
        for (_, call_keys, _), n in zip(calls, self._run(self._merge_write, calls),
                                        strict=True):
            if n < 0:
                redo += call_keys
                continue
            applied += n
        if redo:  # a field changed since it was read: merge those keys on the server
            take = pa.array([i for k in redo for i in rows[k]], pa.int64())
            applied += self._merge_in_lua(plan, hop, table.take(take), guard)
        return applied

    def _merge_write_calls(self, plan: ViewPlan, hop: int, rows: dict[str, list[int]],
                           fields: list[str], old: list[bytes | None], values: list[bytes],
                           guard: SeqGuard | None) -> list[Call]:
        """``MERGE_WRITE`` calls (argument layout in :mod:`braid.online.lua`)."""
        exp = expiry_ms(plan)
        head: list[str | bytes] = ["" if exp is None else str(exp), str(hop),
                                   str(prune_span(plan, hop)), guard.field if guard else "",
                                   str(guard.seq) if guard else ""]
        calls: list[Call] = []
        was = [b"" if v is None else b"=" + v for v in old]
        triples = [(f, w, v) for f, w, v in zip(fields, was, values, strict=True)]
        for slot, part in self._by_slot(list(rows.items())):
            args = list(head)
            for _, idx in part:
                if len(idx) == 1:
                    i = idx[0]
                    args += [_ONE, _NEW[old[i] is None], *triples[i]]
                    continue
                args += [str(len(idx)), _NEW[any(old[i] is None for i in idx)]]
                for i in idx:
                    args += triples[i]
            calls.append((slot, [k for k, _ in part], args))
        return calls

    def _read_tiles(self, rows: dict[str, list[int]], fields: list[str],
                    guard: SeqGuard | None, old: list[bytes | None]) -> list[str]:
        """Fill ``old`` with the stored value of each row's tile; returns the keys the guard
        does not skip. ``READ_FIELDS`` calls of ``KEYS_PER_CALL`` keys, one round trip."""
        calls: list[Call] = []
        groups: list[tuple[str, list[int]]] = []
        for slot, part in self._by_slot(list(rows.items())):
            args: list[str | bytes] = [guard.field if guard else ""]
            for _, idx in part:
                args.append(str(len(idx)))
                args += [fields[i] for i in idx]
            calls.append((slot, [k for k, _ in part], args))
            groups += part
        replies = self._call(self._read, calls, "read")
        flat = [v for reply in replies for v in reply]
        todo = []
        at, g = 0, 1 if guard else 0
        for key, idx in groups:
            if guard and flat[at] is not None and int(flat[at]) >= guard.seq:
                at += g + len(idx)
                continue
            todo.append(key)
            at += g
            for i in idx:
                old[i] = flat[at]
                at += 1
        return todo

    def _merge_in_lua(self, plan: ViewPlan, hop: int, table: pa.Table,
                      guard: SeqGuard | None) -> int:
        """The server-side merge (``MERGE_TILES``): mostly new tiles, a batch naming one tile
        twice, or keys changed by another writer between read and write."""
        batch = prepare_tiles(plan, hop, table)
        extra = [batch.codec.lua_layout, guard.field if guard else "",
                 str(guard.seq) if guard else ""]
        return sum(self._run(self._merge, self._tile_calls(plan, hop, batch, extra)))

    def _tile_calls(self, plan: ViewPlan, hop: int, batch: TileBatch,
                    extra: list[str]) -> list[Call]:
        exp = expiry_ms(plan)
        head = ["" if exp is None else str(exp), str(hop), str(prune_span(plan, hop)), *extra]
        calls: list[Call] = []
        for slot, part in self._by_slot(list(batch.by_key().items())):
            keys: list[str] = []
            args: list[str | bytes] = list(head)
            for key, tiles in part:
                keys.append(key)
                args.append(str(len(tiles)))
                for start, value in tiles:
                    args.append(str(start))
                    args.append(value)
            calls.append((slot, keys, args))
        return calls

    def _by_slot(self, groups: list[tuple[str, _G]]) -> list[tuple[int, list[tuple[str, _G]]]]:
        """(key, payload) pairs cut into script calls of at most ``KEYS_PER_CALL`` keys whose
        keys share a hash slot (on one server: consecutive runs); each call with its slot."""
        slots = self.nodes.slots([k for k, _ in groups]) if self.nodes.cluster else None
        if slots is not None:
            order = np.argsort(slots, kind="stable")
            groups, slots = [groups[i] for i in order], slots[order]
        return [(slot, groups[lo:hi])
                for slot, lo, hi in self.nodes.chunks(slots, len(groups), KEYS_PER_CALL)]

    def _defer(self, commands: list[Command], script: Script,
               done: Callable[[list[Any]], None]) -> None:
        """Send inside :meth:`batch`; the replies go to ``done`` at its end."""
        assert self._deferred is not None
        try:
            self._deferred.send(commands, script, done)
        except self.nodes.failures as e:
            raise StoreError(f"redis write failed on {self.url}: {e}") from e

    def _run(self, script: Script, calls: Sequence[Call]) -> list[int]:
        """Run script calls in one pipelined round trip per node; each call's integer."""
        return [int(x) for x in self._call(script, calls, "write")]

    def _call(self, script: Script, calls: Sequence[Call], what: str) -> list[Any]:
        commands: list[Command] = [
            (slot, [pack(["EVALSHA", script.sha, str(len(keys)), *keys, *args])], 1)
            for slot, keys, args in calls]
        return self._execute([commands], script, what)

    def _total(self, script: Script, batches: Iterable[Sequence[Command]]) -> int:
        return sum(int(x) for x in self._execute(batches, script, "write"))

    def _execute(self, batches: Iterable[Sequence[Command]], script: Script | None,
                 what: str) -> list[Any]:
        """Replies of packed commands (batches sent as produced, see ``RedisNodes.execute``);
        a failed command raises (an int64 overflow as OverflowError64)."""
        try:
            replies = self.nodes.execute(batches, script)
        except self.nodes.failures as e:
            raise StoreError(f"redis {what} failed on {self.url}: {e}") from e
        return self._check(replies, what)

    def _check(self, replies: list[Any], what: str) -> list[Any]:
        """``replies``, unless one is an error: then that error as a typed exception."""
        for r in (x for reply in replies for x in (reply if isinstance(reply, list) else [reply])):
            if isinstance(r, self._errors.ResponseError):
                if "braid overflow" in str(r):
                    raise OverflowError64(str(r).split("braid overflow: ")[-1]) from None
                raise StoreError(f"redis {what} failed on {self.url}: {r}") from r
        return replies

    # ------------------------------------------------------------------ reads

    def fetch(self, requests: Sequence[FieldRequest]) -> list[list[bytes | None]]:
        if self.nodes.cluster and len(requests) > 1:  # one pipeline per node, in parallel
            slots = self.nodes.slots([key for key, _ in requests])
            return self._execute([[(int(slot), [pack(["HMGET", key, *fields])], 1)
                                   for slot, (key, fields) in zip(slots, requests, strict=True)]],
                                 None, "read")
        try:
            if len(requests) == 1:
                key, fields = requests[0]
                return [self.client.execute_command("HMGET", key, *fields)]
            pipe = self.client.pipeline(transaction=False)
            for key, fields in requests:
                pipe.execute_command("HMGET", key, *fields)
            return pipe.execute()  # type: ignore[no-any-return]
        except self.nodes.failures as e:
            raise StoreError(f"redis read failed on {self.url}: {e}") from e

    def read_hash(self, key: str) -> dict[str, bytes]:
        raw: dict[bytes, bytes] = self.client.hgetall(key)  # type: ignore[assignment]
        return {k.decode(): v for k, v in raw.items()}

    def read_hashes(self, keys: Sequence[str]) -> list[dict[str, bytes]]:
        if not keys:
            return []
        calls: list[Call] = [(slot, [k for k, _ in part], [])
                             for slot, part in self._by_slot([(k, None) for k in keys])]
        out: dict[str, dict[str, bytes]] = {}
        for (_, part, _), flat in zip(calls, self._call(self._hashes, calls, "read"),
                                      strict=True):
            at = 0
            for key in part:
                n = int(flat[at])
                out[key] = {flat[i].decode(): flat[i + 1] for i in range(at + 1, at + 1 + n, 2)}
                at += 1 + n
        return [out[k] for k in keys]

    def close(self) -> None:
        self.nodes.close()


def _pack_ahead(parts: Iterator[pa.Table], build: Callable[[pa.Table], _T]) -> Iterator[_T]:
    """``build(part)`` of every part, in order, computed ``PACK_THREADS`` at a time on worker
    threads (Arrow's kernels release the GIL) while the caller sends what is ready."""
    with ThreadPoolExecutor(max_workers=PACK_THREADS) as pool:
        yield from pool.map(build, parts)
