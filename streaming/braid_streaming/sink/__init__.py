"""The online writer (``braid stream sink``, DESIGN §7): Flink's tiles topics -> online store.

Example:
    >>> from braid_streaming.sink import TileSink
    >>> sink = TileSink(store.online, plans, log, offsets=RegistryOffsets(registry, "fraud"))
    >>> sink.run_once()      # poll, decode, guard, write, commit
"""

from __future__ import annotations

from braid_streaming.sink.decode import DecodedTiles, SinkDecodeError, decode_tiles
from braid_streaming.sink.writer import (
    MemoryOffsets,
    OffsetStore,
    RegistryOffsets,
    SinkReport,
    TileSink,
)

__all__ = [
    "DecodedTiles", "MemoryOffsets", "OffsetStore", "RegistryOffsets", "SinkDecodeError",
    "SinkReport", "TileSink", "decode_tiles",
]
