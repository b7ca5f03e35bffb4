"""The runner cuts a view's ordered tile deltas into chunks of whole keys (one guarded merge
call each), so a crash between chunks leaves every key applied wholly or not at all."""

from __future__ import annotations

import pyarrow as pa

from braid_streaming.runner.apply import _split


def test_chunks_hold_whole_keys_of_one_or_more_columns() -> None:
    table = pa.table({"a": [1, 1, 1, 2, 2, 3, 4, 4], "b": ["x", "x", "y", "y", "y", "y", "z", "z"],
                      "tile_start": [0, 60, 0, 0, 60, 0, 0, 60]})
    parts = _split(table, ["a", "b"], 2)  # keys: (1,x) (1,y) | (2,y) (3,y) | (4,z)
    assert [p.num_rows for p in parts] == [3, 3, 2]
    assert pa.concat_tables(parts).equals(table)
    assert [p.num_rows for p in _split(table, ["a"], 3)] == [6, 2]
    assert [p.num_rows for p in _split(table, ["a"], 100)] == [8]
    assert _split(table.slice(0, 0), ["a"], 2) == []
