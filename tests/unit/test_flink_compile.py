"""The Flink dialect and compiler, as text: every construct braid's expressions accept renders
as Flink SQL, and the compiled job has the shape of DESIGN §7 "Flink".

Flink itself parses and plans the output in tests/integration/test_flink_explain.py.
"""

from __future__ import annotations

import re

import pytest

from braid.compile import algebra_sql as A
from braid.compile.dialect import DUCKDB
from braid.compile.flink import FlinkCompiler, FlinkJob, tiles_topic
from braid.compile.flink_dialect import FLINK, ident, string
from braid.compile.flink_source import Startup
from braid.definitions import Aggregation, BatchSource, Entity, Feature, FeatureView, StreamSource
from braid.dtypes import DType
from braid.errors import DefinitionError
from braid.expr import compile_expression
from braid.plan import ViewPlan, lower
from braid.timeutil import HOUR, MINUTE

SCHEMA = {"user_id": DType.INT64, "ts": DType.INT64, "amount": DType.FLOAT64,
          "qty": DType.INT64, "country": DType.STRING, "flagged": DType.BOOL}


def plans() -> list[ViewPlan]:
    user = Entity(name="user", join_keys={"user_id": "int64"})
    src = StreamSource(name="transactions", topic="transactions", timestamp_field="ts",
                       schema=dict(SCHEMA), allowed_lateness="10m")
    aggs = [Aggregation(function="count", window="1h"),
            Aggregation(column="amount", function="mean", window="1h"),
            Aggregation(column="amount", function="var", window="1d"),
            Aggregation(column="country", function="last", window="1d"),
            Aggregation(expr="CASE WHEN flagged THEN 1 ELSE 0 END", name="flags_1h",
                        function="sum", window="1h")]
    agg_view = FeatureView(name="user_txn", entities=[user], source=src,
                           filter="country <> 'it''s' AND amount >= 0", aggregations=aggs)
    proj_view = FeatureView(name="user_last", entities=[user], source=src,
                            features=[Feature(name="amount", dtype="float64")])
    batch = BatchSource(name="orders", path="data/*.parquet", timestamp_field="ts",
                        schema=dict(SCHEMA))
    batch_view = FeatureView(name="user_orders", entities=[user], source=batch,
                             aggregations=[Aggregation(function="count", window="1h")])
    return [lower(v, "fraud") for v in (agg_view, proj_view, batch_view)]


def flink(sql: str) -> str:
    return compile_expression(sql, SCHEMA, "test").tree.sql(dialect=FLINK.sqlglot)


@pytest.mark.parametrize(("user_sql", "expected"), [
    ("amount * 2 + qty - 1", "`amount` * 2 + `qty` - 1"),
    ("amount / qty", "CAST(`amount` AS DOUBLE) / NULLIF(`qty`, 0)"),
    ("qty % 7", "MOD(`qty`, 7)"),
    ("-amount", "-`amount`"),
    ("CASE WHEN qty > 1 THEN 'many' ELSE 'one' END",
     "CASE WHEN `qty` > 1 THEN 'many' ELSE 'one' END"),
    ("IF(flagged, 1, 0)", "CASE WHEN `flagged` THEN 1 ELSE 0 END"),
    ("COALESCE(amount, 0.5)", "COALESCE(`amount`, 0.5)"),
    ("NULLIF(qty, 0)", "NULLIF(`qty`, 0)"),
    ("country LIKE 'F%'", "`country` LIKE 'F%'"),
    ("country || '-' || LOWER(country)", "`country` || '-' || LOWER(`country`)"),
    ("qty IN (1, 2, -3)", "`qty` IN (1, 2, -3)"),
    ("amount BETWEEN 1 AND 2.5", "`amount` BETWEEN 1 AND 2.5"),
    ("amount IS NULL", "`amount` IS NULL"),
    ("amount IS NOT NULL AND NOT flagged", "NOT `amount` IS NULL AND NOT `flagged`"),
    ("ABS(amount) + FLOOR(amount) + CEIL(amount)",
     "ABS(`amount`) + FLOOR(`amount`) + CEIL(`amount`)"),
    ("UPPER(country) = 'FR' OR qty <> 2", "UPPER(`country`) = 'FR' OR `qty` <> 2"),
    ("CAST(qty AS VARCHAR)", "CAST(`qty` AS STRING)"),
    ("CAST(FLOOR(amount) AS BIGINT)", "CAST(FLOOR(`amount`) AS BIGINT)"),
    ("CAST(qty AS DOUBLE) > 1", "CAST(`qty` AS DOUBLE) > 1"),
    ("CAST(flagged AS BOOLEAN)", "CAST(`flagged` AS BOOLEAN)"),
    ("country = 'it''s a \\ path'", "`country` = 'it''s a \\ path'"),
])
def test_every_expression_construct_renders_as_flink_sql(user_sql: str, expected: str) -> None:
    assert flink(user_sql) == expected


