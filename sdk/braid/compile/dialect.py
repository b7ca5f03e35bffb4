"""Dialects: a sqlglot dialect name plus capability flags the shared renderers branch on.

Shared code asks a flag ("can this engine take the max of a struct?"), never the engine's name
(STYLE: sqlglot's pattern).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    """How one engine renders the algebra.

    Attributes:
        sqlglot: the sqlglot dialect (name or class) that renders trees.
        struct_max: ``MAX`` over a struct/ROW compares lexicographically (DuckDB). Without it,
            ``last`` uses the braid UDAF named by ``latest_udaf``.
        welford_var_pop: the built-in ``VAR_POP`` is a Welford computation (DuckDB). Flink's is
            a sum of squares (STACK.md: 4587.5 instead of 1.007), so it uses ``welford_udaf``.
        exact_int_sum: the built-in ``SUM`` over BIGINT, cast back to BIGINT, is exact and
            fails on overflow (DuckDB sums BIGINT into a HUGEINT; the cast refuses a value
            outside int64). Flink's wraps around silently, so it uses ``int_sum_udaf``.
        filter_clause: supports ``agg(...) FILTER (WHERE ...)``.
        latest_udaf / welford_udaf / int_sum_udaf: names of braid UDAFs registered by the
            runtime.
    """

    name: str
    sqlglot: object
    struct_max: bool
    welford_var_pop: bool
    exact_int_sum: bool
    filter_clause: bool = True
    latest_udaf: str | None = None
    welford_udaf: str | None = None
    int_sum_udaf: str | None = None

    def render(self, tree: object) -> str:
        return tree.sql(dialect=self.sqlglot)  # type: ignore[attr-defined]


DUCKDB = Dialect(name="duckdb", sqlglot="duckdb", struct_max=True, welford_var_pop=True,
                 exact_int_sum=True)
