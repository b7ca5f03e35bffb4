"""The stream archive (DESIGN §4.7): accepted events appended to the source's batch twin.

Each micro-batch writes one Parquet file per partition, named by the batch's offset range::

    <batch twin dir>/stream-p<partition>-<start>-<end>.parquet

holding on-time *and* late events with ``_partition``, ``_offset``, ``_ingested_at`` and
``_late``; times are ``timestamp[ms, UTC]``. A replay of the same range rewrites the same file
with the same rows (temp file + rename), so the archive is idempotent and a backfill over the
twin (which drops ``_late`` rows by default) sees exactly what the stream counted.

The twin's ``path`` must be a glob or folder whose files the archive can join (e.g.
``data/transactions/*.parquet``); a query twin, or none, means no archive.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from braid.definitions.sources import StreamSource
from braid_streaming.ingest import INGESTED_AT, PARTITION

_GLOB_CHARS = set("*?[")
_TS = pa.timestamp("ms", tz="UTC")


def archive_dir(source: StreamSource, root: Path) -> Path | None:
    """The folder of the source's batch twin, or None when there is nothing to append to."""
    twin = source.batch
    if twin is None or twin.path is None:
        return None
    parts = Path(twin.path).parts
    stop = next((i for i, p in enumerate(parts) if _GLOB_CHARS & set(p)), len(parts))
    base = Path(*parts[:stop]) if stop else Path(".")
    if stop == len(parts) and base.suffix == ".parquet":
        return None  # a single file: appending would mean rewriting it
    return base if base.is_absolute() else root / base


def archive_name(partition: int, start: int, end: int) -> str:
    """``stream-p<partition>-<start>-<end>.parquet``."""
    return f"stream-p{partition}-{start}-{end}.parquet"


def _archive_table(table: pa.Table) -> pa.Table:
    at = table.schema.get_field_index(INGESTED_AT)
    return table.set_column(at, pa.field(INGESTED_AT, _TS),
                            pc.cast(table.column(INGESTED_AT), pa.int64()).cast(_TS))


def write_archive(folder: Path, table: pa.Table, ranges: dict[int, tuple[int, int]]) -> int:
    """Write one file per partition of ``ranges`` (an empty partition writes no file).

    Returns:
        How many files were written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    table = _archive_table(table)
    written = 0
    for p, (start, end) in sorted(ranges.items()):
        part = table.filter(pc.equal(table.column(PARTITION), p))
        if part.num_rows == 0:
            continue
        final = folder / archive_name(p, start, end)
        tmp = folder / f".{final.name}.{os.getpid()}.tmp"
        pq.write_table(part, tmp)
        os.replace(tmp, final)
        written += 1
    return written
