"""Run or explain a compiled :class:`~braid.compile.flink.FlinkJob` in a PyFlink
``TableEnvironment`` (local MiniCluster, or a remote cluster through its configuration).

No data moves through py4j: results go to Kafka, and tests read them back with a Kafka client
(``TableResult.collect()`` moves ~300 rows/s, STACK.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from braid.algebra import OverflowError64
from braid.compile.flink import FlinkJob
from braid_streaming.flink.udafs import build_udaf_jar

#: How braid's Java UDAFs start the message of a refused value (``ExactSum``).
OVERFLOW_PREFIX = "braid overflow: "


def table_env(job: FlinkJob, jar: Path | None = None) -> Any:
    """A streaming TableEnvironment with the job's settings, UDAFs, tables and views."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = env.get_config()
    for key, value in job.settings.items():
        config.set(key, value)
    jar = jar or build_udaf_jar()
    config.set("pipeline.jars", jar.resolve().as_uri())
    for statement in job.ddl:
        env.execute_sql(statement)
    return env


def statement_set(env: Any, job: FlinkJob) -> Any:
    """The job's one statement set."""
    stmts = env.create_statement_set()
    for insert in job.inserts:
        stmts.add_insert_sql(insert)
    return stmts


def explain(job: FlinkJob, jar: Path | None = None) -> str:
    """Flink's plan of the whole statement set: proof that the SQL parses, types and plans."""
    env = table_env(job, jar)
    return str(statement_set(env, job).explain())


def execute(job: FlinkJob, jar: Path | None = None, wait: bool = True) -> Any:
    """Submit the statement set; with ``wait`` block until a bounded job finishes.

    Raises:
        OverflowError64: the job failed because an int64 sum left the int64 range (DESIGN
            §4.3); the message is the UDAF's ``braid overflow: ...`` line.
    """
    env = table_env(job, jar)
    result = statement_set(env, job).execute()
    if wait:
        try:
            result.wait()
        except Exception as e:
            cause = overflow_cause(str(e))
            if cause is None:
                raise
            raise OverflowError64(cause) from e
    return result


def overflow_cause(failure: str) -> str | None:
    """The ``braid overflow: ...`` line of a failed job's (Java) trace, if it has one."""
    at = failure.find(OVERFLOW_PREFIX)
    return None if at < 0 else failure[at:].splitlines()[0]
