"""User SQL expressions: parsed with sqlglot, checked against braid's portable subset, typed.

Only constructs that mean the same thing in DuckDB and Flink are accepted (DESIGN §3, §4.3).
The result is a normalized sqlglot tree that every dialect renders:

* ``a / b`` always becomes ``CAST(a AS DOUBLE) / NULLIF(b, 0)``: DuckDB's ``/`` is float
  division while Flink's truncates integers, and a zero divisor gives NULL everywhere instead
  of an infinity (DuckDB) or an exception (Flink, integers).
* ``//`` (integer division) is refused: DuckDB truncates toward zero, which users rarely mean.
* ``CAST(<float> AS BIGINT)`` is refused unless the value is FLOOR/CEIL-ed first (DuckDB rounds,
  Flink truncates); casts from strings to numbers and from floats/bools to strings are refused
  (parse-failure behaviour and float formatting differ between engines).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from braid.dtypes import DType
from braid.errors import ExpressionError, close_matches

#: Scalar functions accepted in expressions, by sqlglot node class.
_NUMERIC_SAME = (exp.Abs, exp.Floor, exp.Ceil)
_STRING_SAME = (exp.Lower, exp.Upper)
ALLOWED_FUNCTIONS = ("ABS", "FLOOR", "CEIL", "LOWER", "UPPER", "COALESCE", "NULLIF", "IF")

_CAST_TARGETS: dict[object, DType] = {
    exp.DataType.Type.BIGINT: DType.INT64,
    exp.DataType.Type.INT: DType.INT64,
    exp.DataType.Type.DOUBLE: DType.FLOAT64,
    exp.DataType.Type.FLOAT: DType.FLOAT64,
    exp.DataType.Type.VARCHAR: DType.STRING,
    exp.DataType.Type.TEXT: DType.STRING,
    exp.DataType.Type.BOOLEAN: DType.BOOL,
}

_CANONICAL_TYPE: dict[DType, str] = {
    DType.INT64: "BIGINT",
    DType.FLOAT64: "DOUBLE",
    DType.STRING: "VARCHAR",
    DType.BOOL: "BOOLEAN",
    DType.TIMESTAMP: "BIGINT",
}

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


@dataclass(frozen=True)
class TypedExpr:
    """A checked expression: its source text, normalized tree, result type and input columns."""

    sql: str
    tree: exp.Expr
    dtype: DType | None  # None only for a bare NULL literal
    columns: frozenset[str]

    def render(self, dialect: str) -> str:
        """The expression in a sqlglot dialect (``"duckdb"`` or braid's ``Flink``)."""
        return self.tree.sql(dialect=dialect)


def cast_type(dtype: DType) -> exp.DataType:
    """The sqlglot type node braid uses for ``dtype`` (timestamps are epoch-ms BIGINT)."""
    return exp.DataType.build(_CANONICAL_TYPE[dtype])


def compile_expression(
    sql: str, schema: Mapping[str, DType], where: str, expect: DType | None = None
) -> TypedExpr:
    """Parse, check and type ``sql`` over ``schema``.

    Args:
        sql: the user's expression, e.g. ``"amount * 100 / total"``.
        schema: source column names and types.
        where: who owns it, for error messages, e.g. ``"view 'user_profile' feature 'x'"``.
        expect: the type the result must have (BOOL for filters), if any.

    Raises:
        ExpressionError: naming ``where``, the expression and the offending token.
    """
    if not isinstance(sql, str) or not sql.strip():
        raise ExpressionError(f"{where}: expression must be a non-empty SQL string")
    try:
        tree: exp.Expr = sqlglot.parse_one(sql, read="duckdb")
    except ParseError as e:
        raise ExpressionError(f"{where}: cannot parse {sql!r}: {_first_line(e)}") from e
    checker = _Checker(sql, schema, where)
    tree, dtype = checker.visit(tree)
    if expect is not None and dtype not in (expect, None):
        if not (expect == DType.FLOAT64 and dtype == DType.INT64):
            raise ExpressionError(
                f"{where}: expression {sql!r} has type {dtype}, expected {expect}"
            )
    return TypedExpr(sql=sql, tree=tree, dtype=dtype, columns=frozenset(checker.columns))


def _fname(node: exp.Expr) -> str:
    return node.sql(dialect="duckdb").split("(")[0].upper()


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class _Checker:
    def __init__(self, sql: str, schema: Mapping[str, DType], where: str) -> None:
        self.sql = sql
        self.schema = {k.lower(): (k, v) for k, v in schema.items()}
        self.where = where
        self.columns: set[str] = set()

    def fail(self, node: exp.Expr, why: str) -> ExpressionError:
        return ExpressionError(
            f"{self.where}: expression {self.sql!r}: {why} (at '{node.sql(dialect='duckdb')}')"
        )

    def visit(self, node: exp.Expr) -> tuple[exp.Expr, DType | None]:
        method = getattr(self, f"v_{type(node).__name__.lower()}", None)
        if method is not None:
            return method(node)
        if isinstance(node, _COMPARISONS):
            return self.comparison(node)
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Mod)):
            return self.arithmetic(node)
        if isinstance(node, _NUMERIC_SAME):
            return self.unary_function(node, numeric=True)
        if isinstance(node, _STRING_SAME):
            return self.unary_function(node, numeric=False)
        if isinstance(node, exp.AggFunc):
            raise self.fail(node, "aggregate functions belong in aggregations=, not in an expr")
        if isinstance(node, (exp.Func, exp.Anonymous)):
            name = _fname(node)
            raise self.fail(
                node,
                f"function {name} is not in braid's portable subset; allowed: "
                f"{', '.join(ALLOWED_FUNCTIONS)}, CAST, CASE, LIKE, ||",
            )
        raise self.fail(node, f"{type(node).__name__} is not in braid's portable subset")

    # leaves
    def v_column(self, node: exp.Column) -> tuple[exp.Expr, DType | None]:
        if node.table:
            raise self.fail(node, "qualified column names are not allowed; use the bare name")
        found = self.schema.get(node.name.lower())
        if found is None:
            originals = [k for k, _ in self.schema.values()]
            raise self.fail(
                node,
                f"unknown column '{node.name}'; source columns: {', '.join(originals)}."
                f"{close_matches(node.name, originals)}",
            )
        name, dtype = found
        self.columns.add(name)
        return exp.column(name, quoted=True), dtype

    def v_literal(self, node: exp.Literal) -> tuple[exp.Expr, DType | None]:
        if node.is_string:
            return node.copy(), DType.STRING
        text = node.this
        if any(c in text for c in ".eE"):
            return node.copy(), DType.FLOAT64
        return node.copy(), DType.INT64

    def v_boolean(self, node: exp.Boolean) -> tuple[exp.Expr, DType | None]:
        return node.copy(), DType.BOOL

    def v_null(self, node: exp.Null) -> tuple[exp.Expr, DType | None]:
        return node.copy(), None

    def v_paren(self, node: exp.Paren) -> tuple[exp.Expr, DType | None]:
        inner, dtype = self.visit(node.this)
        return exp.Paren(this=inner), dtype

    def v_neg(self, node: exp.Neg) -> tuple[exp.Expr, DType | None]:
        inner, dtype = self.visit(node.this)
        self.need_numeric(node, dtype)
        return exp.Neg(this=inner), dtype

    # operators
    def need_numeric(self, node: exp.Expr, *types: DType | None) -> None:
        for t in types:
            if t is not None and not t.is_numeric:
                raise self.fail(node, f"arithmetic needs numbers, got {t}")

    def arithmetic(self, node: exp.Expr) -> tuple[exp.Expr, DType | None]:
        left, lt = self.visit(node.this)
        right, rt = self.visit(node.expression)
        self.need_numeric(node, lt, rt)
        out = DType.INT64 if DType.FLOAT64 not in (lt, rt) else DType.FLOAT64
        return type(node)(this=left, expression=right), out

    def v_div(self, node: exp.Div) -> tuple[exp.Expr, DType | None]:
        left, lt = self.visit(node.this)
        right, rt = self.visit(node.expression)
        self.need_numeric(node, lt, rt)
        num = exp.Cast(this=left, to=cast_type(DType.FLOAT64))
        den = exp.Nullif(this=right, expression=exp.Literal.number(0))
        return exp.Div(this=num, expression=den), DType.FLOAT64

    def v_intdiv(self, node: exp.Expr) -> tuple[exp.Expr, DType | None]:
        raise self.fail(
            node, "integer division '//' differs between engines; write FLOOR(a / b) instead"
        )

    def comparison(self, node: exp.Expr) -> tuple[exp.Expr, DType | None]:
        left, lt = self.visit(node.this)
        right, rt = self.visit(node.expression)
        self.need_comparable(node, lt, rt)
        return type(node)(this=left, expression=right), DType.BOOL

    def need_comparable(self, node: exp.Expr, *types: DType | None) -> None:
        kinds = {("number" if t.is_numeric else t.value) for t in types if t is not None}
        if len(kinds) > 1:
            raise self.fail(node, f"cannot compare {' with '.join(sorted(kinds))}")

    def need_bool(self, node: exp.Expr, dtype: DType | None) -> None:
        if dtype not in (DType.BOOL, None):
            raise self.fail(node, f"expected a boolean condition, got {dtype}")

    def v_and(self, node: exp.And) -> tuple[exp.Expr, DType | None]:
        return self.logical(node)

    def v_or(self, node: exp.Or) -> tuple[exp.Expr, DType | None]:
        return self.logical(node)

    def logical(self, node: exp.Expr) -> tuple[exp.Expr, DType | None]:
        left, lt = self.visit(node.this)
        right, rt = self.visit(node.expression)
        self.need_bool(node, lt)
        self.need_bool(node, rt)
        return type(node)(this=left, expression=right), DType.BOOL

    def v_not(self, node: exp.Not) -> tuple[exp.Expr, DType | None]:
        inner, dtype = self.visit(node.this)
        self.need_bool(node, dtype)
        return exp.Not(this=inner), DType.BOOL

    def v_is(self, node: exp.Is) -> tuple[exp.Expr, DType | None]:
        left, _ = self.visit(node.this)
        if not isinstance(node.expression, exp.Null):
            raise self.fail(node, "only IS NULL / IS NOT NULL are supported")
        return exp.Is(this=left, expression=exp.Null()), DType.BOOL

    def v_in(self, node: exp.In) -> tuple[exp.Expr, DType | None]:
        if node.args.get("query") or node.args.get("unnest"):
            raise self.fail(node, "IN takes a list of literals, not a subquery")
        left, lt = self.visit(node.this)
        items = []
        for item in node.expressions:
            if not isinstance(item, (exp.Literal, exp.Boolean, exp.Neg)):
                raise self.fail(item, "IN takes a list of literals")
            rendered, it = self.visit(item)
            self.need_comparable(node, lt, it)
            items.append(rendered)
        return exp.In(this=left, expressions=items), DType.BOOL

    def v_between(self, node: exp.Between) -> tuple[exp.Expr, DType | None]:
        this, t = self.visit(node.this)
        low, lt = self.visit(node.args["low"])
        high, ht = self.visit(node.args["high"])
        self.need_comparable(node, t, lt, ht)
        return exp.Between(this=this, low=low, high=high), DType.BOOL

    def v_like(self, node: exp.Like) -> tuple[exp.Expr, DType | None]:
        left, lt = self.visit(node.this)
        right, rt = self.visit(node.expression)
        if lt not in (DType.STRING, None) or rt not in (DType.STRING, None):
            raise self.fail(node, "LIKE needs strings")
        return exp.Like(this=left, expression=right), DType.BOOL

    def v_dpipe(self, node: exp.DPipe) -> tuple[exp.Expr, DType | None]:
        left, lt = self.visit(node.this)
        right, rt = self.visit(node.expression)
        if lt not in (DType.STRING, None) or rt not in (DType.STRING, None):
            raise self.fail(node, "|| concatenates strings; CAST integers to VARCHAR first")
        return exp.DPipe(this=left, expression=right), DType.STRING

    # conditionals
    def unify(self, node: exp.Expr, types: list[DType | None]) -> DType | None:
        known = {t for t in types if t is not None}
        if not known:
            return None
        if known <= {DType.INT64, DType.FLOAT64}:
            return DType.FLOAT64 if DType.FLOAT64 in known else DType.INT64
        if len(known) > 1:
            raise self.fail(node, f"branches have different types: {sorted(known)}")
        return known.pop()

    def v_case(self, node: exp.Case) -> tuple[exp.Expr, DType | None]:
        if node.this is not None:
            raise self.fail(node, "write CASE WHEN <condition> THEN ... (simple CASE x WHEN ...)")
        ifs, types = [], []
        for branch in node.args.get("ifs") or []:
            cond, ct = self.visit(branch.this)
            self.need_bool(branch, ct)
            value, vt = self.visit(branch.args["true"])
            ifs.append(exp.If(this=cond, true=value))
            types.append(vt)
        default = None
        if node.args.get("default") is not None:
            default, dt_ = self.visit(node.args["default"])
            types.append(dt_)
        return exp.Case(ifs=ifs, default=default), self.unify(node, types)

    def v_if(self, node: exp.If) -> tuple[exp.Expr, DType | None]:
        cond, ct = self.visit(node.this)
        self.need_bool(node, ct)
        value, vt = self.visit(node.args["true"])
        types = [vt]
        default = None
        if node.args.get("false") is not None:
            default, ft = self.visit(node.args["false"])
            types.append(ft)
        # rendered as CASE everywhere: one shape for every dialect
        return exp.Case(ifs=[exp.If(this=cond, true=value)], default=default), self.unify(
            node, types
        )

    def v_coalesce(self, node: exp.Coalesce) -> tuple[exp.Expr, DType | None]:
        args = [node.this, *node.expressions]
        visited = [self.visit(a) for a in args]
        dtype = self.unify(node, [t for _, t in visited])
        trees = [t for t, _ in visited]
        return exp.Coalesce(this=trees[0], expressions=trees[1:]), dtype

    def v_nullif(self, node: exp.Nullif) -> tuple[exp.Expr, DType | None]:
        left, lt = self.visit(node.this)
        right, rt = self.visit(node.expression)
        self.need_comparable(node, lt, rt)
        return exp.Nullif(this=left, expression=right), lt

    def unary_function(
        self, node: exp.Expr, numeric: bool
    ) -> tuple[exp.Expr, DType | None]:
        if node.args.get("decimals") or node.args.get("to") or len(node.expressions) > 0:
            raise self.fail(node, f"{_fname(node)} takes one argument")
        inner, dtype = self.visit(node.this)
        if numeric:
            self.need_numeric(node, dtype)
        elif dtype not in (DType.STRING, None):
            raise self.fail(node, f"{_fname(node)} needs a string, got {dtype}")
        return type(node)(this=inner), dtype

    def v_cast(self, node: exp.Cast) -> tuple[exp.Expr, DType | None]:
        inner, src = self.visit(node.this)
        target = _CAST_TARGETS.get(node.to.this)
        if target is None:
            raise self.fail(
                node, f"CAST to {node.to.sql()} is not supported; use BIGINT, DOUBLE, VARCHAR "
                "or BOOLEAN"
            )
        if src == DType.FLOAT64 and target == DType.INT64 and not isinstance(
            node.this, (exp.Floor, exp.Ceil)
        ):
            raise self.fail(
                node, "CAST of a float to BIGINT rounds in DuckDB and truncates in Flink; "
                "write CAST(FLOOR(x) AS BIGINT) or CAST(CEIL(x) AS BIGINT)"
            )
        if src == DType.STRING and target in (DType.INT64, DType.FLOAT64, DType.BOOL):
            raise self.fail(
                node, "casting strings to numbers or booleans fails differently per engine; "
                "declare the column with the right type in the source schema"
            )
        if target == DType.STRING and src in (DType.FLOAT64, DType.BOOL):
            raise self.fail(node, f"engines format {src} as text differently; keep it {src}")
        return exp.Cast(this=inner, to=cast_type(target)), target
