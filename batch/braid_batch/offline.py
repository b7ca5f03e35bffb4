"""The offline store: Parquet tiles and projection rows per view namespace (DESIGN §6, §6.5).

Layout under ``<offline_root>/<project>/<namespace>/``::

    tiles/hop=<hop_ms>/date=<YYYY-MM-DD>/part-<id>.parquet   keys, tile_start, partial columns
    rows/date=<YYYY-MM-DD>/part-<id>.parquet                 keys, _ts, _ct, projections
    .../date=<YYYY-MM-DD>/_manifest.json                     the live files of the partition
    tiles/hop=<hop_ms>/_coverage.json, rows/_coverage.json   time ranges known complete

The date of a partition is the UTC day of ``tile_start`` (tiles) or ``_ts`` (rows), computed
as ``floor(ms / 86_400_000)`` on integers (correct before 1970), never with calendar functions.

Writes are atomic: each file is written under a temporary name in its partition and renamed;
the manifest, renamed into place last, is the only thing readers trust. A crash leaves at
worst an unlisted file, which readers ignore; re-writing a partition replaces its files.
Partitions are staged (written, not listed) and published in batches: the batch's data files
are synced together, then renamed, then each manifest is replaced (synced, renamed, its
directory synced) before the files it no longer lists are deleted. A batch costs a few
concurrent fsync rounds instead of one per file; each partition still switches atomically.
Days without data get no partition; the coverage file (updated after the partitions of a
range are published) says which ranges are complete, so readers know an absent day is empty
rather than never computed; a backfill without a start also covers everything before its first
event (a range from ``BEGINNING``).

Example:
    >>> store = OfflineStore.for_repo(repo)
    >>> store.tiles_relation(con, plan, hop=300_000).to_arrow_table()
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from braid.compile.algebra_sql import CT, TS, col, lit
from braid.compile.dialect import DUCKDB
from braid.dtypes import DType
from braid.errors import StoreError
from braid.expr import cast_type
from braid.plan import ViewPlan
from braid.timeutil import DAY, tile_start

if TYPE_CHECKING:
    from braid.repo import Repo

MANIFEST = "_manifest.json"
COVERAGE = "_coverage.json"
#: A coverage range starting here reaches back to the source's beginning: a backfill without
#: a start read every event, so nothing older exists to compute.
BEGINNING = -(2**62)
TILE_START = "tile_start"
_TS_ARROW = pa.timestamp("ms", tz="UTC")
#: fsyncs wait on the disk, not the CPU: issued together, the file system batches them.
_SYNC_WORKERS = 8


def epoch_day(ms: int) -> int:
    """The UTC day number of an epoch-ms time (floor division: -1 ms is day -1)."""
    return ms // DAY


def day_name(day: int) -> str:
    """``YYYY-MM-DD`` of a UTC day number."""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def day_of_name(name: str) -> int:
    """The UTC day number of ``YYYY-MM-DD``."""
    return (dt.date.fromisoformat(name) - dt.date(1970, 1, 1)).days


@dataclass(frozen=True)
class Staged:
    """A partition's next content, written under ``.tmp-<name>`` and not yet listed."""

    directory: Path
    name: str | None
    rows: int
    start: int
    end: int
    unique_key_ts: bool


@dataclass(frozen=True)
class Manifest:
    """One published partition: its live files and the time range it completely covers."""

    directory: Path
    files: tuple[str, ...]
    rows: int
    start: int
    end: int
    unique_key_ts: bool = True

    @property
    def paths(self) -> list[str]:
        return [str(self.directory / f) for f in self.files]


def tile_schema(plan: ViewPlan, hop: int) -> pa.Schema:
    """Arrow schema of a hop's tiles file: keys, tile_start, partial fields (algebra order)."""
    fields = [pa.field(k, t.arrow) for k, t in plan.entity_keys]
    fields.append(pa.field(TILE_START, pa.int64()))
    for p in plan.partials_for_hop(hop):
        fields += [pa.field(c, t.arrow) for c, t in zip(p.columns, p.field_types, strict=True)]
    return pa.schema(fields)


def row_schema(plan: ViewPlan) -> pa.Schema:
    """Arrow schema of a rows file: keys, _ts and _ct as timestamp[ms, UTC], projections."""
    fields = [pa.field(k, t.arrow) for k, t in plan.entity_keys]
    fields += [pa.field(TS, _TS_ARROW), pa.field(CT, _TS_ARROW)]
    fields += [pa.field(p.name, p.dtype.arrow) for p in plan.projections]
    return pa.schema(fields)


