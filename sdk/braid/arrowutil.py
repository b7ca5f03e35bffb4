"""Small Arrow helpers for hot paths.

``pylist`` is ``to_pylist()`` for flat columns, about 10x faster: pyarrow 16's ``to_pylist``
builds a scalar object per value (measured: 29 ms for 60k strings, 17 ms for 60k int64),
while ``to_numpy(zero_copy_only=False).tolist()`` gives the same Python values in about 2 ms.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def _flat(t: pa.DataType) -> bool:
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t))


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def pylist(arr: pa.Array | pa.ChunkedArray) -> list[Any]:
    """The values of ``arr`` as Python objects, equal to ``arr.to_pylist()``.

    Strings and bytes (NULL -> None) and numbers or booleans without NULLs go through NumPy;
    anything else (timestamps, lists, numbers with NULLs, which NumPy would turn into NaN)
    through ``to_pylist``.

    Example:
        >>> pylist(pa.array(["a", None]))
        ['a', None]
    """
    t = arr.type
    if _flat(t) or (_numeric(t) and arr.null_count == 0):
        return arr.to_numpy(zero_copy_only=False).tolist()  # type: ignore[no-any-return]
    return arr.to_pylist()  # type: ignore[no-any-return]
