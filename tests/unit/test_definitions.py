"""Definitions are validated at construction; each bad definition gets a precise error."""

from __future__ import annotations

import datetime as dt

import pytest

from braid import (
    Aggregation,
    BatchSource,
    DefinitionError,
    Entity,
    ExpressionError,
    Feature,
    FeatureService,
    FeatureView,
    StreamSource,
    UnknownFeatureError,
)

SCHEMA = {"user_id": "int64", "amount": "float64", "n": "int64", "country": "string",
          "ts": "timestamp"}
user = Entity(name="user", join_keys={"user_id": "int64"})
src = BatchSource(name="tx", path="data/tx/*.parquet", timestamp_field="ts", schema=SCHEMA)


def view(**kw: object) -> FeatureView:
    base: dict[str, object] = dict(name="v", entities=[user], source=src)
    base.update(kw)
    return FeatureView(**base)  # type: ignore[arg-type]


def test_default_names_keep_the_window_as_written() -> None:
    v = view(aggregations=[Aggregation(column="amount", function="sum", window="24h"),
                           Aggregation(function="count", window="7d"),
                           Aggregation(column="amount", function="mean",
                                       window=dt.timedelta(hours=1))])
    assert v.feature_names == ["amount_sum_24h", "count_7d", "amount_mean_1h"]
    assert [a.effective_hop for a in v.aggregations] == [3_600_000, 86_400_000, 300_000]


def test_definitions_are_frozen() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        user.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("kwargs, message", [
    (dict(features=[Feature(name="x", dtype="float64", expr="amonut * 2")]),
     "unknown column 'amonut'.*Did you mean: amount"),
    (dict(features=[Feature(name="x", dtype="float64", expr="date_trunc('day', ts)")]),
     "function DATE_TRUNC is not in braid's portable subset"),
    (dict(features=[Feature(name="x", dtype="int64", expr="n // 2")]),
     "integer division '//' differs between engines"),
    (dict(features=[Feature(name="x", dtype="int64", expr="CAST(amount AS BIGINT)")]),
     "rounds in DuckDB and truncates in Flink"),
    (dict(features=[Feature(name="x", dtype="string", expr="CAST(amount AS VARCHAR)")]),
     "format float64 as text differently"),
    (dict(features=[Feature(name="x", dtype="float64", expr="sum(amount)")]),
     "aggregate functions belong in aggregations="),
    (dict(features=[Feature(name="x", dtype="float64", expr="country + 1")]),
     "arithmetic needs numbers"),
    (dict(features=[Feature(name="x", dtype="int64", expr="amount")]),
     "declared int64 but 'amount' is float64"),
    (dict(filter="amount", features=[Feature(name="amount", dtype="float64")]),
     "has type float64, expected bool"),
    (dict(features=[Feature(name="amount", dtype="float64")],
          aggregations=[Aggregation(column="amount", function="last", window="1h",
                                    name="amount")]),
     "duplicate name 'amount'"),
    (dict(aggregations=[Aggregation(column="country", function="sum", window="1h")]),
     "sum needs a number"),
    (dict(), "needs features= or aggregations="),
])
def test_bad_views_name_the_problem(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DefinitionError, match=message) as info:
        view(**kwargs)
    assert "FeatureView 'v'" in str(info.value)


def test_expression_errors_are_expression_errors() -> None:
    from braid.dtypes import DType
    from braid.expr import compile_expression

    with pytest.raises(ExpressionError, match=r"at 'DATE_TRUNC"):
        compile_expression("date_trunc('day', ts)", {"ts": DType.TIMESTAMP}, "view 'v'")


def test_entity_key_type_mismatch() -> None:
    other = Entity(name="user", join_keys={"user_id": "string"})
    with pytest.raises(DefinitionError, match="entity key 'user_id' is string in the entity "
                                              "but int64 in source 'tx'"):
        view(entities=[other], features=[Feature(name="amount", dtype="float64")])


def test_entity_key_missing_from_source() -> None:
    other = Entity(name="shop", join_keys={"shop_id": "int64"})
    with pytest.raises(DefinitionError, match="entity key 'shop_id' is not a column"):
        view(entities=[other], features=[Feature(name="amount", dtype="float64")])


@pytest.mark.parametrize("kwargs, message", [
    (dict(window="1h", hop="7m"), "hop 7m does not divide window 1h"),
    (dict(window="5000h"), "no default hop.*pass hop= explicitly"),
    (dict(window="1 fortnight"), "cannot read '1 fortnight'"),
    (dict(window="1h", function="median"), "Input should be 'count'"),
    (dict(window="1h", column=None), "sum needs column= or expr="),
])
def test_bad_aggregations(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = dict(column="amount", function="sum")
    args.update(kwargs)
    with pytest.raises(DefinitionError, match=message):
        Aggregation(**args)  # type: ignore[arg-type]


def test_explicit_hop_must_divide_and_default_hop_rule() -> None:
    assert Aggregation(function="count", window="10m").effective_hop == 60_000
    assert Aggregation(function="count", window="1h").effective_hop == 300_000
    assert Aggregation(function="count", window="24h").effective_hop == 3_600_000
    assert Aggregation(function="count", window="7d").effective_hop == 86_400_000
    assert Aggregation(function="count", window="30d", hop="1d").effective_hop == 86_400_000


def test_sources_need_exactly_one_location_and_known_time_fields() -> None:
    with pytest.raises(DefinitionError, match="exactly one of path="):
        BatchSource(name="s", timestamp_field="ts")
    with pytest.raises(DefinitionError, match="time field 'when' is not in the schema"):
        BatchSource(name="s", path="x", timestamp_field="when", schema=SCHEMA)
    with pytest.raises(DefinitionError, match="must be timestamp"):
        BatchSource(name="s", path="x", timestamp_field="country", schema=SCHEMA)
    with pytest.raises(DefinitionError, match="lower_snake_case"):
        Entity(name="User", join_keys={"user_id": "int64"})
    with pytest.raises(DefinitionError, match="unknown type 'decimal'"):
        StreamSource(name="s", topic="t", timestamp_field="ts",
                     schema={"ts": "timestamp", "x": "decimal"})


def test_service_references_resolve_with_close_matches() -> None:
    v = view(aggregations=[Aggregation(column="amount", function="sum", window="1h")])
    svc = FeatureService(name="svc", features=[v[["amount_sum_1h"]], "v:amount_sum_1h"])
    assert svc.references({"v": v}) == ["v:amount_sum_1h"]
    with pytest.raises(UnknownFeatureError, match="Did you mean: amount_sum_1h"):
        FeatureService(name="s2", features=["v:amount_sum_1"]).references({"v": v})
    with pytest.raises(UnknownFeatureError, match="unknown feature view 'w'"):
        FeatureService(name="s3", features=["w:x"]).references({"v": v})
    with pytest.raises(UnknownFeatureError, match="has no feature 'nope'"):
        v[["nope"]]
