"""Runner metadata kept *in the online store* it writes (DESIGN §7): the state document of
:mod:`braid_streaming.runner.state`, one small key/value per runner instance.

Keeping offsets next to the tiles they describe means a restored or replaced store cannot
silently pair old offsets with new state. SQLite: a ``braid_runner_meta(key, value)`` table in
the same database file (same WAL, same durability). Redis: a plain string key
``braid:_meta:<key>`` on the same server (the tests run it with ``--appendonly yes``).

Beside the strings, a store keeps *sets* of strings (``add_members`` / ``members`` /
``drop_members``): SQLite rows of ``braid_runner_sets(key, member)``, Redis sets
``braid:_meta:<key>``. Adding is idempotent, so a replayed batch may add the same members again
(the tile-close statistics keep their pending entities there,
:mod:`braid_streaming.runner.tile_stats`).

If an online store offers ``get_meta`` / ``set_meta`` / ``has_prefix`` (and the set methods)
itself, those are used.

Example:
    >>> meta = meta_for(store.online)
    >>> meta.set("runner:fraud:transactions:ab12cd34:0of1", state.dumps())
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from braid.errors import StoreError
from braid.online import OnlineStore

_SQLITE_SCHEMA = ("CREATE TABLE IF NOT EXISTS braid_runner_meta ("
                  "key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
_SQLITE_SETS = ("CREATE TABLE IF NOT EXISTS braid_runner_sets (key TEXT NOT NULL, "
                "member TEXT NOT NULL, PRIMARY KEY (key, member)) WITHOUT ROWID")
_GLOB = str.maketrans({c: "\\" + c for c in "*?[]\\"})
#: Members per Redis SADD / SREM (bounded commands, never one giant call).
_MEMBERS_PER_CALL = 10_000

#: One metadata write for :meth:`MetaStore.write_many`: ``("set", key, text or None)``,
#: ``("add", key, members)``, ``("remove", key, members)`` or ``("drop", key, None)``.
Write = tuple[str, str, Any]


class MetaStore(ABC):
    """Durable key/value strings beside the online state."""

    @abstractmethod
    def get(self, key: str) -> str | None:
        """The value of ``key``, or None."""

    @abstractmethod
    def set(self, key: str, value: str | None) -> None:
        """Store ``value`` durably (None deletes the key)."""

    @abstractmethod
    def has_prefix(self, prefix: str) -> bool:
        """Whether any online state key starts with ``prefix``."""

    @abstractmethod
    def add_members(self, key: str, members: Iterable[str]) -> None:
        """Add ``members`` to the set ``key`` durably (idempotent)."""

    @abstractmethod
    def members(self, key: str) -> set[str]:
        """The members of the set ``key`` (empty if there is none)."""

    def members_many(self, keys: Iterable[str]) -> dict[str, set[str]]:
        """:meth:`members` of each of ``keys`` (Redis: one pipelined round trip)."""
        return {k: self.members(k) for k in keys}

    @abstractmethod
    def remove_members(self, key: str, members: Iterable[str]) -> None:
        """Remove ``members`` from the set ``key`` (absent ones are ignored)."""

    @abstractmethod
    def drop_members(self, key: str) -> None:
        """Delete the set ``key``."""

    def write_many(self, writes: Sequence[Write]) -> None:
        """Apply ``writes`` in order (Redis: one pipelined round trip; SQLite: one
        transaction). Not atomic on Redis: a failure may leave a prefix applied, as the
        same calls one by one would."""
        for op, key, arg in writes:
            if op == "set":
                self.set(key, arg)
            elif op == "add":
                self.add_members(key, arg)
            elif op == "remove":
                self.remove_members(key, arg)
            elif op == "drop":
                self.drop_members(key)
            else:
                raise ValueError(f"unknown metadata write {op!r}")


class SqliteMeta(MetaStore):
    """Metadata in the SQLite online store's file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._con().execute(_SQLITE_SCHEMA)
        self._con().execute(_SQLITE_SETS)

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                  check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")  # offsets must survive a power loss too
            # as the online store's connections: whichever commit crosses the threshold runs
            # the checkpoint, so a lower one here would checkpoint on every runner commit
            con.execute("PRAGMA wal_autocheckpoint=10000")
            self._local.con = con
        return con

    def get(self, key: str) -> str | None:
        row = self._con().execute("SELECT value FROM braid_runner_meta WHERE key = ?",
                                  (key,)).fetchall()
        return str(row[0][0]) if row else None

    def set(self, key: str, value: str | None) -> None:
        self.write_many([("set", key, value)])

    def has_prefix(self, prefix: str) -> bool:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        try:
            rows = self._con().execute(
                "SELECT 1 FROM braid_online WHERE key >= ? AND key < ? LIMIT 1",
                (prefix, end)).fetchall()
        except sqlite3.OperationalError:
            return False  # no online table yet: nothing written
        return bool(rows)

    def add_members(self, key: str, members: Iterable[str]) -> None:
        self.write_many([("add", key, members)])

    def members(self, key: str) -> set[str]:
        rows = self._con().execute("SELECT member FROM braid_runner_sets WHERE key = ?",
                                   (key,)).fetchall()
        return {str(r[0]) for r in rows}

    def remove_members(self, key: str, members: Iterable[str]) -> None:
        self.write_many([("remove", key, members)])

    def drop_members(self, key: str) -> None:
        self.write_many([("drop", key, None)])

    def write_many(self, writes: Sequence[Write]) -> None:
        """One write transaction (every write of it or none: in autocommit mode each row
        would be a synced commit of its own)."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            for op, key, arg in writes:
                if op == "set" and arg is None:
                    con.execute("DELETE FROM braid_runner_meta WHERE key = ?", (key,))
                elif op == "set":
                    con.execute("INSERT OR REPLACE INTO braid_runner_meta VALUES (?, ?)",
                                (key, arg))
                elif op == "add":
                    con.executemany("INSERT OR IGNORE INTO braid_runner_sets VALUES (?, ?)",
                                    [(key, m) for m in arg])
                elif op == "remove":
                    con.executemany("DELETE FROM braid_runner_sets WHERE key = ? AND "
                                    "member = ?", [(key, m) for m in arg])
                elif op == "drop":
                    con.execute("DELETE FROM braid_runner_sets WHERE key = ?", (key,))
                else:
                    raise ValueError(f"unknown metadata write {op!r}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


class RedisMeta(MetaStore):
    """Metadata as string keys ``braid:_meta:<key>`` on the Redis online store's server."""

    def __init__(self, client: Any, url: str) -> None:
        import redis

        self.client, self.url, self._errors = client, url, redis.RedisError

    def _call(self, *args: Any) -> Any:
        try:
            return self.client.execute_command(*args)
        except self._errors as e:
            raise StoreError(f"redis metadata {args[0]} failed on {self.url}: {e}") from e

    def get(self, key: str) -> str | None:
        raw = self._call("GET", "braid:_meta:" + key)
        return None if raw is None else raw.decode()

    def set(self, key: str, value: str | None) -> None:
        self.write_many([("set", key, value)])

    def has_prefix(self, prefix: str) -> bool:
        cursor: Any = 0
        pattern = prefix.translate(_GLOB) + "*"
        while True:
            cursor, keys = self._call("SCAN", cursor, "MATCH", pattern, "COUNT", 5000)
            if keys:
                return True
            if int(cursor) == 0:
                return False

    def add_members(self, key: str, members: Iterable[str]) -> None:
        self.write_many([("add", key, members)])

    def members(self, key: str) -> set[str]:
        return {m.decode() for m in self._call("SMEMBERS", "braid:_meta:" + key)}

    def members_many(self, keys: Iterable[str]) -> dict[str, set[str]]:
        wanted = list(dict.fromkeys(keys))
        pipe = self.client.pipeline(transaction=False)
        for k in wanted:
            pipe.execute_command("SMEMBERS", "braid:_meta:" + k)
        try:
            replies = pipe.execute()
        except self._errors as e:
            raise StoreError(f"redis metadata SMEMBERS failed on {self.url}: {e}") from e
        return {k: {m.decode() for m in r} for k, r in zip(wanted, replies, strict=True)}

    def remove_members(self, key: str, members: Iterable[str]) -> None:
        self.write_many([("remove", key, members)])

    def drop_members(self, key: str) -> None:
        self.write_many([("drop", key, None)])

    def write_many(self, writes: Sequence[Write]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for op, key, arg in writes:
            name = "braid:_meta:" + key
            if op == "set":
                pipe.execute_command(*(("DEL", name) if arg is None else ("SET", name, arg)))
            elif op in ("add", "remove"):
                items = list(arg)
                for lo in range(0, len(items), _MEMBERS_PER_CALL):
                    pipe.execute_command("SADD" if op == "add" else "SREM", name,
                                         *items[lo:lo + _MEMBERS_PER_CALL])
            elif op == "drop":
                pipe.execute_command("DEL", name)
            else:
                raise ValueError(f"unknown metadata write {op!r}")
        if not len(pipe):
            return
        try:
            pipe.execute()
        except self._errors as e:
            raise StoreError(f"redis metadata writes failed on {self.url}: {e}") from e


class _Delegate(MetaStore):
    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, key: str) -> str | None:
        return self.store.get_meta(key)  # type: ignore[no-any-return]

    def set(self, key: str, value: str | None) -> None:
        self.store.set_meta(key, value)

    def has_prefix(self, prefix: str) -> bool:
        return bool(self.store.has_prefix(prefix))

    def add_members(self, key: str, members: Iterable[str]) -> None:
        self.store.add_members(key, members)

    def members(self, key: str) -> set[str]:
        return set(self.store.members(key))

    def remove_members(self, key: str, members: Iterable[str]) -> None:
        self.store.remove_members(key, members)

    def drop_members(self, key: str) -> None:
        self.store.drop_members(key)


def meta_for(store: OnlineStore) -> MetaStore:
    """The metadata store living beside ``store``'s state.

    Raises:
        StoreError: the store kind keeps no metadata (the runner cannot run on it).
    """
    if all(hasattr(store, m) for m in ("get_meta", "set_meta", "has_prefix")):
        return _Delegate(store)
    path = getattr(store, "path", None)
    if isinstance(path, str):
        return SqliteMeta(path)
    client = getattr(store, "client", None)
    if client is not None and hasattr(client, "execute_command"):
        return RedisMeta(client, str(getattr(store, "url", "redis")))
    raise StoreError(f"online store {type(store).__name__} keeps no runner metadata; "
                     "use the sqlite or redis online store")
