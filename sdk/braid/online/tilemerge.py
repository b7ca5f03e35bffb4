"""Vectorized tile merge: stored tile text + a table of deltas -> merged tile text.

The column-at-a-time twin of decoding every tile with :class:`~braid.online.encoding.TileCodec`,
folding :func:`braid.algebra.merge` and encoding again; it gives the same values (and the
same text) for every merge kind (DESIGN §5):

* SUM adds field by field (int64 with an overflow check, float64 as IEEE doubles);
* MIN / MAX keep the stored value unless the delta is strictly less / greater (Python's
  ``min(a, b)`` / ``max(a, b)`` keep ``a`` on ties);
* CHAN is :func:`braid.algebra.chan` with the same operation order, so the doubles match bit
  for bit (int counts convert to double exactly as Python's ``int * float`` does);
* LATEST keeps the stored state unless the delta's (ts, ct, v) is greater.

An empty partial (its first field empty) is the algebra's ``None``: merging with it keeps the
other side, and a result whose first field is empty is written with every field empty.

Example:
    >>> merged = merge_tile_values(codec, [b"1,2.5", None], deltas_table)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from braid.algebra import Merge, OverflowError64, Spec
from braid.arrowutil import pylist
from braid.dtypes import DType
from braid.errors import StoreError
from braid.online.encoding import TileCodec, encode_column

_NULL_STR = pa.scalar(None, pa.string())


def _arrow_type(dtype: DType) -> pa.DataType:
    if dtype in (DType.INT64, DType.TIMESTAMP):
        return pa.int64()
    if dtype == DType.FLOAT64:
        return pa.float64()
    if dtype == DType.BOOL:
        return pa.bool_()
    return pa.string()


def _delta_column(table: pa.Table, name: str, dtype: DType) -> pa.Array:
    if name not in table.column_names:
        raise StoreError(f"tiles table lacks partial column '{name}'")
    col = table.column(name).combine_chunks()
    if pa.types.is_timestamp(col.type):
        col = pc.cast(col, pa.timestamp("ms", tz=col.type.tz)).cast(pa.int64())
    return pc.cast(col, _arrow_type(dtype))


def _parse_column(text: pa.Array, dtype: DType) -> pa.Array:
    """Stored field text -> typed values; empty text is NULL (an empty partial)."""
    text = pc.if_else(pc.equal(text, ""), _NULL_STR, text)
    if dtype == DType.STRING:  # the decoder's order: a lone '%' is '', then %2C, then %25
        text = pc.if_else(pc.equal(text, "%"), "", text)
        return pc.replace_substring(pc.replace_substring(text, "%2C", ","), "%25", "%")
    if dtype == DType.BOOL:
        return pc.equal(text, "1")
    return pc.cast(text, _arrow_type(dtype))


def _old_columns(codec: TileCodec, old: Sequence[bytes | None] | pa.Array) -> list[pa.Array]:
    """Every field of the stored values as a typed column (NULL where no tile is stored)."""
    if isinstance(old, pa.Array):
        raw = old.cast(pa.string())
        if raw.null_count:
            raw = pc.fill_null(raw, "," * (codec.width - 1))
    else:
        blank = b"," * (codec.width - 1)
        raw = pa.array([blank if v is None else v for v in old], pa.binary()).cast(pa.string())
    parts = pc.split_pattern(raw, ",")
    lengths = pc.list_value_length(parts)
    if pc.any(pc.not_equal(lengths, codec.width)).as_py():
        i = pc.index(pc.not_equal(lengths, codec.width), True).as_py()
        bad = raw[i].as_py().encode()
        raise StoreError(f"tile value {bad[:80]!r} has {lengths[i].as_py()} fields, the plan "
                         f"expects {codec.width}")
    flat = pc.list_flatten(parts)
    n, out = len(old), []
    types = [t for p in codec.partials for t in p.field_types]
    for j, dtype in enumerate(types):
        field = flat.take(pa.array(np.arange(j, n * codec.width, codec.width, dtype=np.int64)))
        out.append(_parse_column(field, dtype))
    return out


def decode_columns(codec: TileCodec, values: Sequence[bytes | None] | pa.Array) -> pa.Table:
    """Stored tile values (a list, or a binary or string array) as a table of the hop's
    partial columns (``PartialPlan.columns``, typed; NULL for an empty partial or an absent
    tile)."""
    names = [c for p in codec.partials for c in p.columns]
    return pa.table(dict(zip(names, _old_columns(codec, values), strict=True)))


def _merge_partial(spec: Spec, a: list[pa.Array], b: list[pa.Array],
                   types: Sequence[DType]) -> list[pa.Array]:
    """The merge of two non-empty partials, row by row (rows where either is empty are
    replaced by the caller)."""
    kind = spec.merge
    if kind == Merge.SUM:
        out = []
        for x, y, t in zip(a, b, types, strict=True):
            if t in (DType.INT64, DType.TIMESTAMP):
                try:
                    out.append(pc.add_checked(x, y))
                except pa.ArrowInvalid:
                    raise OverflowError64(f"{spec.function} overflowed int64") from None
            else:
                out.append(pc.add(x, y))
        return out
    if kind in (Merge.MIN, Merge.MAX):
        take_b = pc.less(b[0], a[0]) if kind == Merge.MIN else pc.greater(b[0], a[0])
        return [pc.if_else(take_b, b[0], a[0])]
    if kind == Merge.CHAN:
        na, ma, m2a = a
        nb, mb, m2b = b
        n = pc.add_checked(na, nb)
        fa, fb, fn = (pc.cast(x, pa.float64(), safe=False) for x in (na, nb, n))
        delta = pc.subtract(mb, ma)
        mean = pc.add(ma, pc.divide(pc.multiply(delta, fb), fn))
        m2 = pc.add(pc.add(m2a, m2b),
                    pc.divide(pc.multiply(pc.multiply(pc.multiply(delta, delta), fa), fb), fn))
        zero = pc.equal(n, 0)
        return [n, pc.if_else(zero, 0.0, mean), pc.if_else(zero, 0.0, m2)]
    # LATEST: keep a unless (ts, ct, v) of b is greater
    gt = pc.greater(b[2], a[2])
    for x, y in ((a[1], b[1]), (a[0], b[0])):
        gt = pc.or_(pc.greater(y, x), pc.and_(pc.equal(y, x), gt))
    return [pc.if_else(gt, y, x) for x, y in zip(a, b, strict=True)]


def merge_tile_values(codec: TileCodec, old: Sequence[bytes | None],
                      deltas: pa.Table) -> list[bytes]:
    """The merged tile value of every row of ``deltas`` with its stored value ``old[i]``.

    Args:
        codec: the hop's tile codec.
        old: the stored value per delta row (None: no tile stored yet).
        deltas: the hop's partial columns (``PartialPlan.columns``), one row per tile.

    Raises:
        OverflowError64: an int64 sum overflowed (nothing is returned, so nothing is written).
        StoreError: a stored value does not have the plan's width.
    """
    olds = _old_columns(codec, old)
    encoded: list[pa.Array] = []
    for p, (lo, hi) in zip(codec.partials, codec.slices, strict=True):
        a = olds[lo:hi]
        b = [_delta_column(deltas, c, t) for c, t in zip(p.columns, p.field_types, strict=True)]
        a_empty, b_empty = a[0].is_null(), b[0].is_null()
        both = pc.invert(pc.or_(a_empty, b_empty))
        if pc.any(both).as_py():
            # only rows where both sides hold a state may raise (int64 overflow)
            a_m = [pc.if_else(both, x, pa.scalar(None, x.type)) for x in a]
            b_m = [pc.if_else(both, y, pa.scalar(None, y.type)) for y in b]
            merged = _merge_partial(p.spec, a_m, b_m, p.field_types)
        else:
            merged = [pa.nulls(len(old), x.type) for x in a]
        out = [pc.if_else(a_empty, y, pc.if_else(b_empty, x, m))
               for x, y, m in zip(a, b, merged, strict=True)]
        empty = out[0].is_null()
        for col, dtype in zip(out, p.field_types, strict=True):
            if len(out) > 1:
                col = pc.if_else(empty, pa.scalar(None, col.type), col)
            encoded.append(pc.fill_null(encode_column(col, dtype, tile=True), ""))
    joined = encoded[0] if len(encoded) == 1 else pc.binary_join_element_wise(*encoded, ",")
    return pylist(joined.cast(pa.binary()))
