"""Online stores and the online read path (DESIGN §4.6, §6).

``RedisOnlineStore`` lives in :mod:`braid.online.redis_store` and imports redis only when
constructed; ``import braid.online`` never needs redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from braid.online.base import OnlineStore, SeqGuard
from braid.online.reader import OnlineReader
from braid.online.result import FeatureStatus, OnlineResult
from braid.online.sqlite_store import SqliteOnlineStore

if TYPE_CHECKING:
    from braid.online.redis_store import RedisOnlineStore

__all__ = [
    "FeatureStatus", "OnlineReader", "OnlineResult", "OnlineStore", "RedisOnlineStore",
    "SeqGuard", "SqliteOnlineStore",
]


def __getattr__(name: str) -> Any:
    if name == "RedisOnlineStore":
        from braid.online.redis_store import RedisOnlineStore

        return RedisOnlineStore
    raise AttributeError(name)
