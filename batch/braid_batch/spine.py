"""Spines: entity rows generated from a view's source instead of supplied by the user.

A spine is every entity with at least one (valid, filtered, non-late) event in
``[start, end)``, at each step ``start, start + every, ...`` before ``end``, kept with
probability ``sample`` by a hash of (keys, step, seed): the same spec always gives the same
rows.

Example:
    >>> spec = SpineSpec("user_txn", start=t0, end=t1, every="1h", sample=0.1, seed=0)
    >>> get_historical_features(repo, spine=spec, features=["user_txn:amount_sum_1h"])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from braid.compile.algebra_sql import TS, col, lit
from braid.compile.dialect import DUCKDB
from braid.compile.duckdb import relation_for
from braid.definitions import FeatureView
from braid.errors import DefinitionError
from braid.repo import Repo
from braid.timeutil import parse_duration, to_epoch_ms
from braid_batch.pit_sql import ViewSQL
from braid_batch.sources import source_info

SPINE_TS = "event_timestamp"
_BUCKETS = 1_000_000


@dataclass(frozen=True)
class SpineSpec:
    """Which entities, over which time, how often, how many (see the module docstring)."""

    source_or_view: str | FeatureView
    start: Any
    end: Any
    every: str | int = "1h"
    sample: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.sample <= 1.0:
            raise DefinitionError(f"SpineSpec: sample must be in (0, 1], got {self.sample}")


def spine_entities(repo: Repo, con: duckdb.DuckDBPyConnection, spec: SpineSpec) -> pa.Table:
    """The spine's entity rows: keys and ``event_timestamp`` (timestamp[ms, UTC])."""
    name = spec.source_or_view if isinstance(spec.source_or_view, str) else spec.source_or_view.name
    plan = repo.plan(name)
    start, end = to_epoch_ms(spec.start, "spine start"), to_epoch_ms(spec.end, "spine end")
    every = parse_duration(spec.every, "spine every")
    if end <= start:
        raise DefinitionError(f"SpineSpec: end must be after start ({spec.start} .. {spec.end})")
    assert plan.batch_source is not None
    relation = relation_for(plan.batch_source, repo.config.resolve("."))
    view = ViewSQL(plan, None, relation, source_info(con, plan, relation, False, scan=False),  # type: ignore[arg-type]
                   start, end)
    keys = [col(k) for k in plan.key_names]
    active = exp.select(*keys).distinct().from_(view.events(start, end).subquery("ev"))
    steps = exp.Table(this=exp.GenerateSeries(start=lit(start), end=lit(end), step=lit(every),
                                              is_end_exclusive=True),
                      alias=exp.TableAlias(this=exp.to_identifier("s"),
                                           columns=[exp.to_identifier(TS)]))
    bucket = exp.Mod(this=exp.Anonymous(this="hash", expressions=[
        *[k.copy() for k in keys], col(TS), lit(spec.seed)]), expression=lit(_BUCKETS))
    stamp = exp.Anonymous(this="make_timestamptz", expressions=[
        exp.Mul(this=col(TS), expression=lit(1000))])
    sel = (exp.select(*[k.copy() for k in keys], exp.alias_(stamp, SPINE_TS, quoted=True))
           .from_(active.subquery("a")).join(steps, join_type="cross")
           .order_by(col(TS), *[k.copy() for k in keys]))
    if spec.sample < 1.0:
        sel = sel.where(exp.LT(this=bucket, expression=lit(int(spec.sample * _BUCKETS))))
    table = con.sql(DUCKDB.render(sel)).to_arrow_table()
    return table.cast(pa.schema([*[table.schema.field(k) for k in plan.key_names],
                                 pa.field(SPINE_TS, pa.timestamp("ms", tz="UTC"))]))