def test_identifiers_and_strings_are_escaped_the_flink_way() -> None:
    assert ident("we`ird") == "`we``ird`"
    assert string("a'b\\c") == "'a''b\\c'"  # no backslash escapes in Flink


def test_flink_dialect_flags_select_the_udafs() -> None:
    assert not FLINK.struct_max and not FLINK.welford_var_pop and not FLINK.exact_int_sum
    assert FLINK.latest_udaf == "braid_latest" and FLINK.welford_udaf == "braid_welford"
    assert FLINK.int_sum_udaf == "braid_exact_sum"
    assert DUCKDB.exact_int_sum and DUCKDB.int_sum_udaf is None


def _sums_plan() -> ViewPlan:
    user = Entity(name="user", join_keys={"user_id": "int64"})
    src = StreamSource(name="transactions", topic="transactions", timestamp_field="ts",
                       schema=dict(SCHEMA))
    return lower(FeatureView(name="sums", entities=[user], source=src, aggregations=[
        Aggregation(column="qty", function="sum", window="1h"),
        Aggregation(column="amount", function="sum", window="1h"),
        Aggregation(column="qty", function="mean", window="1h"),
    ]), "fraud")


def test_integer_sums_use_the_exact_sum_udaf_and_float_sums_the_builtin() -> None:
    """DESIGN §4.3: Flink's SUM(BIGINT) wraps around on overflow; braid_exact_sum refuses it."""
    plan = _sums_plan()
    parts = {p.columns[0]: p for p in plan.partials}
    assert parts["qty__sum__s"].input_type == DType.INT64
    render = FLINK.render
    assert [render(e) for e in A.build(parts["qty__sum__s"], FLINK)] == \
        ["BRAID_EXACT_SUM(`qty`)"]
    assert [render(e) for e in A.build(parts["amount__sum__s"], FLINK)] == \
        ["CAST(SUM(`amount`) AS DOUBLE)"]
    # a float sum of integers (mean) stays the built-in SUM; only its count is an integer
    assert [render(e) for e in A.build(parts["qty__mean__s"], FLINK)] == \
        ["SUM(CAST(`qty` AS DOUBLE))", "NULLIF(COUNT(`qty`), 0)"]
    # integer fields merged in Flink go through the UDAF too (the mean's n, a sum's s)
    assert [render(e) for e in A.merge(parts["qty__mean__s"], FLINK)] == \
        ["CAST(SUM(`qty__mean__s`) AS DOUBLE)", "BRAID_EXACT_SUM(`qty__mean__n`)"]
    # DuckDB keeps its built-in: SUM(BIGINT) is a HUGEINT, the cast refuses an overflow
    assert [DUCKDB.render(e) for e in A.build(parts["qty__sum__s"], DUCKDB)] == \
        ["CAST(SUM(\"qty\") AS BIGINT)"]

    job = FlinkCompiler("fraud", [plan], "broker:9092").compile()
    (tiles,) = job.inserts[1:]
    assert "BRAID_EXACT_SUM(`qty`) AS `qty__sum__s`" in tiles
    assert "CAST(SUM(`amount`) AS DOUBLE) AS `amount__sum__s`" in tiles
    # the built-in SUMs left add doubles: the float column, and the mean's qty cast to DOUBLE
    assert re.findall(r"(?<![A-Z_])SUM\((.*?) AS", tiles) == ["`amount`)", "CAST(`qty`"]
    assert ("CREATE TEMPORARY FUNCTION IF NOT EXISTS `braid_exact_sum` AS "
            "'dev.braid.flink.ExactSum' LANGUAGE JAVA") in job.functions


@pytest.fixture
def job() -> FlinkJob:
    return FlinkCompiler("fraud", plans(), "broker:9092",
                         cutoffs={("user_txn", 5 * MINUTE): 1_700_000_100_000}).compile()


def test_job_settings(job: FlinkJob) -> None:
    s = job.settings
    assert s["table.local-time-zone"] == "UTC"
    assert s["table.exec.mini-batch.enabled"] == "true"
    assert s["execution.checkpointing.interval"] == "1000 ms"
    # TTL >= largest hop (1h) + lateness (10m) + margin (1d)
    assert s["table.exec.state.ttl"] == f"{HOUR + 10 * MINUTE + 24 * HOUR} ms"


def test_one_statement_set_with_dlq_and_one_insert_per_hop(job: FlinkJob) -> None:
    text = job.text()
    assert text.count("EXECUTE STATEMENT SET BEGIN") == 1
    assert len(job.inserts) == 3  # dead letters + hops 5m and 1h of user_txn
    assert job.inserts[0].startswith("INSERT INTO `braid_dlq__fraud`")
    assert "'topic' = 'braid.fraud.dlq'" in text
    assert "'late' AS `reason`" in job.inserts[0]


