"""The engine, clock and transaction helper every part of the registry shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine

from braid.registry.engine import now_ms, safe_url, transaction


class RegistryBase:
    """Holds the engine and the clock (epoch ms; injectable for tests)."""

    def __init__(self, engine: Engine, clock: Callable[[], int] | None = None) -> None:
        self._engine = engine
        self._clock = clock or now_ms

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return safe_url(self._engine.url)

    def _now(self) -> int:
        return int(self._clock())

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with transaction(self._engine) as con:
            yield con
