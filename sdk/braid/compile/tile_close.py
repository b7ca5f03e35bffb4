"""The value of windowed features at tile closes, as one SQL query (DESIGN §4.2, §9).

The value at the close of tile k of hop h (time ``(k+1)*h - 1``) is the finalized merge of
the window's tiles ``k-W/h+1 .. k``. Both statistics paths run this query with the algebra
renderers of :mod:`braid.compile.algebra_sql`: batch over the offline tiles
(:func:`braid_batch.stats.tile_close_query`), the stream over the online store's tiles plus
a micro-batch's deltas (:mod:`braid.stats.stream_tiles`), so both compute the same values
the same way.

Example:
    >>> sql = DUCKDB.render(tile_close_select(plan, hop, window, group, tiles, closes, keys))
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from braid.algebra import Merge
from braid.compile import algebra_sql as A
from braid.compile.dialect import DUCKDB
from braid.compile.duckdb import TILE_START
from braid.plan import AggregationPlan

#: The output column holding the tile_start of the closing tile.
CLOSE = "__close"


def tile_close_select(hop: int, window: int, group: Sequence[AggregationPlan],
                      tiles: exp.Select, closes: exp.Select, keys: Sequence[str]) -> exp.Select:
    """Each group feature's value at every close.

    Args:
        hop, window: the group's hop and window (ms).
        group: aggregations sharing them.
        tiles: rows of ``keys``, ``tile_start`` and the group's partial columns; several rows
            of one (key, tile) are merged like separate tiles (the merge is associative).
        closes: distinct rows of ``keys`` and ``tile_start``: the closing tiles.
        keys: the columns identifying an entity.

    Returns:
        Rows of ``keys``, ``__close`` (the closing tile's start) and one column per feature.
    """

    def q(alias: str, name: str) -> exp.Column:
        return exp.column(name, table=alias, quoted=True)

    on: exp.Expr = exp.and_(
        *[exp.EQ(this=q("c", k), expression=q("t", k)) for k in keys],
        exp.GT(this=q("t", TILE_START),
               expression=exp.Sub(this=q("c", TILE_START), expression=A.lit(window))),
        exp.LTE(this=q("t", TILE_START), expression=q("c", TILE_START)),
    )
    partials = list(dict.fromkeys(g.partial for g in group))
    inner_cols: list[exp.Expr] = [exp.alias_(q("c", k), k, quoted=True) for k in keys]
    inner_cols.append(exp.alias_(q("c", TILE_START), CLOSE, quoted=True))
    for p in partials:
        inner_cols += [exp.alias_(q("t", c), c, quoted=True) for c in p.columns]
    group_by = [A.col(k) for k in keys] + [A.col(CLOSE)]
    joined = exp.select(*inner_cols).from_(closes.subquery("c")).join(
        tiles.subquery("t"), on=on, join_type="inner")
    # the CHAN merge needs each group's merged mean first: grouped, then joined back (a
    # window over the joined rows gives the same means but sorts them, twice as slow)
    means = {i: f"__gm{i}" for i, p in enumerate(partials) if p.spec.merge == Merge.CHAN}
    if means:
        names = [*keys, CLOSE]
        grouped = exp.select(*[A.col(k) for k in names], *[
            exp.alias_(A.chan_grouped_mean(partials[i]), m, quoted=True)
            for i, m in means.items()]).from_("j").group_by(*[A.col(k) for k in names])
        middle = (exp.select(exp.Star()).from_("j")
                  .join(grouped.subquery("g"), using=[exp.to_identifier(k, quoted=True)
                                                      for k in names], join_type="inner")
                  .with_("j", as_=joined))
    else:
        middle = exp.select(exp.Star()).from_(joined.subquery("j"))
    outer: list[exp.Expr] = [*[A.col(k) for k in keys], A.col(CLOSE)]
    for g in group:
        i = partials.index(g.partial)
        gm = A.col(means[i]) if i in means else None
        fields = A.merge(g.partial, DUCKDB, group_mean=gm)
        outer.append(exp.alias_(A.finalize(g, fields), g.name, quoted=True))
    return exp.select(*outer).from_(middle.subquery("m")).group_by(*group_by)