def test_skipped_views_are_noted(job: FlinkJob) -> None:
    text = job.text()
    assert "-- skipped view user_last: projections only" in text
    assert "-- skipped view user_orders: batch source 'orders'" in text
    assert "braid_tiles__user_last" not in text and "braid_tiles__user_orders" not in text


def test_source_is_raw_with_kafka_metadata_and_starts_at_cutoff_minus_lateness(job: FlinkJob) -> None:
    src = next(t for t in job.tables if "braid_src__transactions" in t)
    assert "'format' = 'raw'" in src
    for meta in ("'partition'", "'offset'", "'timestamp'"):
        assert f"METADATA FROM {meta}" in src
    assert "AS PROCTIME()" in src
    assert "'scan.startup.mode' = 'timestamp'" in src
    assert f"'scan.startup.timestamp-millis' = '{1_700_000_100_000 - 10 * MINUTE}'" in src
    assert "scan.bounded.mode" not in src


def test_startup_modes() -> None:
    assert Startup("specific-offsets", offsets={1: 7, 0: 3}).options() == {
        "scan.startup.mode": "specific-offsets",
        "scan.startup.specific-offsets": "partition:0,offset:3;partition:1,offset:7"}
    with pytest.raises(DefinitionError):
        Startup("timestamp").options()
    bounded = FlinkCompiler("fraud", plans(), "b:1", bounded=True).compile()
    assert "'scan.bounded.mode' = 'latest-offset'" in bounded.text()
    assert "'scan.startup.mode' = 'earliest-offset'" in bounded.text()


def test_validation_reads_json_text_never_returning(job: FlinkJob) -> None:
    typed = next(v for v in job.views if "`transactions__typed`" in v)
    assert "RETURNING" not in job.text()  # ClassCastException on PyFlink 2.0.0
    for reason in ("malformed_json", "missing_field", "wrong_type", "non_finite", "future"):
        assert f"'{reason}'" in typed
    assert "IS JSON OBJECT" in job.text()
    assert "`_k_timestamp_ms` + 300000" in typed  # default max_future_skew 5m


def test_lateness_is_a_running_max_per_partition(job: FlinkJob) -> None:
    ordered = next(v for v in job.views if "`transactions__ordered`" in v)
    assert ("MAX(`ts`) OVER (PARTITION BY `_k_partition` ORDER BY `_k_proctime` "
            "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)") in ordered
    events = next(v for v in job.views if "`transactions__events`" in v)
    assert "WHERE NOT (`ts` < `_k_max_ts` - 600000)" in events


def test_tiles_use_udafs_pmod_and_the_cutoff(job: FlinkJob) -> None:
    five_min = job.inserts[1]
    assert "MOD((MOD(`_ts`, 300000) + 300000), 300000)" in five_min
    assert ">= 1700000100000" in five_min  # only tiles the stream owns (DESIGN §6.4)
    assert ">= 1700000100000" not in job.inserts[2]  # no cutoff for the 1h hop
    hour = job.inserts[2]
    assert "(BRAID_WELFORD(CAST(`amount` AS DOUBLE))).m2" in hour
    assert "(BRAID_LATEST(`_ts`, `_ct`, `country`)).v" in hour
    assert "VAR_POP" not in job.text() and "LAST_VALUE" not in job.text()
    # the expression input is cast to BIGINT: SUM(INT) stays INT in Flink
    assert "CAST(CASE WHEN `flagged` THEN 1 ELSE 0 END AS BIGINT)" in five_min
    assert "GROUP BY `user_id`, `tile_start`" in five_min


def test_tiles_sink_is_upsert_kafka_keyed_by_entity_hop_tile(job: FlinkJob) -> None:
    sink = next(t for t in job.tables if "braid_tiles__user_txn" in t)
    assert "'connector' = 'upsert-kafka'" in sink
    assert f"'topic' = '{tiles_topic(plans()[0])}'" in sink
    assert "'topic' = 'braid.fraud.user_txn.tiles'" in sink
    assert "PRIMARY KEY (`user_id`, `hop`, `tile_start`) NOT ENFORCED" in sink
    assert "'sink.buffer-flush.max-rows' = '1000'" in sink
    assert "`amount__var__m2` DOUBLE" in sink and "`country__last__v` STRING" in sink


def test_user_text_cannot_escape_its_literal(job: FlinkJob) -> None:
    assert "`country` <> 'it''s'" in job.inserts[1]


def test_a_key_missing_from_the_schema_is_refused() -> None:
    from braid.compile.flink_source import SourceSQL

    with pytest.raises(DefinitionError, match="entity key 'merchant_id'"):
        SourceSQL(plans()[0].source, "b:1", "fraud", ("merchant_id",))
