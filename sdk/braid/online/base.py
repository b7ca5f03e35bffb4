"""The online store interface (DESIGN §4.6, §6) and the write batches both stores share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from braid.algebra import MISSING_CREATED
from braid.arrowutil import pylist
from braid.errors import StoreError
from braid.online.encoding import FIELD_PREFIX, TileCodec, encode_column, key_array
from braid.online.tilecache import TileCache
from braid.plan import ViewPlan

#: One HMGET: the key and the fields to read.
FieldRequest = tuple[str, Sequence[str]]


@dataclass(frozen=True)
class SeqGuard:
    """Per-key sequence guard of a streaming runner (DESIGN §7).

    A chunk applies to a key only if ``seq`` is greater than the key's ``_seq:<runner>``
    field, which is set to ``seq`` in the same atomic step.
    """

    runner: str
    seq: int

    @property
    def field(self) -> str:
        return f"_seq:{self.runner}"


@dataclass
class RowBatch:
    """Projection rows encoded for a write: one entry per input row."""

    key_array: pa.Array  # string
    ts: pa.Array  # int64
    ct: pa.Array  # int64, MISSING_CREATED where missing
    fields: list[str]  # "f:<name>" in plan order
    values: list[pa.Array]  # string, NULL = absent field

    @cached_property
    def keys(self) -> list[str]:
        return pylist(self.key_array)


@dataclass
class TileBatch:
    """Tile rows encoded for a write: one entry per (key, tile_start)."""

    codec: TileCodec
    key_array: pa.Array  # string
    start_array: pa.Array  # int64
    value_array: pa.Array  # string

    @cached_property
    def keys(self) -> list[str]:
        return pylist(self.key_array)

    @cached_property
    def starts(self) -> list[int]:
        return pylist(self.start_array)

    @cached_property
    def values(self) -> list[str]:
        return pylist(self.value_array)

    def by_key(self) -> dict[str, list[tuple[int, str]]]:
        """Rows grouped by key, first-seen order kept."""
        out: dict[str, list[tuple[int, str]]] = {}
        for key, start, value in zip(self.keys, self.starts, self.values, strict=True):
            out.setdefault(key, []).append((start, value))
        return out


def count_positions(codec: TileCodec) -> list[int]:
    """0-based positions of the count fields (``n``) in a tile value of ``codec``'s hop.

    Every partial that carries a count (count, mean, var, stddev) contributes one position;
    the count guard of :meth:`OnlineStore.write_tiles_monotonic` compares them.
    """
    out: list[int] = []
    for (lo, _), p in zip(codec.slices, codec.partials, strict=True):
        out += [lo + i for i, name in enumerate(p.spec.fields) if name == "n"]
    return out


def lowers_count(old: bytes, new: bytes, positions: Sequence[int]) -> bool:
    """Whether tile value ``new`` has a smaller count than ``old`` at any of ``positions``
    (an empty field counts 0). Values of another width never block a write."""
    a, b = old.split(b","), new.split(b",")
    if len(a) != len(b):
        return False
    return any(int(b[i] or 0) < int(a[i] or 0) for i in positions)


def _time_column(table: pa.Table, name: str, required: bool) -> pa.Array:
    if name not in table.column_names:
        if required:
            raise StoreError(f"rows table lacks the '{name}' column (int64 epoch ms)")
        return pa.nulls(table.num_rows, pa.int64())
    col = table.column(name).combine_chunks()
    if pa.types.is_timestamp(col.type):
        col = pc.cast(col, pa.timestamp("ms", tz=col.type.tz)).cast(pa.int64())
    return pc.cast(col, pa.int64())


def prepare_rows(plan: ViewPlan, table: pa.Table) -> RowBatch:
    """Encode projection rows (entity keys, ``_ts``, ``_ct``, projection columns)."""
    ts = _time_column(table, "_ts", True)
    if ts.null_count:
        raise StoreError(f"view '{plan.name}': '_ts' holds NULLs; every row needs an event time")
    ct = pc.fill_null(_time_column(table, "_ct", False), MISSING_CREATED)
    values = []
    for p in plan.projections:
        if p.name not in table.column_names:
            raise StoreError(f"view '{plan.name}': rows table lacks projection '{p.name}'")
        values.append(encode_column(table.column(p.name), p.dtype))
    return RowBatch(key_array(plan, table), ts, ct,
                    [FIELD_PREFIX + p.name for p in plan.projections], values)


def tile_starts(plan: ViewPlan, hop: int, table: pa.Table) -> pa.Array:
    """The ``tile_start`` column as int64 epoch ms, checked to be multiples of ``hop``."""
    if "tile_start" not in table.column_names:
        raise StoreError("tiles table lacks the 'tile_start' column (int64 epoch ms)")
    starts = _time_column(table, "tile_start", True)
    if starts.null_count or np.any(np.mod(starts.to_numpy(zero_copy_only=False), hop)):
        raise StoreError(f"view '{plan.name}': a tile_start is NULL or not a multiple of the "
                         f"hop ({hop} ms)")
    return starts


def merge_keys(plan: ViewPlan, hop: int, table: pa.Table) -> tuple[list[str], list[int], bool]:
    """The store key and tile start of every delta row, and whether each (key, tile) pair
    occurs once (a merge of repeated pairs folds them on the server, in order)."""
    keys, starts = key_array(plan, table), tile_starts(plan, hop, table)
    ids = pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    at = starts.to_numpy(zero_copy_only=False)
    order = np.lexsort((at, ids))
    repeated = np.any((np.diff(ids[order]) == 0) & (np.diff(at[order]) == 0))
    starts_list: list[int] = pylist(starts)
    return pylist(keys), starts_list, not repeated


def prepare_tiles(plan: ViewPlan, hop: int, table: pa.Table) -> TileBatch:
    """Encode tile rows (entity keys, ``tile_start``, the hop's partial columns)."""
    codec = TileCodec(plan, hop)
    starts = tile_starts(plan, hop, table)
    return TileBatch(codec, key_array(plan, table), starts, codec.encode_array(table))


class NewTiles:
    """Remembers the greatest tile start a store merged per (namespace, hop), to tell whether
    a merge is mostly of tiles new to every key (a backlog, a new hop) or of existing ones
    (steady streaming): the stores read and merge differently in the two cases, with the
    same result. Chunks of one batch (one guard seq) compare against the batch's start."""

    def __init__(self) -> None:
        #: (namespace, hop) -> (seq, greatest start before that seq, greatest so far)
        self._marks: dict[tuple[str, int], tuple[int | None, int | None, int]] = {}

    def mostly_new(self, plan: ViewPlan, hop: int, starts: Sequence[int],
                   guard: SeqGuard | None) -> bool:
        """Whether at least half of ``starts`` lie beyond every tile merged before this batch
        (the guard's seq; without a guard, before this call); records ``starts``."""
        seq = guard.seq if guard is not None else None
        mark = self._marks.get((plan.namespace, hop))
        if mark is None:
            before = None
        else:
            before = mark[1] if seq is not None and mark[0] == seq else mark[2]
        newest = max(starts) if mark is None else max(mark[2], *starts)
        self._marks[(plan.namespace, hop)] = (seq, before, newest)
        return before is None or 2 * sum(s > before for s in starts) >= len(starts)


class OnlineStore(ABC):
    """Where served features live: one hash of text fields per (project, namespace, entity).

    Both implementations (:class:`~braid.online.redis_store.RedisOnlineStore`,
    :class:`~braid.online.sqlite_store.SqliteOnlineStore`) pass one contract suite
    (``tests/integration/test_online_contract.py``). Key expiry and tile pruning are garbage
    collection only; readers never rely on them.
    """

    @abstractmethod
    def write_rows(self, plan: ViewPlan, table: pa.Table) -> int:
        """Last-write-wins upsert of projection rows by (ts, created, canonical value).

        Args:
            plan: the view's plan.
            table: join-key columns, ``_ts`` and ``_ct`` (int64 epoch ms; a NULL ``_ct`` is a
                missing created time, which sorts lowest) and one column per projection.

        Returns:
            How many rows won (were stored); inside :meth:`batch` on Redis, whose replies
            are read at the batch's end, how many were sent.
        """

    @abstractmethod
    def write_tiles(self, plan: ViewPlan, hop: int, table: pa.Table) -> int:
        """Overwrite tiles with absolute partial states (materialize).

        Args:
            plan: the view's plan.
            hop: the hop in ms; ``table`` holds the columns of ``plan.partials_for_hop(hop)``.
            table: join-key columns, ``tile_start`` and the partial columns (NULL = empty).

        Returns:
            How many tile fields were written.
        """

    @abstractmethod
    def write_tiles_monotonic(self, plan: ViewPlan, hop: int, table: pa.Table) -> int:
        """Write absolute tile states like :meth:`write_tiles`, except that a state whose
        count (any ``n`` field, :func:`count_positions`) is lower than the stored one is
        skipped (the online writer of DESIGN §7: after a Flink restore, older states of a
        tile are emitted again). Equal counts overwrite (the same events, the same state).
        A hop without a count-bearing partial has no guard: states overwrite.

        Returns:
            How many tile fields were written (skipped ones excluded).
        """

    @abstractmethod
    def merge_tiles(self, plan: ViewPlan, hop: int, table: pa.Table,
                    guard: SeqGuard | None = None, cache: TileCache | None = None) -> int:
        """Add partial deltas into the stored tiles with the algebra's merge kinds.

        Args:
            plan: the view's plan.
            hop: the hop in ms.
            table: as for :meth:`write_tiles`, holding deltas.
            guard: optional per-key sequence guard; keys whose stored sequence is not older
                than ``guard.seq`` are skipped.
            cache: what this writer knows of its keys' stored tiles
                (:mod:`braid.online.tilecache`): the merge takes stored values from it and
                keeps it up to date. Only the namespace's single tile writer passes one.

        Returns:
            How many keys the deltas were applied to (skipped keys excluded).

        Raises:
            OverflowError64: an int64 sum overflowed; nothing of the affected batch of keys
                was written.
        """

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group the writes made inside into one durable step where the store can.

        The default groups nothing (each write call is atomic on its own); the SQLite store
        runs them in one transaction, so pages a micro-batch touches are written once; the
        Redis store sends them at once and reads their replies at the end.
        Every write keeps its own guarantees either way (guards, last-write-wins).

        Example:
            >>> with store.batch():
            ...     store.merge_tiles(plan, hop, deltas, guard=guard)
            ...     store.write_rows(plan, rows)
        """
        yield

    @abstractmethod
    def fetch(self, requests: Sequence[FieldRequest]) -> list[list[bytes | None]]:
        """Read the requested fields of many keys in one round trip (None = absent)."""

    @abstractmethod
    def read_hash(self, key: str) -> dict[str, bytes]:
        """Every field of one key (debugging and tests)."""

    def read_hashes(self, keys: Sequence[str]) -> list[dict[str, bytes]]:
        """Every field of many keys (one round trip where the store can)."""
        return [self.read_hash(k) for k in keys]

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
