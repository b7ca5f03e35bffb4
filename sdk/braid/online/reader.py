"""The online read path (DESIGN §4.6): a read plan built once, one round trip per read.

Semantics at ``t = now``:

* Projections: the stored row, unless ``_ts < now - ttl`` (then the default or NULL, status
  OUTSIDE_MAX_AGE; a row exactly ``ttl`` old still counts). A key without ``_ts``: NOT_FOUND.
* Windows of W at hop h: with ``k = floor(now / h)``, the merge of the tiles whose start is in
  ``[(k - W/h + 1) * h, k * h]``, finalized by the algebra. The current tile ``k`` is taken
  whole: a correct online store holds no event with ``ts > now`` in it, except future-skewed
  ones that passed ``max_future_skew``. No tile in the window: the empty value of DESIGN §4.3
  (count and sum 0, others NULL) or the aggregation's default, status NOT_FOUND.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from itertools import compress
from math import gcd
from operator import add
from typing import Any

import orjson

from braid.algebra import (
    INT64_MAX,
    Finalize,
    Merge,
    OverflowError64,
    Partial,
    Spec,
    chan,
    chan_fold,
    finalize,
    merge,
)
from braid.dtypes import DType
from braid.errors import EntityKeyError, UnknownFeatureError, close_matches
from braid.online.base import FieldRequest, OnlineStore
from braid.online.encoding import (
    FIELD_PREFIX,
    TS_FIELD,
    TileCodec,
    decoder,
    escape_key_part,
    key_prefix,
)
from braid.online.result import FeatureStatus, OnlineResult, Provenance
from braid.plan import ViewPlan

PRESENT, NOT_FOUND, OUTSIDE = (FeatureStatus.PRESENT, FeatureStatus.NOT_FOUND,
                               FeatureStatus.OUTSIDE_MAX_AGE)
_INT_ONLY = {int}
_NUMERIC = (DType.INT64, DType.TIMESTAMP, DType.FLOAT64)
#: Kinds of the fast folds over parsed tile columns.
_SUM, _MIN, _MAX, _CHAN, _LATEST = range(5)


def _left_sum(values: Any, start: float) -> float:
    """``start + v0 + v1 + ...`` strictly left to right, as the merge fold adds."""
    return reduce(add, values, start)


if sys.version_info < (3, 12):  # before 3.12 the builtin adds floats plainly, left to right
    _left_sum = sum  # type: ignore[assignment]  # noqa: F811


@dataclass
class _Agg:
    slot: int
    index: int  # partial index within the hop's tile value
    tiles: int
    spec: Spec
    input_type: DType | None
    default: Any
    codec: TileCodec

    def __post_init__(self) -> None:
        lo, hi = self.codec.slices[self.index]
        self.lo, self.hi = lo, hi
        self.decoders = self.codec.decoders[self.index]
        merge_kind = self.spec.merge
        self.fold: Callable[[list[list[bytes] | None]], Partial] = self._fold_generic
        if merge_kind in (Merge.MIN, Merge.MAX):
            self.fold = self._fold_min if merge_kind == Merge.MIN else self._fold_max
        elif merge_kind == Merge.SUM and hi - lo <= 2:
            self.fold = self._fold_sum1 if hi - lo == 1 else self._fold_sum2
        elif merge_kind == Merge.CHAN:
            self.fold = self._fold_chan
        # for fast_fold: the window's fields already parsed to Python numbers
        self.kind = {Merge.SUM: _SUM, Merge.MIN: _MIN, Merge.MAX: _MAX, Merge.CHAN: _CHAN,
                     Merge.LATEST: _LATEST}[merge_kind]
        self.floats = tuple(t == DType.FLOAT64 for t in self.codec.partials[self.index]
                            .field_types)
        self.first = self.spec.finalize == Finalize.FIRST
        self.empty_value = self.spec.empty_value(self.input_type)
        self.empty = self.default if self.empty_value is None else self.empty_value
        self.fast_fold: Callable[[list[Any], int, int, int, bool], Any] = self._fast_generic
        if self.kind == _SUM and self.first and self.floats == (False,):
            self.fast_fold = self._fast_sum_int
        elif self.kind == _SUM and self.first and self.floats == (True,):
            self.fast_fold = self._fast_sum_float
        elif self.kind == _SUM and self.floats == (True, False):
            self.fast_fold = self._fast_mean
        elif self.kind in (_MIN, _MAX) and self.first and len(self.floats) == 1:
            self.fast_fold = self._fast_min_max
        elif self.kind == _CHAN and self.floats == (False, True, True):
            self.fast_fold = self._fast_chan

    # The fast folds below read the window's fields already parsed as JSON: ``vals[lo:hi]``,
    # ``width`` fields per tile, ``None`` for an empty field when ``nulls``; an int may stand
    # for a float field. They return the finalized value (``None``: the default applies).

    def _present(self, vals: list[Any], at: int, hi: int, width: int) -> list[Any]:
        return [v for v in vals[at:hi:width] if v is not None]

    def _fast_sum_int(self, vals: list[Any], lo: int, hi: int, width: int, nulls: bool) -> Any:
        at = lo + self.lo
        col = self._present(vals, at, hi, width) if nulls else vals[at:hi:width]
        total = sum(col)
        if type(total) is not int or not -(2**63) <= total <= INT64_MAX:
            raise OverflowError64(f"{self.spec.function} over the window overflowed int64 "
                                  f"({total})")
        return total if col else self.empty_value

    def _fast_sum_float(self, vals: list[Any], lo: int, hi: int, width: int,
                        nulls: bool) -> Any:
        at = lo + self.lo
        it = iter(self._present(vals, at, hi, width) if nulls else vals[at:hi:width])
        first = next(it, None)
        if first is None:
            return self.empty_value
        return _left_sum(it, float(first))  # float + int converts the int as float() does

    def _fast_mean(self, vals: list[Any], lo: int, hi: int, width: int, nulls: bool) -> Any:
        at = lo + self.lo
        it: Iterator[Any]
        if nulls:
            mask = [v is not None for v in vals[at:hi:width]]
            it = compress(vals[at:hi:width], mask)
            counts = list(compress(vals[at + 1:hi:width], mask))
        else:
            it = iter(vals[at:hi:width])
            counts = vals[at + 1:hi:width]
        first = next(it, None)
        if first is None:
            return self.empty_value
        state = (_left_sum(it, float(first)), sum(counts))
        return finalize(self.spec, _checked(state, self.spec), self.input_type)

    def _fast_min_max(self, vals: list[Any], lo: int, hi: int, width: int, nulls: bool) -> Any:
        at = lo + self.lo
        col = self._present(vals, at, hi, width) if nulls else vals[at:hi:width]
        if not col:
            return self.empty_value
        v = max(col) if self.kind == _MAX else min(col)
        return float(v) if self.floats[0] else v

    def _fast_chan(self, vals: list[Any], lo: int, hi: int, width: int, nulls: bool) -> Any:
        at = lo + self.lo
        if nulls:
            mask = [v is not None for v in vals[at:hi:width]]
            tiles = zip(compress(vals[at:hi:width], mask), compress(vals[at + 1:hi:width], mask),
                        compress(vals[at + 2:hi:width], mask), strict=True)
        else:
            tiles = zip(vals[at:hi:width], vals[at + 1:hi:width], vals[at + 2:hi:width],
                        strict=True)
        head = next(tiles, None)
        if head is None:
            return self.empty_value
        return finalize(self.spec, chan_fold(head, tiles), self.input_type)

    def _fast_generic(self, vals: list[Any], lo: int, hi: int, width: int, nulls: bool) -> Any:
        """The finalized value of the window whose tiles' fields are ``vals[lo:hi]``, ``width``
        per tile, parsed by JSON (an int may stand for a float field; ``None`` for an empty
        field when ``nulls``). The folds of :meth:`fold`, in the same order.
        """
        at = lo + self.lo
        k = self.hi - self.lo
        if nulls:
            mask = [v is not None for v in vals[at:hi:width]]
            cols = [list(compress(vals[at + j:hi:width], mask)) for j in range(k)]
            if not cols[0]:
                return self.empty_value
        elif k == 1:
            cols = [vals[at:hi:width]]
        else:
            cols = [vals[at + j:hi:width] for j in range(k)]
        kind = self.kind
        state: tuple[Any, ...]
        if kind == _SUM:
            sums = []
            for col, is_float in zip(cols, self.floats, strict=True):
                if is_float:  # float + int converts the int as float() would
                    it = iter(col)
                    sums.append(_left_sum(it, float(next(it))))
                else:
                    total = sum(col)
                    if type(total) is not int:  # a token beyond int64 or not an integer
                        raise OverflowError64(
                            f"{self.spec.function} over the window: tile field is not an "
                            f"int64 ({total})")
                    sums.append(total)
            state = _checked(tuple(sums), self.spec)
        elif kind == _MAX or kind == _MIN:
            v = max(cols[0]) if kind == _MAX else min(cols[0])
            state = (float(v) if self.floats[0] else v,)
        elif kind == _CHAN:
            tiles = zip(*cols, strict=True)
            state = chan_fold(next(tiles), tiles)
        else:  # _LATEST: the greatest (ts, created, value), the first of equals
            best = max(zip(*cols, strict=True))
            state = tuple(float(x) if f else x for x, f in zip(best, self.floats, strict=True))
        if self.first:
            return state[0]
        return finalize(self.spec, state, self.input_type)

    def _fold_generic(self, tiles: list[list[bytes] | None]) -> Partial:
        acc: Partial = None
        for parts in tiles:
            if parts is not None:
                acc = merge(self.spec, acc, self.codec.decode_one(parts, self.index))
        return acc

    def _values(self, tiles: list[list[bytes] | None]) -> list[Any]:
        dec, lo = self.decoders[0], self.lo
        return [dec(p[lo]) for p in tiles if p is not None and p[lo]]

    def _fold_min(self, tiles: list[list[bytes] | None]) -> Partial:
        vals = self._values(tiles)
        return (min(vals),) if vals else None

    def _fold_max(self, tiles: list[list[bytes] | None]) -> Partial:
        vals = self._values(tiles)
        return (max(vals),) if vals else None

    # The folds below are the algebra's merges of DESIGN §5 applied left to right (oldest
    # tile first, as merge_all does), minus the per-call dispatch of ``algebra.merge``.

    def _fold_sum1(self, tiles: list[list[bytes] | None]) -> Partial:
        dec, lo = self.decoders[0], self.lo
        acc: Any = None
        for p in tiles:
            if p is not None and p[lo]:
                acc = dec(p[lo]) if acc is None else acc + dec(p[lo])
        return None if acc is None else _checked((acc,), self.spec)

    def _fold_sum2(self, tiles: list[list[bytes] | None]) -> Partial:
        (d0, d1), lo = self.decoders, self.lo
        a0: Any = None
        a1: Any = None
        for p in tiles:
            if p is not None and p[lo]:
                if a0 is None:
                    a0, a1 = d0(p[lo]), d1(p[lo + 1])
                else:
                    a0, a1 = a0 + d0(p[lo]), a1 + d1(p[lo + 1])
        return None if a0 is None else _checked((a0, a1), self.spec)

    def _fold_chan(self, tiles: list[list[bytes] | None]) -> Partial:
        lo = self.lo
        acc: tuple[Any, ...] | None = None
        for p in tiles:
            if p is not None and p[lo]:
                x = (int(p[lo]), float(p[lo + 1]), float(p[lo + 2]))
                acc = x if acc is None else chan(acc, x)
        return acc


def _checked(state: tuple[Any, ...], spec: Spec) -> tuple[Any, ...]:
    for v in state:
        if isinstance(v, int) and not -(2**63) <= v <= INT64_MAX:
            raise OverflowError64(f"{spec.function} over the window overflowed int64 ({v})")
    return state


@dataclass
class _Hop:
    hop: int
    codec: TileCodec
    aggs: list[_Agg] = field(default_factory=list)
    span: int = 0  # tile fields requested: the longest window's tile count
    # (k, fields) in one tuple: readers on other threads see a consistent pair
    cached: tuple[int | None, list[str]] = (None, [])
    width: int = 0
    fast: bool = False  # every field numeric: tile values parse as one JSON array
    short: tuple[int, ...] = ()  # tile counts of windows shorter than span
    groups: list[tuple[int, list[_Agg]]] = field(default_factory=list)  # by tile count

    def prepare(self) -> None:
        self.width = self.codec.width
        self.fast = all(t in _NUMERIC for p in self.codec.partials for t in p.field_types)
        self.short = tuple(sorted({a.tiles for a in self.aggs if a.tiles < self.span}))
        counts = sorted({a.tiles for a in self.aggs}, reverse=True)
        self.groups = [(c, [a for a in self.aggs if a.tiles == c]) for c in counts]

    def fields(self, now_ms: int) -> list[str]:
        k = now_ms // self.hop
        cached_k, fields = self.cached
        if k != cached_k:
            h = self.hop
            fields = [f"{h}:{j * h}" for j in range(k - self.span + 1, k + 1)]
            self.cached = (k, fields)
        return fields


@dataclass
class _View:
    plan: ViewPlan
    prefix: str
    keys: tuple[tuple[str, DType], ...]
    proj: list[tuple[int, Any, Any]] = field(default_factory=list)  # slot, decode, default
    proj_fields: list[str] = field(default_factory=list)
    hops: dict[int, _Hop] = field(default_factory=dict)
    grain: int = 0  # gcd of the hops: every hop's k(now) is a function of now // grain
    # (k, fields) in one tuple: readers on other threads see a consistent pair
    cached: tuple[int | None, list[str]] = (None, [])

    def fields(self, now_ms: int) -> list[str]:
        """The fields to read at ``now_ms`` (rebuilt only when a tile boundary is crossed)."""
        if not self.hops:
            return self.proj_fields
        k = now_ms // self.grain
        cached_k, fields = self.cached
        if k != cached_k:
            fields = list(self.proj_fields)
            for h in self.hops.values():
                fields += h.fields(now_ms)
            self.cached = (k, fields)
        return fields


class OnlineReader:
    """Reads features of many views for many entities in one pipelined round trip.

    Built once per feature list; :meth:`read` does no name resolution, no validation beyond
    entity keys, and no pandas or pydantic work.

    Example:
        >>> reader = OnlineReader(store, {"user_txn:amount_sum_1h": (plan, "amount_sum_1h")})
        >>> reader.read([{"user_id": 1}], now_ms=1_700_000_000_000).to_dict()
        {'user_id': [1], 'amount_sum_1h': [12.5]}

    Args:
        store: the online store to read.
        features: feature reference ("view:feature") -> (the view's plan, feature name), in
            output order.
        full_feature_names: name outputs ``view__feature`` instead of ``feature``.
    """

    def __init__(self, store: OnlineStore, features: Mapping[str, tuple[ViewPlan, str]],
                 full_feature_names: bool = False) -> None:
        self.store = store
        self.names: list[str] = []
        self.dtypes: list[DType] = []
        self._views: dict[str, _View] = {}
        self._key_types: dict[str, DType] = {}
        for slot, (ref, (plan, name)) in enumerate(features.items()):
            self._add(slot, ref, plan, name, full_feature_names)
        for view in self._views.values():
            for hop in view.hops.values():
                hop.prepare()
            view.grain = reduce(gcd, view.hops, 0)
        # one view keyed by one int64 join key: read() takes an inlined path
        views = list(self._views.values())
        self._single = views[0] if len(views) == 1 else None
        self._int_key = (views[0].keys[0][0] if len(views) == 1 and len(views[0].keys) == 1
                         and views[0].keys[0][1] == DType.INT64 else None)
        self._empty_values: list[Any] = [None] * len(self.names)
        dupes = {n for n in self.names if self.names.count(n) > 1}
        if dupes:
            raise UnknownFeatureError(
                f"feature names {sorted(dupes)} occur in several views; pass "
                "full_feature_names=True to name them view__feature")

    @classmethod
    def from_refs(cls, store: OnlineStore, plans: Mapping[str, ViewPlan], refs: Sequence[str],
                  full_feature_names: bool = False) -> OnlineReader:
        """Resolve "view:feature" references against plans keyed by view name."""
        features: dict[str, tuple[ViewPlan, str]] = {}
        for ref in refs:
            view, _, name = ref.partition(":")
            if view not in plans:
                raise UnknownFeatureError(
                    f"unknown feature view '{view}' in {ref!r}.{close_matches(view, plans)}")
            features[ref] = (plans[view], name)
        return cls(store, features, full_feature_names)

    def _add(self, slot: int, ref: str, plan: ViewPlan, name: str, full: bool) -> None:
        view = self._views.get(plan.namespace)
        if view is None:
            view = _View(plan, key_prefix(plan), plan.entity_keys)
            self._views[plan.namespace] = view
            for key, dtype in plan.entity_keys:
                self._key_types.setdefault(key, dtype)
        self.names.append(f"{plan.name}__{name}" if full else name)
        for p in plan.projections:
            if p.name == name:
                if not view.proj_fields:
                    view.proj_fields.append(TS_FIELD)
                view.proj.append((slot, decoder(p.dtype), p.default))
                view.proj_fields.append(FIELD_PREFIX + name)
                self.dtypes.append(p.dtype)
                return
        for a in plan.aggregations:
            if a.name == name:
                hop = view.hops.get(a.hop)
                if hop is None:
                    hop = view.hops[a.hop] = _Hop(a.hop, TileCodec(plan, a.hop))
                index = hop.codec.partials.index(a.partial)
                hop.aggs.append(_Agg(slot, index, a.tiles, a.partial.spec,
                                     a.partial.input_type, a.default, hop.codec))
                hop.span = max(hop.span, a.tiles)
                self.dtypes.append(a.dtype)
                return
        raise UnknownFeatureError(
            f"view '{plan.name}' has no feature '{name}' (in {ref!r})."
            f"{close_matches(name, plan.feature_names)}")

    def read(self, entity_rows: Sequence[Mapping[str, Any]], now_ms: int) -> OnlineResult:
        """Feature values at ``now_ms`` for each entity row, in order.

        Raises:
            EntityKeyError: a row lacks a join key or holds one of the wrong type.
            StoreError: the store could not be read.
        """
        n = len(entity_rows)
        single = self._single
        ids = None
        if single is not None and self._int_key is not None:  # the common shape, inlined
            key = self._int_key
            try:
                ids = [entity_rows[0][key]] if n == 1 else [row[key] for row in entity_rows]
            except (KeyError, TypeError, IndexError):
                ids = None  # the general path names the row at fault
            else:
                if set(map(type, ids)) != _INT_ONLY:
                    ids = None
        if ids is not None and single is not None:
            fields = single.fields(now_ms)
            prefix = single.prefix
            raw = self.store.fetch([(f"{prefix}{ids[0]}}}", fields)] if n == 1 else
                                   [(f"{prefix}{v}}}", fields) for v in ids])
            values: list[list[Any]] = list(self._empty_values)
            provenance: list[Provenance] = list(self._empty_values)  # type: ignore[arg-type]
            _decode_view(single, raw, n, now_ms, values, provenance)
            return OnlineResult({single.keys[0][0]: (DType.INT64, ids)}, self.names,
                                self.dtypes, values, provenance=provenance)
        encoded: dict[tuple[tuple[str, DType], ...], list[str]] = {}
        requests: list[FieldRequest] = []
        for view in self._views.values():
            ents = encoded.get(view.keys)
            if ents is None:
                ents = encoded[view.keys] = _encode_entities(view.keys, entity_rows)
            fields = view.fields(now_ms)
            prefix = view.prefix
            requests += [(prefix + e + "}", fields) for e in ents]
        raw = self.store.fetch(requests) if requests else []
        values = list(self._empty_values)
        provenance = list(self._empty_values)
        at = 0
        for view in self._views.values():
            _decode_view(view, raw[at:at + n], n, now_ms, values, provenance)
            at += n
        entities = {k: (t, [row[k] for row in entity_rows]) for k, t in self._key_types.items()}
        return OnlineResult(entities, self.names, self.dtypes, values, provenance=provenance)


def _encode_entities(keys: tuple[tuple[str, DType], ...],
                     rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    for i, row in enumerate(rows):
        parts: list[str] = []
        for name, dtype in keys:
            try:
                v = row[name]
            except KeyError:
                raise EntityKeyError(
                    f"entity row {i} lacks join key '{name}' (it has: {', '.join(row) or '-'})"
                    f"; pass e.g. {{'{name}': ...}}") from None
            except TypeError:
                raise EntityKeyError(
                    f"entity row {i} must be a dict of join keys, got {type(row).__name__}"
                ) from None
            parts.append(_key_part(v, name, dtype, i))
        out.append(":".join(parts))
    return out


def _key_part(v: Any, name: str, dtype: DType, i: int) -> str:
    if dtype == DType.INT64:
        if type(v) is int:
            return str(v)
        if not isinstance(v, bool) and hasattr(v, "__index__") and not isinstance(v, str):
            return str(int(v))  # numpy integers
    elif isinstance(v, str):
        return escape_key_part(v)
    raise EntityKeyError(
        f"entity row {i}: join key '{name}' must be {dtype}, got {type(v).__name__} {v!r}")


def _decode_view(view: _View, rows: list[list[bytes | None]], n: int, now_ms: int,
                 values: list[list[Any]], provenance: list[Provenance]) -> None:
    """Fill the value columns and provenance of the view's features (by slot)."""
    if view.proj:
        ttl = view.plan.ttl
        oldest = None if ttl is None else now_ms - ttl
        if n == 1:
            row = rows[0]
            raw_ts = row[0]
            ts = None if raw_ts is None else int(raw_ts)
            prov: Provenance = ([ts], False, oldest)
            if ts is None or (oldest is not None and ts < oldest):
                for slot, _, default in view.proj:
                    values[slot] = [default]
                    provenance[slot] = prov
            else:
                for j, (slot, decode, default) in enumerate(view.proj, 1):
                    raw = row[j]
                    values[slot] = [default if raw is None else decode(raw)]
                    provenance[slot] = prov
        else:
            times = [None if row[0] is None else int(row[0]) for row in rows]  # type: ignore[arg-type]
            prov = (times, False, oldest)
            for j, (slot, decode, default) in enumerate(view.proj, 1):
                col = [default] * n
                for i, ts in enumerate(times):
                    if ts is not None and (oldest is None or ts >= oldest):
                        raw = rows[i][j]
                        if raw is not None:
                            col[i] = decode(raw)
                values[slot] = col
                provenance[slot] = prov
    at = len(view.proj_fields)
    for hop in view.hops.values():
        if not (hop.fast and _fold_hop_fast(hop, rows, n, at, now_ms, values, provenance)):
            _fold_hop(hop, rows, n, at, now_ms, values, provenance)
        at += hop.span


def _fold_hop_fast(hop: _Hop, rows: list[list[bytes | None]], n: int, at: int, now_ms: int,
                   values: list[list[Any]], provenance: list[Provenance]) -> bool:
    """Every entity's windows of one hop from a single JSON parse of all their tiles.

    Returns False, having written nothing, when the tiles need the exact field decoders
    (a ``-0``, a non-JSON number such as ``inf``, a malformed value): :func:`_fold_hop` then
    reads the hop.
    """
    span, width, short = hop.span, hop.width, hop.short
    end = at + span
    present: list[bytes] = []
    bounds = [0]  # entity i's present tiles: present[bounds[i]:bounds[i + 1]]
    cuts: dict[int, list[int]] = {t: [] for t in short}  # first tile of a shorter window
    for row in rows:
        tiles = row[at:end]
        if None in tiles:
            for t in short:
                c = span - t
                cuts[t].append(len(present) + c - tiles[:c].count(None))
            present += [x for x in tiles if x is not None]
        else:
            for t in short:
                cuts[t].append(len(present) + span - t)
            present += tiles  # type: ignore[arg-type]
        bounds.append(len(present))
    joined = b",".join(present)
    if b"-0," in joined or joined.endswith(b"-0"):  # JSON reads -0 as the integer 0
        return False
    nulls = False
    try:
        vals = orjson.loads(b"[" + joined + b"]")
    except orjson.JSONDecodeError:
        # empty fields (empty partials) -> null; two passes cover runs of empty fields
        filled = (b"," + joined + b",").replace(b",,", b",null,").replace(b",,", b",null,")
        try:
            vals = orjson.loads(b"[" + filled[1:-1] + b"]")
        except orjson.JSONDecodeError:
            return False
        nulls = True
    if len(vals) != width * len(present):
        return False
    lasts = bounds[1:]
    for count, aggs in hop.groups:
        firsts = bounds if count == span else cuts[count]
        if n == 1:
            hits = [firsts[0] != lasts[0]]
            if hits[0]:
                lo, hi = firsts[0] * width, lasts[0] * width
                for agg in aggs:
                    v = agg.fast_fold(vals, lo, hi, width, nulls)
                    values[agg.slot] = [agg.default if v is None else v]
            else:
                for agg in aggs:
                    values[agg.slot] = [agg.empty]
        else:
            hits = [f != last for f, last in zip(firsts, lasts)]  # noqa: B905 (firsts: n+1)
            spans = [(i, f * width, last * width)
                     for i, (f, last) in enumerate(zip(firsts, lasts)) if f != last]  # noqa: B905
            for agg in aggs:
                col = [agg.empty] * n
                fold, default = agg.fast_fold, agg.default
                for i, lo, hi in spans:
                    v = fold(vals, lo, hi, width, nulls)
                    col[i] = default if v is None else v
                values[agg.slot] = col
        prov: Provenance = (hits, True, now_ms)
        for agg in aggs:
            provenance[agg.slot] = prov
    return True


def _fold_hop(hop: _Hop, rows: list[list[bytes | None]], n: int, at: int, now_ms: int,
              values: list[list[Any]], provenance: list[Provenance]) -> None:
    """One hop's windows, tile by tile with the exact field decoders."""
    span = hop.span
    tiles = [[None if t is None else t.split(b",") for t in row[at:at + span]] for row in rows]
    for count, aggs in hop.groups:
        windows = [entity[span - count:] for entity in tiles]
        hits = [any(t is not None for t in window) for window in windows]
        for agg in aggs:
            col = [agg.empty] * n
            for i, window in enumerate(windows):
                if hits[i]:
                    value = finalize(agg.spec, agg.fold(window), agg.input_type)
                    col[i] = agg.default if value is None else value
            values[agg.slot] = col
        prov: Provenance = (hits, True, now_ms)
        for agg in aggs:
            provenance[agg.slot] = prov
