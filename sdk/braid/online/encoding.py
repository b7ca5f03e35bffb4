"""Text encodings of the online layout (DESIGN §6), shared by every online store.

Everything stored online is plain text so any language can read it without braid:

* **Key** ``braid:<project>:<namespace>:{<entity>}``. ``<entity>`` joins the view's join-key
  values in declaration order with ``:``; an int64 is written in decimal, a string as is with
  ``\\``, ``:`` and ``}`` escaped by a backslash (``a:b`` -> ``a\\:b``). The braces make the
  entity the Redis Cluster hash tag, so all views of one entity share a slot (for an entity
  string holding ``}`` the tag ends at its first ``}``: still a function of the entity alone).
* **Projection fields** ``f:<name>``: int64 (and timestamps, as epoch ms) in decimal, float64
  as Python's ``repr`` (the shortest string that round-trips), bool ``1``/``0``, strings raw.
  NULL is an absent field. ``_ts`` and ``_ct`` hold the row's event and created times in
  decimal epoch ms; ``_ct`` is absent when the created time is missing.
* **Tile fields** ``<hop_ms>:<tile_start_ms>``: the partial states of the hop's partials
  (``ViewPlan.partials_for_hop`` order, each partial's fields in algebra order), joined with
  ``,``. An empty partial (no non-null input) is empty text for each of its fields. Inside
  tiles a string is percent-escaped (``%`` -> ``%25``, ``,`` -> ``%2C``) and the empty string
  is a lone ``%``, so ``,`` always separates fields and empty text always means "no value".
  Floats merged by the Redis Lua script are written with the shortest of ``%.15g``/``%.16g``/
  ``%.17g`` that round-trips: the same value as ``repr``, possibly spelled differently
  (``100`` for ``100.0``), which is why readers parse numbers instead of comparing text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from braid.algebra import MISSING_CREATED, Merge, Partial
from braid.arrowutil import pylist
from braid.dtypes import DType
from braid.errors import StoreError
from braid.plan import PartialPlan, ViewPlan
from braid.timeutil import DAY

#: Separator of the canonical value encoding used as the last LWW tie-break (DESIGN §4.1).
CANON_SEP = "\x1f"
TS_FIELD = "_ts"
CT_FIELD = "_ct"
FIELD_PREFIX = "f:"


# ------------------------------------------------------------------------------ keys


def key_prefix(plan: ViewPlan) -> str:
    """``braid:<project>:<namespace>:{`` -- the constant head of a view's keys."""
    return f"braid:{plan.project}:{plan.namespace}:{{"


def escape_key_part(value: str) -> str:
    """Escape ``\\``, ``:`` and ``}`` in a string join-key value."""
    if "\\" in value or ":" in value or "}" in value:
        return value.replace("\\", "\\\\").replace(":", "\\:").replace("}", "\\}")
    return value


def encode_keys(plan: ViewPlan, table: pa.Table) -> list[str]:
    """The store key of every row of ``table`` (which holds the view's join-key columns)."""
    return pylist(key_array(plan, table))


def key_array(plan: ViewPlan, table: pa.Table) -> pa.Array:
    """:func:`encode_keys` as an Arrow string array (the vectorized write paths use it)."""
    parts: list[pa.Array] = []
    for name, dtype in plan.entity_keys:
        if name not in table.column_names:
            raise StoreError(f"view '{plan.name}': table lacks join-key column '{name}'")
        col = pc.cast(table.column(name), pa.int64() if dtype == DType.INT64 else pa.string())
        if col.null_count:
            raise StoreError(f"view '{plan.name}': join-key column '{name}' holds NULLs")
        if dtype == DType.STRING:
            for old in ("\\", ":", "}"):
                col = pc.replace_substring(col, old, "\\" + old)
        parts.append(pc.cast(col, pa.string()))
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, ":")
    out = pc.binary_join_element_wise(key_prefix(plan), joined, "}", "")
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


# ------------------------------------------------------------------------------ values

_REPR_MISMATCH = ((1e-10, 1e-4), (1e9, 1e16))


