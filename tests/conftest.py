"""Shared fixtures: real services started by the tests themselves (DESIGN §11)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_REPO = ROOT / "feature_repo"
pytest_plugins = ["tests.kafka_fixtures", "tests.redis_cluster_fixtures"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class RedisServer:
    """A private ``redis-server`` with append-only persistence, restartable in place."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server binary not installed (apt install redis-server)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        self.wait_loaded()

    def wait_loaded(self, timeout: float = 60.0) -> None:
        """Wait until a restarted server has replayed its append-only file: until then it
        answers every command with LOADING."""
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.BusyLoadingError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server owned by this test session (never the machine's shared one)."""
    if os.environ.get("BRAID_REDIS_URL"):
        pytest.skip("BRAID_REDIS_URL is set: tests use their own server, not a shared one")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A fresh logical database URL on the session's private server, flushed after use."""
    import redis

    yield redis_server.url
    redis.Redis.from_url(redis_server.url).flushdb()


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A PostgreSQL URL with a fresh database, or a skip with the reason."""
    import uuid

    base = os.environ.get("BRAID_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        name = f"braid_test_{uuid.uuid4().hex[:8]}"
        with engine.connect() as con:
            con.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # the skip message says why
        pytest.skip(f"PostgreSQL not reachable at {base}: {str(e).splitlines()[0]}")
    return base.rsplit("/", 1)[0] + "/" + name


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true",
                     help="Rewrite tests/golden files from the current compilers.")
