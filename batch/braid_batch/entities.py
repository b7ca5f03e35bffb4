"""Entity dataframes: read, checked and loaded into DuckDB once per request (DESIGN §4.0, §12).

Accepted inputs: a pandas DataFrame, an Arrow table, a Parquet path, or a DuckDB SQL query.
The timestamp column must be zone-aware (or int64 epoch ms); entity keys must be integers or
strings as their entities declare. The loaded table keeps every input column and adds
``__braid_row`` (input order) and ``__braid_t`` (epoch ms).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlglot import exp

from braid.compile.algebra_sql import col
from braid.compile.dialect import DUCKDB
from braid.dtypes import DType
from braid.errors import EntityKeyError, TimestampError

ROW = "__braid_row"
T = "__braid_t"
ENTITY_TABLE = "__braid_entities"
_INPUT = "__braid_entity_input"

EntityInput = Any  # pandas.DataFrame | pyarrow.Table | str | Path


def to_arrow(entity_df: EntityInput, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The entity rows as an Arrow table (a string ending in .parquet is a path, else SQL)."""
    if isinstance(entity_df, pa.Table):
        return entity_df
    if isinstance(entity_df, Path) or (
        isinstance(entity_df, str) and entity_df.strip().lower().endswith(".parquet")
    ):
        return pq.read_table(entity_df)
    if isinstance(entity_df, str):
        import sqlglot

        tree = sqlglot.parse_one(entity_df, read="duckdb")
        return con.sql(DUCKDB.render(tree)).to_arrow_table()
    if hasattr(entity_df, "to_arrow") and not hasattr(entity_df, "iloc"):
        return entity_df.to_arrow()  # polars and friends
    try:
        return pa.Table.from_pandas(entity_df, preserve_index=False)
    except (TypeError, ValueError, pa.ArrowException) as e:
        raise EntityKeyError(
            f"entity_df: cannot read a {type(entity_df).__name__} ({e}); pass a pandas "
            "DataFrame, an Arrow table, a Parquet path or a SQL query"
        ) from e


def check_timestamp(table: pa.Table, column: str) -> None:
    """Refuse a missing, zone-less or non-time timestamp column.

    Raises:
        TimestampError: naming the column and the fix.
    """
    if column not in table.column_names:
        raise TimestampError(
            f"entity_df has no timestamp column '{column}' (columns: "
            f"{', '.join(table.column_names)}); add it or pass timestamp_column="
        )
    t = table.schema.field(column).type
    if pa.types.is_timestamp(t):
        if t.tz is None:
            raise TimestampError(
                f"entity_df column '{column}' has no time zone; braid refuses naive times: "
                f"use df['{column}'] = df['{column}'].dt.tz_localize(\"UTC\")"
            )
        return
    if not pa.types.is_integer(t):
        raise TimestampError(
            f"entity_df column '{column}' is {t}; expected a zone-aware timestamp or int64 "
            "epoch milliseconds"
        )


def check_keys(table: pa.Table, keys: dict[str, DType], view: str) -> None:
    """Every key present with an integer (int64 key) or string (string key) type.

    Raises:
        EntityKeyError: naming the column, its type and the expected one.
    """
    for key, dtype in keys.items():
        if key not in table.column_names:
            raise EntityKeyError(
                f"entity_df lacks key column '{key}' of view '{view}' (columns: "
                f"{', '.join(table.column_names)})"
            )
        t = table.schema.field(key).type
        ok = pa.types.is_integer(t) if dtype == DType.INT64 else (
            pa.types.is_string(t) or pa.types.is_large_string(t))
        if not ok:
            raise EntityKeyError(
                f"entity_df key column '{key}' is {t} but view '{view}' expects {dtype}; "
                f"cast it, e.g. df['{key}'].astype('{'int64' if dtype == DType.INT64 else 'str'}')"
            )


def load(con: duckdb.DuckDBPyConnection, table: pa.Table, timestamp_column: str) -> int:
    """Create the temp view of entity rows; returns the number of rows."""
    for reserved in (ROW, T):
        if reserved in table.column_names:
            raise EntityKeyError(f"entity_df column '{reserved}' is reserved by braid; rename it")
    table = table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    con.register(_INPUT, table)
    t = _epoch_ms(timestamp_column, table.schema.field(timestamp_column).type)
    sel = exp.select(exp.Star(), exp.alias_(t, T, quoted=True)).from_(exp.to_identifier(_INPUT))
    # A view over the registered Arrow table, not a copy: the connection keeps the table
    # registered for as long as the result that reads it lives.
    con.execute(f'CREATE OR REPLACE TEMP VIEW "{ENTITY_TABLE}" AS {DUCKDB.render(sel)}')
    return table.num_rows


def time_span(con: duckdb.DuckDBPyConnection, table: pa.Table,
              timestamp_column: str) -> tuple[int, int] | None:
    """Min and max ``__braid_t`` of the entity rows (None if there are none).

    The extremes are found on the Arrow column and only those two values go through the
    same conversion to epoch ms as the loaded rows (it is monotonic), instead of a scan."""
    column = table.column(timestamp_column)
    extremes = pc.min_max(column)
    if not extremes["min"].is_valid:
        return None
    pair = pa.table({timestamp_column: pa.array([extremes["min"], extremes["max"]],
                                                column.type)})
    con.register("__braid_span", pair)
    try:
        sel = exp.select(_epoch_ms(timestamp_column, column.type)).from_(
            exp.to_identifier("__braid_span"))
        row = con.sql(DUCKDB.render(sel)).fetchall()
    finally:
        con.unregister("__braid_span")
    return int(row[0][0]), int(row[1][0])


def _epoch_ms(column: str, arrow_type: pa.DataType) -> exp.Expression:
    """``__braid_t`` of a timestamp column (zone-aware time or int64 epoch ms)."""
    if pa.types.is_timestamp(arrow_type):
        return exp.Anonymous(this="epoch_ms", expressions=[
            exp.Cast(this=col(column), to=exp.DataType.build("TIMESTAMPTZ"))])
    return exp.Cast(this=col(column), to=exp.DataType.build("BIGINT"))