def encode_floats(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """float64 -> text equal to Python's ``repr`` (vectorized; NULLs stay NULL).

    Arrow's cast already gives the shortest round-trip digits; it differs from ``repr`` only
    in spelling (``100`` vs ``100.0``) and, for magnitudes in [1e-10, 1e-4) and [1e9, 1e16),
    in the choice of fixed vs exponent notation. Those few values go through ``repr``.
    """
    arr = pc.cast(arr, pa.float64())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    text = pc.cast(arr, pa.string())
    values = arr.to_numpy(zero_copy_only=False)  # NULL -> NaN
    mag = np.abs(values)
    with np.errstate(invalid="ignore"):
        # Arrow spells a finite integral value below 1e9 as bare digits ("100"): add ".0".
        # (The same test as "no '.', 'e', 'n' or 'i' in the text", without a regex pass;
        # [1e9, 1e16) is replaced by repr below, and from 1e16 on Arrow writes an exponent.)
        plain = np.isfinite(values) & (values == np.trunc(values)) & (mag < 1e9)
    if plain.any():
        text = pc.if_else(pa.array(plain), pc.binary_join_element_wise(text, ".0", ""), text)
    odd = np.zeros(len(arr), dtype=bool)
    for lo, hi in _REPR_MISMATCH:
        odd |= (mag >= lo) & (mag < hi)
    if arr.null_count:
        odd &= arr.is_valid().to_numpy(zero_copy_only=False)
    if not odd.any():
        return text
    fixed = pa.array([repr(v) for v in values[odd].tolist()], pa.string())
    return pc.replace_with_mask(text, pa.array(odd), fixed)


def encode_column(arr: pa.Array | pa.ChunkedArray, dtype: DType, tile: bool = False) -> pa.Array:
    """A column of ``dtype`` as field text (NULLs stay NULL); ``tile`` escapes strings."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if dtype == DType.FLOAT64:
        return encode_floats(arr)
    if dtype in (DType.INT64, DType.TIMESTAMP):
        if pa.types.is_timestamp(arr.type):
            arr = pc.cast(arr, pa.timestamp("ms", tz=arr.type.tz)).cast(pa.int64())
        return pc.cast(pc.cast(arr, pa.int64()), pa.string())
    if dtype == DType.BOOL:
        return pc.if_else(pc.cast(arr, pa.bool_()), "1", "0")
    text = pc.cast(arr, pa.string())
    if tile:
        text = pc.replace_substring(pc.replace_substring(text, "%", "%25"), ",", "%2C")
        text = pc.if_else(pc.equal(text, ""), "%", text)
    return text


def format_value(value: Any, dtype: DType, tile: bool = False) -> str:
    """One value as field text (the scalar twin of :func:`encode_column`)."""
    if dtype == DType.FLOAT64:
        return repr(float(value))
    if dtype == DType.BOOL:
        return "1" if value else "0"
    if dtype == DType.STRING:
        if not tile:
            return str(value)
        return str(value).replace("%", "%25").replace(",", "%2C") or "%"
    return str(int(value))


def decoder(dtype: DType, tile: bool = False) -> Callable[[bytes], Any]:
    """The parser of one field's text (bytes) back to a Python value."""
    if dtype == DType.FLOAT64:
        return float
    if dtype in (DType.INT64, DType.TIMESTAMP):
        return int
    if dtype == DType.BOOL:
        return _decode_bool
    return _decode_tile_string if tile else _decode_string


def _decode_bool(raw: bytes) -> bool:
    return raw == b"1"


def _decode_string(raw: bytes) -> str:
    return raw.decode()


def _decode_tile_string(raw: bytes) -> str:
    if raw == b"%":
        return ""
    return raw.decode().replace("%2C", ",").replace("%25", "%")


# ------------------------------------------------------------------------------ tiles


class TileCodec:
    """Encode and decode the value of one hop's tile fields for a view."""

    def __init__(self, plan: ViewPlan, hop: int) -> None:
        self.partials: tuple[PartialPlan, ...] = plan.partials_for_hop(hop)
        if not self.partials:
            raise StoreError(f"view '{plan.name}' has no partials at hop {hop} ms")
        self.hop = hop
        self.width = sum(len(p.columns) for p in self.partials)
        self.slices: list[tuple[int, int]] = []
        self.decoders: list[tuple[Callable[[bytes], Any], ...]] = []
        at = 0
        for p in self.partials:
            self.slices.append((at, at + len(p.columns)))
            self.decoders.append(tuple(decoder(t, tile=True) for t in p.field_types))
            at += len(p.columns)

    def encode_table(self, table: pa.Table) -> list[str]:
        """Tile values of every row (partial columns named ``PartialPlan.columns``)."""
        return pylist(self.encode_array(table))

    def encode_array(self, table: pa.Table) -> pa.Array:
        """:meth:`encode_table` as an Arrow string array."""
        cols: list[pa.Array] = []
        for p in self.partials:
            for name, dtype in zip(p.columns, p.field_types, strict=True):
                if name not in table.column_names:
                    raise StoreError(f"tiles table lacks partial column '{name}'")
                text = encode_column(table.column(name), dtype, tile=True)
                cols.append(pc.fill_null(text, ""))
        if len(cols) == 1:
            return cols[0]
        out: pa.Array = pc.binary_join_element_wise(*cols, ",")
        return out

    def encode(self, partials: Sequence[Partial]) -> str:
        """The tile value of python partials (``None`` = empty partial)."""
        out: list[str] = []
        for p, state in zip(self.partials, partials, strict=True):
            if state is None:
                out.extend("" for _ in p.columns)
            else:
                out.extend(format_value(v, t, tile=True)
                           for v, t in zip(state, p.field_types, strict=True))
        return ",".join(out)

    def decode(self, raw: bytes | None) -> list[Partial]:
        """Python partials of a tile value (all empty for ``None``)."""
        if raw is None:
            return [None] * len(self.partials)
        parts = raw.split(b",")
        if len(parts) != self.width:
            raise StoreError(
                f"tile value {raw[:80]!r} has {len(parts)} fields, the plan expects {self.width}")
        return [self.decode_one(parts, i) for i in range(len(self.partials))]

    def decode_one(self, parts: list[bytes], index: int) -> Partial:
        """Partial ``index`` of an already split tile value."""
        lo, hi = self.slices[index]
        if not parts[lo]:
            return None
        return tuple(dec(raw) for dec, raw in zip(self.decoders[index], parts[lo:hi],
                                                  strict=True))

    @property
    def lua_layout(self) -> str:
        """The hop's merge layout for the Lua script: a kind letter then a type letter per
        field for every partial, e.g. ``SiSfiCiff``."""
        out = []
        for p in self.partials:
            out.append(_LUA_KIND[p.spec.merge])
            out.extend(_LUA_TYPE[t] for t in p.field_types)
        return "".join(out)


_LUA_KIND = {Merge.SUM: "S", Merge.MIN: "N", Merge.MAX: "X", Merge.CHAN: "C", Merge.LATEST: "L"}
_LUA_TYPE = {DType.INT64: "i", DType.TIMESTAMP: "i", DType.FLOAT64: "f", DType.STRING: "s",
             DType.BOOL: "b"}


# ------------------------------------------------------------------------------ GC


def expiry_ms(plan: ViewPlan) -> int | None:
    """Relative key expiry ``max(ttl, W + h + L) + 1 day`` (DESIGN §4.6), garbage collection
    only. ``None`` (never expire) when the view has projections but no ttl."""
    if plan.projections and plan.ttl is None:
        return None
    lateness = plan.source.allowed_lateness
    spans = [a.window + a.hop + lateness for a in plan.aggregations]
    return max([plan.ttl or 0, *spans]) + DAY


#: A writer refreshes a key's expiry only when less than ``expiry - EXPIRE_REFRESH_MS`` is
#: left (the Lua writers read ``PTTL``; the runner's tile cache remembers when it set it).
EXPIRE_REFRESH_MS = 3_600_000


def pruned(starts: Iterable[int], newest: int, span: int) -> list[int]:
    """The tile starts pruning removes once the hop's newest tile is ``newest``: those older
    than ``newest - span`` (DESIGN §4.6; the Lua ``prune`` is the server-side renderer)."""
    return [s for s in starts if s < newest - span]


def prune_span(plan: ViewPlan, hop: int) -> int:
    """Tiles of ``hop`` older than (newest tile start) - span are pruned: span = max W + h + L.

    The allowed lateness L is in the span because the stream's tile-close statistics read a
    window when its last tile turns final, L after it ends (:mod:`braid.stats.stream_tiles`)."""
    windows = [a.window for a in plan.aggregations if a.hop == hop]
    return max(windows, default=0) + hop + plan.source.allowed_lateness


def canonical(values: Sequence[bytes | None]) -> bytes:
    """The canonical value encoding of a row: encoded projections joined by ``\\x1f``."""
    return CANON_SEP.encode().join(v or b"" for v in values)


def created_or_missing(ct: int | None) -> int:
    """The created time used for ordering: a missing one sorts lowest."""
    return MISSING_CREATED if ct is None else ct
