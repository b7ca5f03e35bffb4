"""RESP, the Redis wire protocol, built column-wise with Arrow for the bulk write paths.

The bulk writes send ``EVALSHA sha numkeys key... arg...`` (projection rows) and plain
``HSET``/``PEXPIRE`` (tiles). Rather than handing redis-py one Python string per argument
(which it encodes and frames one by one), the store frames whole columns at once: :func:`bulk`
turns every value of an Arrow array into a RESP bulk string ``$<len>\\r\\n<bytes>\\r\\n``
in one vectorized pass, :func:`join` glues a row's arguments together, and :class:`Packed`
hands out the bytes of a run of consecutive rows as one zero-copy slice. A script call is then
a short header plus two slices (its keys and its rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CRLF = b"\r\n"
_BIN = pa.large_binary()
_EMPTY = pa.scalar(b"", _BIN)


def bulk(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Every value of a string/binary array framed as a RESP bulk string (no NULLs allowed)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise ValueError("RESP bulk strings cannot hold NULL; fill NULLs first")
    data = arr.cast(_BIN)
    size = pc.cast(pc.cast(pc.binary_length(data), pa.string()), _BIN)
    return join(pa.scalar(b"$", _BIN), size, pa.scalar(CRLF, _BIN), data,
                pa.scalar(CRLF, _BIN))


def join(*parts: pa.Array | pa.Scalar) -> pa.Array:
    """Concatenate large_binary arrays (and scalars, repeated) row by row."""
    out: pa.Array = pc.binary_join_element_wise(*parts, _EMPTY)
    return out


def bulk_text(value: str | bytes) -> bytes:
    """One value as a RESP bulk string."""
    data = value.encode() if isinstance(value, str) else value
    return b"$%d\r\n%b\r\n" % (len(data), data)


def pack(args: Sequence[str | bytes]) -> bytes:
    """One command (name and arguments) as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(bulk_text(a) for a in args)


def evalsha_head(sha: str, nkeys: int, nargs: int) -> bytes:
    """The start of ``EVALSHA sha nkeys`` followed by ``nkeys + nargs`` more bulk strings."""
    return (b"*%d\r\n$7\r\nEVALSHA\r\n" % (3 + nkeys + nargs) + bulk_text(sha)
            + bulk_text(str(nkeys)))


class Packed:
    """The bytes of a framed array, sliced by row range without copying."""

    def __init__(self, arr: pa.Array) -> None:
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = arr.cast(_BIN)
        _, offsets, data = arr.buffers()
        self.offsets = np.frombuffer(offsets, np.int64)[arr.offset:arr.offset + len(arr) + 1]
        self.data = memoryview(data) if data is not None else memoryview(b"")

    def span(self, lo: int, hi: int) -> memoryview:
        """The bytes of rows ``lo .. hi - 1``."""
        return self.data[int(self.offsets[lo]):int(self.offsets[hi])]
