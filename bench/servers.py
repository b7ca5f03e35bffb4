"""The private servers a benchmark runs against: a Kafka broker and an appendonly Redis.

Example:
    >>> with kafka_bootstrap() as bootstrap, private_redis(Path(tmp)) as redis:
    ...     run(bootstrap, redis.url)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """BRAID_KAFKA_BOOTSTRAP if set, else a private Tansu broker (stopped after)."""
    bootstrap = os.environ.get("BRAID_KAFKA_BOOTSTRAP")
    if bootstrap:
        yield bootstrap
        return
    from tests.conftest import free_port
    from tests.kafka_fixtures import start_tansu

    broker = start_tansu(free_port())
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@contextmanager
def private_redis(folder: Path) -> Iterator[Any]:
    """A redis-server of this run (appendonly, a free port; data under ``folder``)."""
    from tests.conftest import RedisServer

    folder.mkdir(parents=True, exist_ok=True)
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
