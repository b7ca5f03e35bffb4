"""Flink SQL for sqlglot, and braid's FLINK :class:`~braid.compile.dialect.Dialect`.

sqlglot has no Flink dialect; like ibis, braid subclasses Hive (backtick identifiers, STRING,
BIGINT, DOUBLE, BOOLEAN) and overrides what Flink does differently. Only what braid renders
has to be right; every construct ``braid.expr`` accepts is covered by
``tests/unit/test_flink_compile.py``. Measured on PyFlink 2.0.0:

* String literals follow the SQL standard: ``'it''s'``; a backslash is an ordinary character
  (Hive escapes with backslashes, which Flink would read literally).
* ``MOD(a, b)`` instead of ``a % b`` (Calcite's default conformance refuses ``%``); Java
  semantics, so ``MOD(-1500, 1000) = -500`` and tile arithmetic uses ``pmod`` (DESIGN §4.0).
* ``TRY_CAST`` exists (Hive would render a plain ``CAST``), ``REGEXP(s, pattern)`` is the
  regular expression match (Hive: ``RLIKE``).
* ``JSON_VALUE(... RETURNING DOUBLE|INTEGER|BOOLEAN NULL ON ERROR)`` throws a
  ClassCastException at run time on the wrong JSON type (BIGINT is refused at plan time), so
  braid never uses RETURNING: :class:`JsonQueryWrapped` shows the JSON text of a value, whose
  shape gives its JSON type, and the value is cast from the string ``JSON_VALUE`` returns.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp
from sqlglot.dialects.hive import Hive

from braid.compile.dialect import Dialect
from braid.dtypes import DType


class JsonQueryWrapped(exp.Expression, exp.Func):
    """``JSON_QUERY(this, path WITH ARRAY WRAPPER NULL ON ERROR)``: the JSON text of the value
    at ``path`` wrapped in ``[...]`` (``[1]``, ``["s"]``, ``[true]``), NULL if absent or null."""

    arg_types = {"this": True, "path": True}


class IsJsonObject(exp.Expression, exp.Func):
    """``this IS JSON OBJECT``: the payload parses and is a JSON object."""

    arg_types = {"this": True}


def _json_query(gen: Any, e: JsonQueryWrapped) -> str:
    return f"JSON_QUERY({gen.sql(e, 'this')}, {gen.sql(e, 'path')} WITH ARRAY WRAPPER NULL ON ERROR)"


def _is_json(gen: Any, e: IsJsonObject) -> str:
    return f"{gen.sql(e, 'this')} IS JSON OBJECT"


class Flink(Hive):
    """The sqlglot dialect of Flink SQL (as far as braid renders it)."""

    STRINGS_SUPPORT_ESCAPED_SEQUENCES = False

    class Tokenizer(Hive.Tokenizer):
        STRING_ESCAPES = ["'"]

    class Generator(Hive.Generator):  # type: ignore[misc,valid-type]
        TRANSFORMS: dict[type, object] = {
            **Hive.Generator.TRANSFORMS,
            exp.Mod: lambda self, e: self.func("MOD", e.this, e.expression),
            exp.TryCast: lambda self, e: f"TRY_CAST({self.sql(e, 'this')} AS {self.sql(e, 'to')})",
            exp.RegexpLike: lambda self, e: self.func("REGEXP", e.this, e.expression),
            exp.DPipe: lambda self, e: self.binary(e, "||"),
            JsonQueryWrapped: _json_query,
            IsJsonObject: _is_json,
        }


#: braid's UDAF names in Flink (Java classes in ``braid_streaming/flink/java``).
LATEST_UDAF = "braid_latest"
WELFORD_UDAF = "braid_welford"
INT_SUM_UDAF = "braid_exact_sum"
#: braid's scalar UDFs reading an event time like the embedded runner: epoch ms, or the
#: dead-letter reason (``wrong_type``, ``naive_timestamp``).
EVENT_TIME_UDF = "braid_event_time"
EVENT_TIME_ERROR_UDF = "braid_event_time_error"

#: Flink renders with braid UDAFs for ``last`` (LAST_VALUE is arrival order), var/stddev
#: (VAR_POP is a sum of squares) and integer sums (SUM(BIGINT) wraps around on overflow, where
#: DESIGN §4.3 makes overflow an error), see STACK.md.
FLINK = Dialect(
    name="flink", sqlglot=Flink, struct_max=False, welford_var_pop=False, exact_int_sum=False,
    filter_clause=True, latest_udaf=LATEST_UDAF, welford_udaf=WELFORD_UDAF,
    int_sum_udaf=INT_SUM_UDAF,
)

#: Flink SQL column types of braid's dtypes (timestamps are epoch-ms BIGINT, DESIGN §4.0).
FLINK_TYPES: dict[DType, str] = {
    DType.INT64: "BIGINT",
    DType.FLOAT64: "DOUBLE",
    DType.STRING: "STRING",
    DType.BOOL: "BOOLEAN",
    DType.TIMESTAMP: "BIGINT",
}


def render(tree: exp.Expr) -> str:
    """``tree`` as Flink SQL."""
    return tree.sql(dialect=Flink)


def ident(name: str) -> str:
    """A quoted Flink identifier: ``amount`` -> ```amount```, backticks doubled."""
    return render(exp.to_identifier(name, quoted=True))


def string(value: str) -> str:
    """A Flink string literal, quotes doubled."""
    return render(exp.Literal.string(value))
