"""Glue between the FeatureStore facade and the serving logger (DESIGN §8).

The facade keeps one :class:`ServingLogger` per service, built on the first ``log=True``
lookup; the sink is the repository's log (Kafka at ``kafka.bootstrap``, else the local log),
opened by the worker thread so a broker outage never reaches the lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from braid.logging.logger import ServingLogger
from braid.logging.result import LoggedOnlineResult
from braid.logging.schema import LoggingError, LogSchema, log_topic
from braid.logging.sink import compact, logs_folder

if TYPE_CHECKING:
    from braid.config import RepoConfig
    from braid.online.result import OnlineResult
    from braid.repo import Repo
    from braid_streaming.log.base import Log


def open_repo_log(config: RepoConfig) -> Log:
    """The log ``braid.yaml`` names (imported here: braid core never imports Kafka eagerly)."""
    from braid_streaming.log import open_log

    return open_log(config.kafka, config.resolve("."))


def make_logger(repo: Repo, service: str | None, **options: object) -> ServingLogger:
    """A logger for ``service`` with its LoggingConfig's sample rate (1.0 without one).

    Raises:
        LoggingError: no service was named (logging is per service).
        UnknownFeatureError: the service does not exist.
    """
    if service is None:
        raise LoggingError("log=True needs service=...: logs are kept per feature service")
    schema = LogSchema.for_service(repo, service)
    cfg = repo.services[service].logging
    rate = cfg.sample_rate if cfg is not None else 1.0
    config = repo.config
    return ServingLogger(schema, log_topic(repo.project, service),
                         lambda: open_repo_log(config), rate, **options)  # type: ignore[arg-type]


def log_lookup(logger: ServingLogger, result: OnlineResult, served_at: int,
               request_id: str | Sequence[str] | None) -> LoggedOnlineResult:
    """Queue one lookup and return its result with the request ids attached."""
    return LoggedOnlineResult.wrap(result, logger.submit(result, served_at, request_id))


def compact_service_logs(repo: Repo, service: str) -> int:
    """Copy the service's log topic to its Parquet sink; returns the records copied."""
    schema = LogSchema.for_service(repo, service)
    log = open_repo_log(repo.config)
    try:
        return compact(log, log_topic(repo.project, service), schema,
                       logs_folder(repo.config, service))
    finally:
        log.close()
