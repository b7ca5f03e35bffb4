"""Serving-time logging (DESIGN §8): what each online lookup served, for log-and-wait.

``get_online_features(..., service=S, log=True)`` hands the result to the service's
:class:`ServingLogger`, which writes one record per entity row to ``braid.<project>.log.<S>``;
:func:`compact` copies the topic to Parquet under ``<offline>/<project>/_logs/<S>/``, which
the log-and-wait join (``braid_batch.logjoin``) reads.
"""

from __future__ import annotations

from braid.logging.logger import ServingLogger, new_request_id, sampled
from braid.logging.result import LoggedOnlineResult
from braid.logging.schema import LoggingError, LogSchema, log_topic, service_version
from braid.logging.sink import compact, logs_folder

__all__ = ["LogSchema", "LoggedOnlineResult", "LoggingError", "ServingLogger", "compact",
           "log_topic", "logs_folder", "new_request_id", "sampled", "service_version"]
