"""The Parquet sink of serving logs: a compactor that copies the log topic to Parquet.

Layout: ``<offline>/<project>/_logs/<service>/part-p<P>-<start>-<end>.parquet``, one file per
contiguous offset range ``[start, end)`` of partition P. The file name is the compactor's
only state: the next run starts each partition at the greatest ``end`` already written, so a
crash (files are written under a temporary name and renamed) or a re-run never duplicates or
skips a record.

Example:
    >>> compact(log, "braid.fraud.log.fraud_v1", schema, Path("data/offline/fraud/_logs/fraud_v1"))
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pyarrow.parquet as pq

from braid.logging.schema import LoggingError, LogSchema

if TYPE_CHECKING:
    from braid.config import RepoConfig
    from braid_streaming.log.base import Log

_PART = re.compile(r"^part-p(\d+)-(\d+)-(\d+)\.parquet$")
CHUNK = 100_000


def logs_folder(config: RepoConfig, service: str) -> Path:
    """``<offline>/<project>/_logs/<service>`` of a repository."""
    return config.resolve(config.offline_store.path) / config.project / "_logs" / service


def compacted_offsets(folder: Path) -> dict[int, int]:
    """Per partition, the offset the next compaction starts at."""
    out: dict[int, int] = {}
    if folder.is_dir():
        for f in folder.iterdir():
            m = _PART.match(f.name)
            if m:
                p, end = int(m.group(1)), int(m.group(3))
                out[p] = max(out.get(p, 0), end)
    return out


def compact(log: Log, topic: str, schema: LogSchema, folder: Path, chunk: int = CHUNK) -> int:
    """Copy the records of ``topic`` not yet in ``folder`` to Parquet; returns the count.

    Raises:
        LoggingError: records the sink still needs are gone from the log (retention).
    """
    from braid_streaming.log.base import OffsetRangeError

    if not log.topic_exists(topic):
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    done = compacted_offsets(folder)
    written = 0
    for p, end in sorted(log.end_offsets(topic).items()):
        start = done.get(p, 0)
        while start < end:
            stop = min(end, start + chunk)
            try:
                recs = log.read_range(topic, p, start, stop)
            except OffsetRangeError as e:
                raise LoggingError(
                    f"{topic}/{p}: offsets [{start}, {stop}) are no longer in the log ({e}); "
                    "raise the topic's retention above the compaction interval") from e
            table = schema.to_table([(r.partition, r.offset, orjson.loads(r.value))
                                     for r in recs])
            tmp = folder / f".tmp-{uuid.uuid4().hex}.parquet"
            pq.write_table(table, tmp)
            os.replace(tmp, folder / f"part-p{p}-{start:012d}-{stop:012d}.parquet")
            written += len(recs)
            start = stop
    return written


def parquet_glob(folder: Path) -> str | None:
    """The glob DuckDB reads the sink with, or None if nothing was compacted yet."""
    if not any(_PART.match(f.name) for f in folder.glob("part-*.parquet")):
        return None
    return str(folder / "part-*.parquet")
