"""Logs (DESIGN §7): one small interface, three implementations, chosen by ``braid.yaml``.

``ConfluentLog`` and ``KafkaPythonLog`` are imported lazily so ``import braid_streaming``
never imports a Kafka client.

Example:
    >>> from braid.config import load_config
    >>> cfg = load_config("feature_repo")
    >>> log = open_log(cfg.kafka, root=cfg.root)   # LocalLog under data/log without a broker
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from braid.config import KafkaConfig
from braid_streaming.log.base import (
    Log,
    LogError,
    LogUnavailableError,
    OffsetRangeError,
    Record,
    RecordIn,
    UnknownTopicError,
    murmur2,
    partition_for,
)
from braid_streaming.log.local import LocalLog

if TYPE_CHECKING:
    from braid_streaming.log.confluent import ConfluentLog
    from braid_streaming.log.kafka_python import KafkaPythonLog

__all__ = [
    "ConfluentLog", "KafkaPythonLog", "LocalLog", "Log", "LogError", "LogUnavailableError",
    "OffsetRangeError", "Record", "RecordIn", "UnknownTopicError", "murmur2", "open_log",
    "partition_for",
]


def open_log(config: KafkaConfig, root: str | Path = ".") -> Log:
    """The log ``config`` names: Kafka at ``bootstrap`` through ``client``, or without a
    bootstrap the local log at ``local_log_path`` (relative paths against ``root``).

    Raises:
        LogError: the configured Kafka client library is not installed.
    """
    if config.bootstrap is None:
        path = Path(config.local_log_path)
        return LocalLog(path if path.is_absolute() else Path(root) / path)
    try:
        if config.client == "confluent":
            from braid_streaming.log.confluent import ConfluentLog

            return ConfluentLog(config.bootstrap)
        from braid_streaming.log.kafka_python import KafkaPythonLog

        return KafkaPythonLog(config.bootstrap)
    except ImportError as e:
        raise LogError(
            f"kafka client '{config.client}' is not installed ({e.name}); "
            "pip install 'braid[kafka]', or set kafka.client in braid.yaml"
        ) from e


def __getattr__(name: str) -> Any:
    if name == "ConfluentLog":
        from braid_streaming.log.confluent import ConfluentLog

        return ConfluentLog
    if name == "KafkaPythonLog":
        from braid_streaming.log.kafka_python import KafkaPythonLog

        return KafkaPythonLog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
