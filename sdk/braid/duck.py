"""DuckDB connections as braid opens them: UTC session time zone (DESIGN §4.0)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from braid.definitions import BatchSource
from braid.dtypes import DType
from braid.errors import RepoError


def connect(database: str = ":memory:", threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with ``TimeZone='UTC'`` (tile math must never follow local time)
    and no DuckDB progress bar on stdout (the CLI prints braid's own)."""
    con = duckdb.connect(database)
    con.execute("SET TimeZone='UTC'")
    con.execute("SET enable_progress_bar=false")  # braid shows its own progress
    if threads is not None:
        con.execute(f"SET threads={int(threads)}")
    return con


_DUCK_TYPES = {
    "BIGINT": DType.INT64, "INTEGER": DType.INT64, "SMALLINT": DType.INT64,
    "TINYINT": DType.INT64, "UBIGINT": DType.INT64, "UINTEGER": DType.INT64,
    "DOUBLE": DType.FLOAT64, "FLOAT": DType.FLOAT64, "VARCHAR": DType.STRING,
    "BOOLEAN": DType.BOOL,
}


def duck_to_dtype(type_name: str) -> DType | None:
    """The braid type of a DuckDB column type, or None if braid has no equivalent."""
    if type_name.startswith("TIMESTAMP"):
        return DType.TIMESTAMP
    if type_name.startswith("DECIMAL"):
        return DType.FLOAT64
    return _DUCK_TYPES.get(type_name)


def source_relation_sql(src: BatchSource, root: Path) -> str:
    """A FROM clause item reading a batch source (path relative to the repo root)."""
    if src.query is not None:
        return f"({src.query})"
    path = Path(src.path or "")
    full = path if path.is_absolute() else root / path
    return "read_parquet(" + _quote(str(full)) + ", union_by_name = true)"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def describe_source(con: duckdb.DuckDBPyConnection, src: BatchSource, root: Path) -> dict[str, DType]:
    """Infer a batch source's schema from its data."""
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {source_relation_sql(src, root)}").fetchall()
    except duckdb.Error as e:
        raise RepoError(
            f"source '{src.name}': cannot read {src.path or src.query!r} to infer its schema "
            f"({str(e).splitlines()[0]}); declare schema= or generate the data first"
        ) from e
    out = {}
    for name, type_name, *_ in rows:
        dtype = duck_to_dtype(str(type_name))
        if dtype is not None:
            out[str(name)] = dtype
    return out
