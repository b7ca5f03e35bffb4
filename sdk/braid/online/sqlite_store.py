"""SQLite online store: the embedded default (DESIGN §6), WAL mode, same logical layout.

Layout: a fields table, one row per (key, field), where key and field are exactly the Redis
key and hash field and value the same text (stored as a BLOB of its UTF-8 bytes)::

    braid_online(key TEXT, field TEXT, value BLOB, PRIMARY KEY (key, field)) WITHOUT ROWID
    braid_online_expiry(key TEXT PRIMARY KEY, expires_at INTEGER)  -- epoch ms, for gc()

Every write runs in one ``BEGIN IMMEDIATE`` transaction, which serializes writers across
threads and processes, so last-write-wins and guarded merges are atomic per call; inside
:meth:`SqliteOnlineStore.batch` the calls share one transaction (the runner's micro-batch). Expiry is
garbage collection only (:meth:`SqliteOnlineStore.gc`); readers never look at it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from braid.algebra import MISSING_CREATED, merge
from braid.arrowutil import pylist
from braid.online.base import (
    FieldRequest,
    NewTiles,
    OnlineStore,
    RowBatch,
    SeqGuard,
    count_positions,
    lowers_count,
    merge_keys,
    prepare_rows,
    prepare_tiles,
)
from braid.online.encoding import (
    CT_FIELD,
    TS_FIELD,
    TileCodec,
    canonical,
    expiry_ms,
    prune_span,
    pruned,
)
from braid.online.tilecache import TileCache, cached_merge
from braid.online.tilemerge import merge_tile_values
from braid.plan import ViewPlan

_SCHEMA = """
CREATE TABLE IF NOT EXISTS braid_online (
    key TEXT NOT NULL, field TEXT NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (key, field)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS braid_online_expiry (
    key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
"""
_CHUNK = 500
# ON CONFLICT .. DO UPDATE rewrites the row in place; INSERT OR REPLACE deletes and inserts
# (measured ~20-30% slower per row here)
_UPSERT = ("INSERT INTO braid_online VALUES (?, ?, ?) "
           "ON CONFLICT (key, field) DO UPDATE SET value = excluded.value")
_UPSERT_EXPIRY = ("INSERT INTO braid_online_expiry VALUES (?, ?) "
                  "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at")
_DELETE = "DELETE FROM braid_online WHERE key = ? AND field = ?"

Hash = dict[str, bytes]


class SqliteOnlineStore(OnlineStore):
    """The online store in one SQLite file.

    Example:
        >>> store = SqliteOnlineStore("data/online.db")
        >>> store.write_rows(plan, rows_table)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._con().executescript(_SCHEMA)
        self._new_tiles = NewTiles()  # how merge_tiles reads (point reads or range scans)

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                  check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            # the runner rewrites the same hot keys every batch: keep their pages in memory
            con.execute("PRAGMA cache_size=-65536")
            con.execute("PRAGMA wal_autocheckpoint=10000")
            self._local.con = con
            with self._lock:
                self._all.append(con)
        return con

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction around every write made inside (this thread):
        the runner's micro-batch writes each page it touches once, and commits once."""
        if getattr(self._local, "batch", False):
            yield
            return
        with self._tx() as con:
            self._local.batch, self._local.expiry = True, {}
            try:
                yield
                # a key several calls wrote (one per hop) gets its expiry row once
                con.executemany(_UPSERT_EXPIRY, list(self._local.expiry.items()))
            finally:
                self._local.batch, self._local.expiry = False, {}

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        con = self._con()
        if getattr(self._local, "batch", False):  # inside batch(): its transaction
            yield con
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def _load(self, con: sqlite3.Connection, keys: Sequence[str],
              fields: Sequence[str] | None = None, prefix: str | None = None,
              extra: str | None = None) -> dict[str, Hash]:
        """Stored fields of ``keys``: only ``fields`` if given, only ``prefix*`` (and the
        ``extra`` field) if given."""
        out: dict[str, Hash] = {k: {} for k in keys}
        uniq = list(out)
        for lo in range(0, len(uniq), _CHUNK):
            part = uniq[lo:lo + _CHUNK]
            sql = f"SELECT key, field, value FROM braid_online WHERE key IN ({_marks(part)})"
            params: list[str] = list(part)
            if fields is not None:
                sql += f" AND field IN ({_marks(fields)})"
                params += list(fields)
            if prefix is not None:  # a primary-key range scan: prefix <= field < prefix + 1
                sql += " AND (field >= ? AND field < ?"
                params += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
                if extra is not None:
                    sql += " OR field = ?"
                    params.append(extra)
                sql += ")"
            for key, field, value in con.execute(sql, params):
                out[key][field] = value
        return out

    def _expire(self, con: sqlite3.Connection, keys: Sequence[str], exp: int | None) -> None:
        """Expiry rows of ``keys``: ``exp`` ms from now (inside :meth:`batch`, at its end)."""
        if exp is None:
            return
        at = int(time.time() * 1000) + exp
        if getattr(self._local, "batch", False):
            self._local.expiry.update(dict.fromkeys(keys, at))
        else:
            con.executemany(_UPSERT_EXPIRY, [(k, at) for k in keys])

    def _save(self, con: sqlite3.Connection, hashes: dict[str, Hash],
              deletes: Sequence[tuple[str, str]], exp: int | None) -> None:
        con.executemany(_UPSERT,
                        [(k, f, v) for k, h in hashes.items() for f, v in h.items()])
        con.executemany("DELETE FROM braid_online WHERE key = ? AND field = ?", deletes)
        self._expire(con, list(hashes), exp)

    # ------------------------------------------------------------------ writes

    def write_rows(self, plan: ViewPlan, table: pa.Table) -> int:
        if table.num_rows == 0 or not plan.projections:
            return 0
        b = prepare_rows(plan, table)
        if len(set(b.keys)) != len(b.keys):  # keys named twice: those rows one by one
            seen: dict[str, int] = {}
            for k in b.keys:
                seen[k] = seen.get(k, 0) + 1
            twice = pa.array([seen[k] > 1 for k in b.keys], pa.bool_())
            once = self.write_rows(plan, table.filter(pc.invert(twice)))
            return once + self._write_rows_each(plan, prepare_rows(plan, table.filter(twice)))
        ts, ct = pylist(b.ts), pylist(b.ct)
        vals = [pylist(v.cast(pa.binary())) for v in b.values]
        with self._tx() as con:
            stored = self._load(con, b.keys, [TS_FIELD, CT_FIELD])
            win, ties = [], []
            for i, key in enumerate(b.keys):
                h = stored[key]
                old_ts = h.get(TS_FIELD)
                if old_ts is None:
                    win.append(i)
                    continue
                old = (int(old_ts), int(h[CT_FIELD]) if CT_FIELD in h else MISSING_CREATED)
                new = (ts[i], ct[i])
                if new > old:
                    win.append(i)
                elif new == old:
                    ties.append(i)
            if ties:  # equal (ts, created): the greater canonical value wins (DESIGN §4.1)
                held = self._load(con, [b.keys[i] for i in ties], b.fields)
                win += [i for i in ties if canonical([v[i] for v in vals])
                        > canonical([held[b.keys[i]].get(f) for f in b.fields])]
            sets: list[tuple[str, str, bytes]] = []
            deletes: list[tuple[str, str]] = []
            for i in win:
                key = b.keys[i]
                sets.append((key, TS_FIELD, str(ts[i]).encode()))
                if ct[i] != MISSING_CREATED:
                    sets.append((key, CT_FIELD, str(ct[i]).encode()))
                elif CT_FIELD in stored[key]:  # loaded above: delete only what is there
                    deletes.append((key, CT_FIELD))
                for f, v in zip(b.fields, vals, strict=True):
                    if v[i] is None:
                        deletes.append((key, f))
                    else:
                        sets.append((key, f, v[i]))
            con.executemany(_UPSERT, sets)
            con.executemany(_DELETE, deletes)
            self._expire(con, [b.keys[i] for i in win], expiry_ms(plan))
        return len(win)

    def _write_rows_each(self, plan: ViewPlan, b: RowBatch) -> int:
        """Row by row: for a batch naming one key twice (each row meets the one before)."""
        ts, ct = pylist(b.ts), pylist(b.ct)
        vals = [[None if x is None else x.encode() for x in pylist(v)] for v in b.values]
        won = 0
        with self._tx() as con:
            stored = self._load(con, b.keys, [TS_FIELD, CT_FIELD, *b.fields])
            dirty: set[str] = set()
            for i, key in enumerate(b.keys):
                h = stored[key]
                new = [v[i] for v in vals]
                if TS_FIELD in h and _row_order(h, b.fields) >= (ts[i], ct[i], canonical(new)):
                    continue
                h.clear()
                h[TS_FIELD] = str(ts[i]).encode()
                if ct[i] != MISSING_CREATED:
                    h[CT_FIELD] = str(ct[i]).encode()
                h.update((f, v) for f, v in zip(b.fields, new, strict=True) if v is not None)
                dirty.add(key)
                won += 1
            deletes = [(k, f) for k in dirty for f in (CT_FIELD, *b.fields)
                       if f not in stored[k]]
            self._save(con, {k: stored[k] for k in dirty}, deletes, expiry_ms(plan))
        return won

    def write_tiles(self, plan: ViewPlan, hop: int, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        batch = prepare_tiles(plan, hop, table)
        groups = batch.by_key()
        with self._tx() as con:
            hashes = {k: {f"{hop}:{s}": v.encode() for s, v in tiles}
                      for k, tiles in groups.items()}
            self._save(con, hashes, [], expiry_ms(plan))
            self._prune(con, list(groups), hop, prune_span(plan, hop))
        return len(batch.keys)

    def write_tiles_monotonic(self, plan: ViewPlan, hop: int, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        batch = prepare_tiles(plan, hop, table)
        positions = count_positions(batch.codec)
        groups = batch.by_key()
        written = 0
        with self._tx() as con:
            stored = self._load(con, list(groups), prefix=f"{hop}:")
            hashes: dict[str, Hash] = {}
            for key, tiles in groups.items():
                h, out = stored[key], hashes.setdefault(key, {})
                for start, value in tiles:
                    field, new = f"{hop}:{start}", value.encode()
                    old = out.get(field, h.get(field))
                    if old is not None and lowers_count(old, new, positions):
                        continue
                    out[field] = new
                    written += 1
            hashes = {k: h for k, h in hashes.items() if h}
            self._save(con, hashes, [], expiry_ms(plan))
            self._prune(con, list(hashes), hop, prune_span(plan, hop))
        return written

    def merge_tiles(self, plan: ViewPlan, hop: int, table: pa.Table,
                    guard: SeqGuard | None = None, cache: TileCache | None = None) -> int:
        if table.num_rows == 0:
            return 0
        codec = TileCodec(plan, hop)
        keys, starts, unique = merge_keys(plan, hop, table)
        prefix = f"{hop}:"
        fields = [prefix + str(s) for s in starts]
        if not unique:
            if cache is not None:
                cache.drop(plan.namespace, keys)
            return self._merge_tiles_each(plan, hop, table, guard)
        if cache is not None:
            try:
                return self._merge_cached(plan, hop, codec, table, keys, starts, guard, cache)
            except BaseException:
                cache.drop(plan.namespace, keys)
                raise
        uniq = list(dict.fromkeys(keys))
        with self._tx() as con:
            wanted = list(dict.fromkeys(fields))
            # mostly new tiles (a backlog): pruning needs every tile of the key, so read
            # them all at once; else point reads of the merged tiles (and the guard)
            scan = self._new_tiles.mostly_new(plan, hop, starts, guard) or len(wanted) > _CHUNK
            if scan:
                stored = self._load(con, uniq, prefix=prefix,
                                    extra=guard.field if guard is not None else None)
            else:
                stored = self._load(con, uniq, wanted if guard is None
                                    else [*wanted, guard.field])
            if guard is not None:
                done = {k for k in uniq if guard.field in stored[k]
                        and int(stored[k][guard.field]) >= guard.seq}
                if done:
                    keep = [k not in done for k in keys]
                    table = table.filter(pa.array(keep, pa.bool_()))
                    keys, fields = ([x for x, ok in zip(xs, keep, strict=True) if ok]
                                    for xs in (keys, fields))
                    starts = [x for x, ok in zip(starts, keep, strict=True) if ok]
                    uniq = [k for k in uniq if k not in done]
                if not uniq:
                    return 0
            old = [stored[k].get(f) for k, f in zip(keys, fields, strict=True)]
            values = merge_tile_values(codec, old, table)
            rows = list(zip(keys, fields, values, strict=True))
            if guard is not None:
                seq = str(guard.seq).encode()
                rows += [(k, guard.field, seq) for k in uniq]
            con.executemany(_UPSERT, rows)
            self._expire(con, uniq, expiry_ms(plan))
            if scan:
                con.executemany(_DELETE, _pruned(stored, keys, starts, prefix,
                                                 prune_span(plan, hop)))
                return len(uniq)
            # A key whose merged tiles all existed keeps its newest tile, and every earlier
            # write pruned relative to it: only keys given a new tile can have tiles to prune.
            grown = list(dict.fromkeys(k for k, o in zip(keys, old, strict=True) if o is None))
            if grown:
                self._prune(con, grown, hop, prune_span(plan, hop))
        return len(uniq)

    def _merge_cached(self, plan: ViewPlan, hop: int, codec: TileCodec, table: pa.Table,
                      keys: list[str], starts: list[int], guard: SeqGuard | None,
                      cache: TileCache) -> int:
        """:meth:`merge_tiles` of the namespace's only tile writer, stored values from
        ``cache`` (keys it lacks are read whole first), in this store's write transaction;
        prunes from the cached tiles."""
        with self._tx() as con:
            def read(missing: list[str]) -> list[Hash]:
                return list(self._load(con, missing).values())

            m = cached_merge(cache, plan.namespace, codec, table, keys, starts,
                             (guard.field, guard.seq) if guard else None,
                             prune_span(plan, hop), read)
            if not m.rows:
                return 0
            out = [(k, m.fields[i], m.values[i]) for k, idx in m.rows.items() for i in idx]
            if guard is not None:
                seq = str(guard.seq).encode()
                out += [(k, guard.field, seq) for k in m.rows]
            con.executemany(_UPSERT, out)
            self._expire(con, list(m.rows), expiry_ms(plan))
            dead = [(k, f"{hop}:{s}") for k, ss in m.dead.items() for s in ss]
            if dead:
                con.executemany(_DELETE, dead)
            m.commit(cache, None)  # SQLite rewrites expiry rows per batch (cheap)
        return len(m.rows)

    def _merge_tiles_each(self, plan: ViewPlan, hop: int, table: pa.Table,
                          guard: SeqGuard | None) -> int:
        """Tile by tile in Python: for a batch naming one tile twice (merged in order)."""
        batch = prepare_tiles(plan, hop, table)
        codec = batch.codec
        specs = [p.spec for p in codec.partials]
        groups = batch.by_key()
        with self._tx() as con:
            if guard is not None:
                seqs = self._load(con, list(groups), [guard.field])
                groups = {k: t for k, t in groups.items()
                          if guard.field not in seqs[k] or int(seqs[k][guard.field]) < guard.seq}
            stored = self._load(con, list(groups), prefix=f"{hop}:")
            for key, tiles in groups.items():
                h = stored[key]
                for start, delta in tiles:
                    field = f"{hop}:{start}"
                    old = codec.decode(h.get(field))
                    new = codec.decode(delta.encode())
                    merged = [merge(s, a, d) for s, a, d in zip(specs, old, new, strict=True)]
                    h[field] = codec.encode(merged).encode()
                if guard is not None:
                    h[guard.field] = str(guard.seq).encode()
            self._save(con, {k: stored[k] for k in groups}, [], expiry_ms(plan))
            self._prune(con, list(groups), hop, prune_span(plan, hop))
        return len(groups)

    def _prune(self, con: sqlite3.Connection, keys: list[str], hop: int, span: int) -> None:
        dead = []
        for key, h in self._load(con, keys, prefix=f"{hop}:").items():
            starts = [int(f.split(":", 1)[1]) for f in h]
            if starts:
                dead += [(key, f"{hop}:{s}") for s in pruned(starts, max(starts), span)]
        con.executemany("DELETE FROM braid_online WHERE key = ? AND field = ?", dead)

    def gc(self, now_ms: int | None = None) -> int:
        """Delete keys whose expiry passed; returns how many keys were removed."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        with self._tx() as con:
            con.execute("DELETE FROM braid_online WHERE key IN (SELECT key FROM "
                        "braid_online_expiry WHERE expires_at <= ?)", (now,))
            return con.execute("DELETE FROM braid_online_expiry WHERE expires_at <= ?",
                               (now,)).rowcount

    # ------------------------------------------------------------------ reads

    def fetch(self, requests: Sequence[FieldRequest]) -> list[list[bytes | None]]:
        keys = list(dict.fromkeys(k for k, _ in requests))
        fields = list(dict.fromkeys(f for _, fs in requests for f in fs))
        found = self._load(self._con(), keys, fields if len(fields) <= _CHUNK else None)
        return [[found[k].get(f) for f in fs] for k, fs in requests]

    def read_hash(self, key: str) -> dict[str, bytes]:
        return self._load(self._con(), [key])[key]

    def close(self) -> None:
        with self._lock:
            for con in self._all:
                con.close()
            self._all.clear()
        self._local = threading.local()


def _pruned(stored: dict[str, Hash], keys: list[str], starts: list[int], prefix: str,
            span: int) -> list[tuple[str, str]]:
    """(key, field) of the tiles a merge leaves older than the key's newest tile - span:
    stored tiles of the hop plus the ones just written."""
    tiles: dict[str, set[int]] = {}
    for key, start in zip(keys, starts, strict=True):
        tiles.setdefault(key, set()).add(start)
    for key, have in tiles.items():
        have.update(int(f[len(prefix):]) for f in stored[key] if f.startswith(prefix))
    return [(k, f"{prefix}{s}") for k, have in tiles.items()
            for s in pruned(have, max(have), span)]


def _marks(items: Sequence[object]) -> str:
    return ",".join("?" * len(items))


def _row_order(h: Hash, fields: Sequence[str]) -> tuple[int, int, bytes]:
    """(ts, created, canonical value) of a stored row, missing created lowest."""
    ct = int(h[CT_FIELD]) if CT_FIELD in h else MISSING_CREATED
    return int(h[TS_FIELD]), ct, canonical([h.get(f) for f in fields])
