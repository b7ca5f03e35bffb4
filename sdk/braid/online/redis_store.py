"""Redis online store: one hash per (project, namespace, entity) (DESIGN §6).

Writes go through Lua scripts (:mod:`braid.online.lua`) applied to batches of keys, several
batches per pipelined round trip; reads are pipelined HMGETs, one per key, so every command
touches one key (Redis Cluster routes them; the multi-key write scripts would have to be
grouped by hash slot for a cluster, which is not done yet).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from braid.algebra import OverflowError64
from braid.errors import StoreError
from braid.online.base import (
    FieldRequest,
    OnlineStore,
    SeqGuard,
    TileBatch,
    count_positions,
    prepare_rows,
    prepare_tiles,
    tile_starts,
)
from braid.online.encoding import TileCodec, encode_keys, expiry_ms, prune_span
from braid.online.lua import (
    MERGE_TILES,
    MERGE_WRITE,
    READ_FIELDS,
    WRITE_ROWS,
    WRITE_TILES,
    WRITE_TILES_MONOTONIC,
)
from braid.online.tilemerge import merge_tile_values
from braid.plan import ViewPlan

_ONE = "1"
_NEW = {True: "1", False: "0"}  # MERGE_WRITE's prune flag: some tile of the key is new

#: Keys per script call, and script calls per pipelined round trip.
KEYS_PER_CALL = 1000
CALLS_PER_PIPELINE = 8


class RedisOnlineStore(OnlineStore):
    """The online store on Redis (or anything speaking its protocol with Lua).

    Example:
        >>> store = RedisOnlineStore("redis://127.0.0.1:6379/0")
        >>> store.write_rows(plan, rows_table)
    """

    def __init__(self, url: str, **client_options: Any) -> None:
        import redis  # imported here so `import braid` never needs redis

        self.url = url
        self._redis = redis
        self.client = redis.Redis.from_url(url, **client_options)
        self._rows = self.client.register_script(WRITE_ROWS)
        self._tiles = self.client.register_script(WRITE_TILES)
        self._merge = self.client.register_script(MERGE_TILES)
        self._merge_write = self.client.register_script(MERGE_WRITE)
        self._read = self.client.register_script(READ_FIELDS)
        self._monotonic = self.client.register_script(WRITE_TILES_MONOTONIC)

    # ------------------------------------------------------------------ writes

    def write_rows(self, plan: ViewPlan, table: pa.Table) -> int:
        if table.num_rows == 0 or not plan.projections:
            return 0
        batch = prepare_rows(plan, table)
        ts = pc.cast(batch.ts, pa.string()).to_pylist()
        ct = pc.cast(batch.ct, pa.string()).to_pylist()
        # '=' marks a value so that '' can stand for NULL (an absent field).
        vals = [pc.fill_null(pc.binary_join_element_wise("=", v, ""), "").to_pylist()
                for v in batch.values]
        exp = expiry_ms(plan)
        head = ["" if exp is None else str(exp), str(len(batch.fields)), *batch.fields]
        calls = []
        for lo in range(0, len(batch.keys), KEYS_PER_CALL):
            hi = lo + KEYS_PER_CALL
            args: list[str] = list(head)
            for row in zip(ts[lo:hi], ct[lo:hi], *(v[lo:hi] for v in vals), strict=True):
                args.extend(row)
            calls.append((batch.keys[lo:hi], args))
        return sum(self._run(self._rows, calls))

    def write_tiles(self, plan: ViewPlan, hop: int, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        batch = prepare_tiles(plan, hop, table)
        return sum(self._run(self._tiles, self._tile_calls(plan, hop, batch, [])))

    def write_tiles_monotonic(self, plan: ViewPlan, hop: int, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        batch = prepare_tiles(plan, hop, table)
        positions = ",".join(str(p + 1) for p in count_positions(batch.codec))  # Lua: 1-based
        calls = self._tile_calls(plan, hop, batch, [positions])
        return sum(self._run(self._monotonic, calls))

    def merge_tiles(self, plan: ViewPlan, hop: int, table: pa.Table,
                    guard: SeqGuard | None = None) -> int:
        """Read the stored tiles (one pipelined round trip), merge the deltas column-wise in
        Python (:mod:`braid.online.tilemerge`) and write with ``MERGE_WRITE``, which applies
        a call only if the fields still hold what was read; a call that meets a concurrent
        change is redone by the server-side ``MERGE_TILES`` merge."""
        if table.num_rows == 0:
            return 0
        codec = TileCodec(plan, hop)
        starts = tile_starts(plan, hop, table).to_pylist()
        keys = encode_keys(plan, table)
        if len(set(zip(keys, starts, strict=True))) != len(keys):
            return self._merge_in_lua(plan, hop, table, guard)
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
            table, idx = table.take(take), take.to_pylist()
            keys, fields, old = ([xs[i] for i in idx] for xs in (keys, fields, old))
            rows = {}
            for i, key in enumerate(keys):
                rows.setdefault(key, []).append(i)
        values = merge_tile_values(codec, old, table)
        exp = expiry_ms(plan)
        head: list[str | bytes] = ["" if exp is None else str(exp), str(hop),
                                   str(prune_span(plan, hop)), guard.field if guard else "",
                                   str(guard.seq) if guard else ""]
        calls: list[tuple[list[str], list[str | bytes]]] = []
        groups = list(rows.items())
        was = [b"" if v is None else b"=" + v for v in old]
        triples = [(f, w, v) for f, w, v in zip(fields, was, values, strict=True)]
        for lo in range(0, len(groups), KEYS_PER_CALL):
            args = list(head)
            for _, idx in groups[lo:lo + KEYS_PER_CALL]:
                if len(idx) == 1:
                    i = idx[0]
                    args += [_ONE, _NEW[old[i] is None], *triples[i]]
                    continue
                args += [str(len(idx)), _NEW[any(old[i] is None for i in idx)]]
                for i in idx:
                    args += triples[i]
            calls.append(([k for k, _ in groups[lo:lo + KEYS_PER_CALL]], args))
        applied, redo = 0, []
        for (call_keys, _), n in zip(calls, self._run(self._merge_write, calls), strict=True):
            if n < 0:
                redo += call_keys
            else:
                applied += n
        if redo:  # a field changed since it was read: merge those keys on the server
            take = pa.array([i for k in redo for i in rows[k]], pa.int64())
            applied += self._merge_in_lua(plan, hop, table.take(take), guard)
        return applied

    def _read_tiles(self, rows: dict[str, list[int]], fields: list[str],
                    guard: SeqGuard | None, old: list[bytes | None]) -> list[str]:
        """Fill ``old`` with the stored value of each row's tile; returns the keys the guard
        does not skip. ``READ_FIELDS`` calls of ``KEYS_PER_CALL`` keys, one round trip."""
        groups = list(rows.items())
        pipe = self.client.pipeline(transaction=False)
        for lo in range(0, len(groups), KEYS_PER_CALL):
            args: list[str] = [guard.field if guard else ""]
            for _, idx in groups[lo:lo + KEYS_PER_CALL]:
                args.append(str(len(idx)))
                args += [fields[i] for i in idx]
            self._read(keys=[k for k, _ in groups[lo:lo + KEYS_PER_CALL]], args=args,
                       client=pipe)
        try:
            replies = pipe.execute()
        except self._redis.RedisError as e:
            raise StoreError(f"redis read failed on {self.url}: {e}") from e
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
        """The server-side merge (``MERGE_TILES``): a batch naming one tile twice, or keys
        changed by another writer between read and write."""
        batch = prepare_tiles(plan, hop, table)
        extra = [batch.codec.lua_layout, guard.field if guard else "",
                 str(guard.seq) if guard else ""]
        return sum(self._run(self._merge, self._tile_calls(plan, hop, batch, extra)))

    def _tile_calls(self, plan: ViewPlan, hop: int, batch: TileBatch,
                    extra: list[str]) -> list[tuple[list[str], list[str | bytes]]]:
        exp = expiry_ms(plan)
        head = ["" if exp is None else str(exp), str(hop), str(prune_span(plan, hop)), *extra]
        calls = []
        groups = list(batch.by_key().items())
        for lo in range(0, len(groups), KEYS_PER_CALL):
            keys: list[str] = []
            args: list[str | bytes] = list(head)
            for key, tiles in groups[lo:lo + KEYS_PER_CALL]:
                keys.append(key)
                args.append(str(len(tiles)))
                for start, value in tiles:
                    args.append(str(start))
                    args.append(value)
            calls.append((keys, args))
        return calls

    def _run(self, script: Any, calls: Sequence[tuple[list[str], Sequence[str | bytes]]]
             ) -> Iterator[int]:
        """Run script calls, ``CALLS_PER_PIPELINE`` per round trip; yields each result."""
        results: list[int] = []
        for lo in range(0, len(calls), CALLS_PER_PIPELINE):
            pipe = self.client.pipeline(transaction=False)
            for keys, args in calls[lo:lo + CALLS_PER_PIPELINE]:
                script(keys=keys, args=args, client=pipe)
            try:
                out = pipe.execute(raise_on_error=True)
            except self._redis.ResponseError as e:
                if "braid overflow" in str(e):
                    raise OverflowError64(str(e).split("braid overflow: ")[-1]) from None
                raise StoreError(f"redis script failed on {self.url}: {e}") from e
            except self._redis.RedisError as e:
                raise StoreError(f"redis write failed on {self.url}: {e}") from e
            results.extend(int(x) for x in out)
        return iter(results)

    # ------------------------------------------------------------------ reads

    def fetch(self, requests: Sequence[FieldRequest]) -> list[list[bytes | None]]:
        try:
            if len(requests) == 1:
                key, fields = requests[0]
                return [self.client.execute_command("HMGET", key, *fields)]
            pipe = self.client.pipeline(transaction=False)
            for key, fields in requests:
                pipe.execute_command("HMGET", key, *fields)
            return pipe.execute()  # type: ignore[no-any-return]
        except self._redis.RedisError as e:
            raise StoreError(f"redis read failed on {self.url}: {e}") from e

    def read_hash(self, key: str) -> dict[str, bytes]:
        raw: dict[bytes, bytes] = self.client.hgetall(key)  # type: ignore[assignment]
        return {k.decode(): v for k, v in raw.items()}

    def close(self) -> None:
        self.client.close()
