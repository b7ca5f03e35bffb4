"""Opening the registry database: URL normalisation, engine options, readable errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from braid.errors import RegistryError

_FIX = "check `registry:` in braid.yaml or BRAID_REGISTRY_URL"


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def normalize_url(url: str) -> sa.URL:
    """Parse ``url``; ``postgres://`` and ``postgresql://`` select the psycopg 3 driver.

    Raises:
        RegistryError: the URL cannot be parsed or names an unsupported database.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise RegistryError(
            f"registry URL {url!r} is not a database URL; use sqlite:///path/registry.db or "
            "postgresql://user@host/db"
        ) from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise RegistryError(
            f"registry URL {safe_url(parsed)}: only sqlite:/// and postgresql:// are supported"
        )
    return parsed


def safe_url(url: sa.URL | str) -> str:
    """The URL with its password masked, for messages."""
    if isinstance(url, str):
        try:
            url = sa.make_url(url)
        except sa.exc.ArgumentError:
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)


def create_engine(url: str) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created, and SQLite waits on locks."""
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise RegistryError(
                    f"registry {safe_url(parsed)}: cannot create folder "
                    f"{Path(database).parent}: {e.strerror}; {_FIX}"
                ) from None
        # several braid processes (CLI, runner, server) share one file: wait instead of failing
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (ImportError, sa.exc.NoSuchModuleError) as e:
        raise RegistryError(
            f"registry {safe_url(parsed)}: database driver missing ({e}); "
            "install it with `pip install 'braid[postgres]'`"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        _immediate_transactions(engine)
    return engine


def _immediate_transactions(engine: Engine) -> None:
    """Make every SQLite transaction take the write lock at BEGIN.

    pysqlite's default deferred BEGIN lets two processes both read and then both try to
    write (read-modify-write of backfilled ranges, versions): SQLite then fails one at once
    with "database is locked", whatever the timeout. BEGIN IMMEDIATE makes the second wait.
    """

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_con: Any, _record: Any) -> None:
        dbapi_con.isolation_level = None  # braid emits BEGIN itself

    @sa.event.listens_for(engine, "begin")
    def _begin(con: Connection) -> None:
        con.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction; database failures become :class:`RegistryError`."""
    try:
        with engine.begin() as con:
            yield con
    except sa.exc.OperationalError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e).splitlines()[0]
        raise RegistryError(
            f"registry database {safe_url(engine.url)} is unreachable or failed: {reason}; {_FIX}"
        ) from None
    except sa.exc.IntegrityError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e).splitlines()[0]
        raise RegistryError(
            f"registry database {safe_url(engine.url)}: another writer stored the same record "
            f"at the same time ({reason}); run the command again"
        ) from None
    except sa.exc.DBAPIError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e).splitlines()[0]
        raise RegistryError(f"registry database {safe_url(engine.url)}: {reason}") from None