def value_key(plan: ViewPlan, prefix: str = "") -> exp.Expression:
    """The canonical value encoding that breaks (ts, created) ties between projection rows.

    The projections rendered as VARCHAR (NULL as the empty string), joined by the unit
    separator U+001F, compared bytewise: greatest wins (DESIGN §4.1).
    """
    parts: list[exp.Expression] = [exp.Anonymous(this="chr", expressions=[lit(31)])]
    for p in plan.projections:
        c = col(prefix + p.name)
        parts.append(exp.Coalesce(this=exp.Cast(this=c, to=exp.DataType.build("VARCHAR")),
                                  expressions=[exp.Literal.string("")]))
    if len(parts) == 1:
        return exp.Literal.string("")
    return exp.Anonymous(this="concat_ws", expressions=parts)


def _empty_select(columns: list[tuple[str, exp.DataType]]) -> exp.Select:
    sel = [exp.alias_(exp.Cast(this=exp.Null(), to=t), n, quoted=True) for n, t in columns]
    return exp.select(*sel).where(exp.false())


def _read(paths: list[str]) -> exp.Expression:
    files = exp.Array(expressions=[exp.Literal.string(p) for p in paths])
    return exp.Anonymous(this="read_parquet", expressions=[files])


@dataclass(frozen=True)
class OfflineStore:
    """Parquet tiles and rows under ``root`` (the repository's ``offline_store.path``)."""

    root: Path

    @classmethod
    def for_repo(cls, repo: Repo) -> OfflineStore:
        return cls(repo.config.resolve(repo.config.offline_store.path))

    # ------------------------------------------------------------------ layout

    def view_dir(self, plan: ViewPlan) -> Path:
        return self.root / plan.project / plan.namespace

    def kind_dir(self, plan: ViewPlan, hop: int | None) -> Path:
        """``tiles/hop=<hop>`` for a hop, ``rows`` for ``None``."""
        base = self.view_dir(plan)
        return base / "rows" if hop is None else base / "tiles" / f"hop={hop}"

    def partition_dir(self, plan: ViewPlan, hop: int | None, day: int) -> Path:
        return self.kind_dir(plan, hop) / f"date={day_name(day)}"

    # ------------------------------------------------------------------ writing

    def write_partition(self, plan: ViewPlan, hop: int | None, day: int, table: pa.Table,
                        start: int, end: int) -> Manifest:
        """Replace one partition with ``table`` (already cast to its schema), atomically.

        ``[start, end)`` is the time range the partition now covers completely (a cutoff may
        end it before the day does). Old files are deleted after the new manifest is live.
        """
        return self.publish([self.stage_partition(plan, hop, day, table, start, end)])[0]

    def stage_partition(self, plan: ViewPlan, hop: int | None, day: int, table: pa.Table,
                        start: int, end: int, unique_key_ts: bool | None = None) -> Staged:
        """Write ``table`` as the next content of a partition, under a temporary name.

        Nothing is visible until :meth:`publish`. ``unique_key_ts`` (rows only) says whether
        no two rows share (keys, ``_ts``); computed from ``table`` when not given.
        """
        directory = self.partition_dir(plan, hop, day)
        directory.mkdir(parents=True, exist_ok=True)
        name = None
        if table.num_rows:
            name = f"part-{uuid.uuid4().hex}.parquet"
            pq.write_table(table, directory / f".tmp-{name}", **_parquet_options(table.schema))
        if unique_key_ts is None:
            unique_key_ts = _unique_key_ts(plan, table) if hop is None else True
        return Staged(directory, name, table.num_rows, start, end, unique_key_ts)

    def publish(self, staged: Sequence[Staged]) -> list[Manifest]:
        """Make staged partitions live, each atomically, with a few durability barriers for
        the whole batch instead of one fsync per file: the data files are synced and renamed,
        then each partition's manifest is replaced, then the files it no longer lists go."""
        with ThreadPoolExecutor(max_workers=_SYNC_WORKERS) as pool:
            list(pool.map(_fsync, [s.directory / f".tmp-{s.name}" for s in staged if s.name]))
            for s in staged:
                if s.name:
                    os.replace(s.directory / f".tmp-{s.name}", s.directory / s.name)
            dirs = sorted({s.directory for s in staged})
            list(pool.map(_fsync, dirs))  # the new files' names before any manifest lists them
            old = {s.directory: self.read_manifest(s.directory) for s in staged}
            manifests = [Manifest(s.directory, (s.name,) if s.name else (), s.rows, s.start,
                                  s.end, s.unique_key_ts) for s in staged]
            tmps = list(pool.map(_stage_manifest, manifests))
            for m, tmp in zip(manifests, tmps, strict=True):
                os.replace(tmp, m.directory / MANIFEST)
            list(pool.map(_fsync, dirs))  # manifests durable before the old files go
        for m in manifests:
            prev = old[m.directory]
            for stale in set(prev.files if prev else ()) - set(m.files):
                (m.directory / stale).unlink(missing_ok=True)
        return manifests

    @staticmethod
    def discard(staged: Sequence[Staged]) -> None:
        """Delete the files of staged partitions that will not be published."""
        for s in staged:
            if s.name:
                (s.directory / f".tmp-{s.name}").unlink(missing_ok=True)

    # ------------------------------------------------------------------ manifests

    @staticmethod
    def read_manifest(directory: Path) -> Manifest | None:
        path = directory / MANIFEST
        try:
            body: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise StoreError(f"{path}: unreadable manifest ({e}); re-run the backfill") from e
        return Manifest(directory, tuple(body["files"]), int(body["rows"]), int(body["start"]),
                        int(body["end"]), bool(body.get("unique_key_ts", True)))

    def manifests(self, plan: ViewPlan, hop: int | None, lo: int | None = None,
                  hi: int | None = None) -> list[Manifest]:
        """Published partitions of one kind, by date, overlapping ``[lo, hi)`` if given."""
        base = self.kind_dir(plan, hop)
        if not base.is_dir():
            return []
        out = []
        for d in sorted(base.glob("date=*")):
            day = day_of_name(d.name.removeprefix("date="))
            if lo is not None and (day + 1) * DAY <= lo or hi is not None and day * DAY >= hi:
                continue
            m = self.read_manifest(d)
            if m is not None:
                out.append(m)
        return out

    def covered(self, plan: ViewPlan, hop: int | None, lo: int | None = None,
                hi: int | None = None) -> list[tuple[int, int]]:
        """Merged ``[start, end)`` ranges whose partitions are complete (empty days included:
        they have no partition at all), overlapping ``[lo, hi)``."""
        path = self.kind_dir(plan, hop) / COVERAGE
        try:
            ranges = [(int(a), int(b)) for a, b in json.loads(path.read_text())["ranges"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError) as e:
            raise StoreError(f"{path}: unreadable coverage ({e}); re-run the backfill") from e
        return [(a, b) for a, b in ranges
                if (hi is None or a < hi) and (lo is None or b > lo)]

    def add_coverage(self, plan: ViewPlan, hop: int | None, start: int, end: int) -> None:
        """Record ``[start, end)`` as complete, after its partitions are published."""
        merged: list[tuple[int, int]] = []
        for a, b in sorted([*self.covered(plan, hop), (start, end)]):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        directory = self.kind_dir(plan, hop)
        directory.mkdir(parents=True, exist_ok=True)
        _write_json(directory, COVERAGE, {"version": 1, "ranges": merged})

    # ------------------------------------------------------------------ readers (trees)

    def tiles_from(self, plan: ViewPlan, hop: int, lo: int | None = None,
                   hi: int | None = None) -> exp.Select:
        """SELECT over the listed tiles files with ``lo <= tile_start < hi``."""
        paths = [p for m in self.manifests(plan, hop, lo, hi) for p in m.paths]
        schema = tile_schema(plan, hop)
        if not paths:
            return _empty_select([(f.name, _duck_type(f.type)) for f in schema])
        sel = exp.select(*[col(f.name) for f in schema]).from_(_read(paths))
        for cond in _bounds(col(TILE_START), lo, hi):
            sel = sel.where(cond)
        return sel

    def rows_from(self, plan: ViewPlan, lo: int | None = None, hi: int | None = None) -> exp.Select:
        """SELECT over the listed rows files: keys, ``_ts``/``_ct`` as epoch-ms BIGINT
        (``_ct`` NULL when missing), projections; with ``lo <= _ts < hi``."""
        paths = [p for m in self.manifests(plan, None, lo, hi) for p in m.paths]
        keys = [(k, cast_type(t)) for k, t in plan.entity_keys]
        projections = [(p.name, cast_type(p.dtype)) for p in plan.projections]
        if not paths:
            big = cast_type(DType.INT64)
            return _empty_select([*keys, (TS, big), (CT, big.copy()), *projections])
        def ms(name: str) -> exp.Expr:
            return exp.alias_(exp.Anonymous(this="epoch_ms", expressions=[col(name)]), name,
                              quoted=True)
        sel = exp.select(*[col(k) for k, _ in keys], ms(TS), ms(CT),
                         *[col(n) for n, _ in projections]).from_(_read(paths))
        raw_ts = exp.Anonymous(this="epoch_ms", expressions=[col(TS)])
        for cond in _bounds(raw_ts, lo, hi):
            sel = sel.where(cond)
        return sel

    def rows_unique(self, plan: ViewPlan) -> bool:
        """True if no published rows partition holds two rows with the same (keys, _ts)."""
        return all(m.unique_key_ts for m in self.manifests(plan, None))

    # ------------------------------------------------------------------ readers (relations)

    def tiles_relation(self, con: duckdb.DuckDBPyConnection, plan: ViewPlan, hop: int,
                       before: int | None = None) -> duckdb.DuckDBPyRelation:
        """All published tiles of ``hop`` (``tile_start < before`` if given)."""
        return con.sql(DUCKDB.render(self.tiles_from(plan, hop, hi=before)))

    def rows_relation(self, con: duckdb.DuckDBPyConnection,
                      plan: ViewPlan) -> duckdb.DuckDBPyRelation:
        """All published projection rows; ``_ts``/``_ct`` as epoch ms (``_ct`` NULL if missing)."""
        return con.sql(DUCKDB.render(self.rows_from(plan)))

    def latest_rows(self, con: duckdb.DuckDBPyConnection, plan: ViewPlan,
                    as_of: int | None = None) -> duckdb.DuckDBPyRelation:
        """One row per entity: greatest ``_ts <= as_of``, ties by ``_ct`` (missing lowest),
        then by the canonical value encoding (DESIGN §4.1)."""
        rows = self.rows_from(plan, hi=None if as_of is None else as_of + 1)
        order = [exp.Ordered(this=col(TS), desc=True),
                 exp.Ordered(this=col(CT), desc=True, nulls_first=False),
                 exp.Ordered(this=value_key(plan), desc=True)]
        rank = exp.Window(this=exp.RowNumber(),
                          partition_by=[col(k) for k in plan.key_names],
                          order=exp.Order(expressions=order))
        sel = exp.select("*").from_(rows.subquery("r")).qualify(exp.EQ(this=rank, expression=lit(1)))
        return con.sql(DUCKDB.render(sel))

    def live_tiles(self, con: duckdb.DuckDBPyConnection, plan: ViewPlan, hop: int, now: int,
                   cutoff: int | None = None) -> duckdb.DuckDBPyRelation:
        """Tiles a read at ``now`` may need: the largest window of ``hop`` back from the tile of
        ``now`` (inclusive), and only ``tile_start < cutoff`` when a cutoff is given."""
        widest = max((a.window for a in plan.aggregations if a.hop == hop), default=hop)
        current = tile_start(now, hop)
        hi = current + hop if cutoff is None else min(cutoff, current + hop)
        return con.sql(DUCKDB.render(self.tiles_from(plan, hop, current - widest + hop, hi)))


def _bounds(e: exp.Expression, lo: int | None, hi: int | None) -> list[exp.Expression]:
    out: list[exp.Expression] = []
    if lo is not None:
        out.append(exp.GTE(this=e.copy(), expression=lit(lo)))
    if hi is not None:
        out.append(exp.LT(this=e.copy(), expression=lit(hi)))
    return out


def _duck_type(t: pa.DataType) -> exp.DataType:
    if pa.types.is_timestamp(t):
        return exp.DataType.build("TIMESTAMPTZ")
    for dtype in DType:
        if dtype.arrow == t:
            return cast_type(dtype)
    raise StoreError(f"no DuckDB type for Arrow type {t}")


def _unique_key_ts(plan: ViewPlan, table: pa.Table) -> bool:
    if table.num_rows < 2:
        return True
    groups = table.group_by([*plan.key_names, TS]).aggregate([])
    return bool(groups.num_rows == table.num_rows)


def _parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """Snappy; dictionaries only for strings and booleans: keys, times and partial states are
    mostly distinct numbers, where a dictionary costs write time and saves nothing."""
    return {"compression": "snappy", "use_dictionary": [
        f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_boolean(f.type)]}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stage_manifest(m: Manifest) -> Path:
    """``m`` as a synced temporary file in its directory, ready to be renamed into place."""
    return _write_tmp_json(m.directory, MANIFEST, {
        "version": 1, "files": list(m.files), "rows": m.rows, "start": m.start, "end": m.end,
        "unique_key_ts": m.unique_key_ts})


def _write_json(directory: Path, name: str, body: dict[str, Any]) -> None:
    """Write ``directory/name`` atomically: a temp file, fsync, rename."""
    os.replace(_write_tmp_json(directory, name, body), directory / name)


def _write_tmp_json(directory: Path, name: str, body: dict[str, Any]) -> Path:
    tmp = directory / f".tmp-{uuid.uuid4().hex}-{name}"
    with open(tmp, "w") as f:
        json.dump(body, f)
        f.flush()
        os.fsync(f.fileno())
    return tmp
