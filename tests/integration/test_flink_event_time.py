"""The Flink job reads event times exactly as the embedded runner does (DESIGN §4.8): tricky
values, and a seeded sample of ISO-8601 variants, go through ``parse_time`` and through the
compiled validation views (``JSON_QUERY``/``JSON_VALUE`` and braid's Java UDFs) in a real
local Flink job; both give the same epoch ms or the same dead-letter reason.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import orjson
import pytest

from braid.compile.flink import UDAF_CLASSES
from braid.compile.flink_dialect import ident, string
from braid.compile.flink_source import SourceSQL, render_view
from braid.dtypes import DType
from braid.plan import SourcePlan

pytest.importorskip("pyflink")
pytestmark = pytest.mark.flink

#: Raw JSON text of the ``ts`` field: the brief's table, then CPython 3.11 quirks.
TRICKY = [
    '"2026-01-01T00:00:00Z"', '"2026-01-01 00:00:00.123456+05:30"',
    '"1969-12-31T23:59:59.9999Z"', '"2026-01-01T00:00:00"', '"2026-13-01T00:00:00Z"',
    '"yesterday"', "1.5", "true", "12345678901234567890", "-1500",
    "0", "-0", "4102444800000", "9223372036854775808", "-9223372036854775808", "1e3",
    '""', '"2026-01-01"', '"2026-01-01T00:00:00+02:00"', '"2026-01-01T00:00:00-0130"',
    '"2026-01-01T00:00:00.1234567890+05:30:15.5"', '"2026-W01-1T00Z"', '"20260101T000000,5Z"',
    '"2026-01-01T00.5Z"', '"2026-01-01T00:00:00.Z"', '"2026-01-01T00:00:00+24:00"',
    '"2026-01-01T24:00:00Z"', '"2026-02-29T00:00:00Z"', '"2024-02-29T00:00:00-23:59"',
    '"0001-01-01T00:00:00+01:00"', '"2026-01-01t00:00:00z"', '"2026-01-01\\u00e900:00Z"',
    '"2026-01-01T00:00:00\\u002B02:00"', '"2026-01-01T00:00:00+00:00:00.5"',
    '"2026-01-01T00:00:00Z "', '"\u00e9\u00e9\u00e9\u00e9-01-01T00:00Z"', "[1]", '{"a": 1}',
]


def _sampled(n: int, seed: int = 5) -> list[str]:
    """Seeded ISO-8601 variants (date forms, separators, fractions, offsets), some broken."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y = rng.choice(["1969", "1970", "2026", "0001", f"{rng.randint(0, 4000):04d}"])
        date = rng.choice([f"{y}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d}",
                           f"{y}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
                           f"{y}-W{rng.randint(0, 54):02d}-{rng.randint(0, 8)}",
                           f"{y}W{rng.randint(1, 53):02d}"])
        colon = rng.choice([":", ""])
        t = colon.join(f"{rng.randint(0, 24):02d}" for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.5:
            t += rng.choice(".,") + str(rng.randint(0, 10**rng.randint(0, 10)))
        zone = rng.choice(["", "Z", f"+{rng.randint(0, 24):02d}",
                           f"-{rng.randint(0, 23):02d}{colon}{rng.randint(0, 99):02d}",
                           f"+05:30:{rng.randint(0, 99):02d}.{rng.randint(0, 10**7)}"])
        text = date + rng.choice("T T\u00e9") + t + zone
        if rng.random() < 0.2:
            cut = rng.randrange(len(text))
            text = text[:cut] + rng.choice("0:-+.Z ") + text[cut + 1:]
        out.append(json.dumps(text, ensure_ascii=rng.random() < 0.5))
    return out


def embedded(raw: str) -> tuple[int | None, str | None]:
    """(epoch ms, reason) of the embedded runner's ``parse_time`` for one JSON value."""
    from braid_streaming.ingest import parse_time
    from braid_streaming.ingest_checks import _Bad

    try:
        return parse_time(orjson.loads(raw), "ts"), None
    except _Bad as bad:
        return None, bad.reason.value


def flink(raws: list[str], jar: Path) -> dict[int, tuple[int | None, str | None]]:
    """(ts, reason) per row index from the compiled ``__typed`` view, fed by ``VALUES``."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    plan = SourcePlan(name="events", schema=(("user_id", DType.INT64), ("ts", DType.TIMESTAMP)),
                      timestamp_field="ts", created_field=None, topic="events",
                      max_future_skew=0)
    sql = SourceSQL(plan, "127.0.0.1:9", "iso", keys=("user_id",))
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    env.get_config().set("pipeline.jars", jar.resolve().as_uri())
    env.get_config().set("parallelism.default", "1")
    for name, cls in UDAF_CLASSES.items():
        env.execute_sql(f"CREATE TEMPORARY FUNCTION {ident(name)} AS '{cls}' LANGUAGE JAVA")
    rows = []
    for i, raw in enumerate(raws):
        ms, _ = embedded(raw)
        # the record timestamp is the event time (braid's producer), so `future` never fires;
        # kept within TIMESTAMPDIFF(MINUTE)'s INT range
        kafka_ms = ms if ms is not None and -60_000_000_000_000 < ms < 95_000_000_000_000 else 0
        payload = string('{"user_id": 1, "ts": ' + raw + "}")
        rows.append(f"({i}, {payload}, CAST({kafka_ms} AS BIGINT))")
    env.execute_sql(
        f"CREATE TEMPORARY VIEW {ident(sql.table)} AS SELECT "
        "CAST(p AS STRING) AS `_k_payload`, 0 AS `_k_partition`, CAST(i AS BIGINT) AS `_k_offset`, "
        "TO_TIMESTAMP_LTZ(k, 3) AS `_k_timestamp`, PROCTIME() AS `_k_proctime` "
        f"FROM (VALUES {', '.join(rows)}) AS v(i, p, k)")
    for name, query in sql.views()[:2]:
        env.execute_sql(render_view(name, query))
    result = env.execute_sql(f"SELECT `_k_offset`, `ts`, `_k_reason` FROM {ident(sql.view('typed'))}")
    out: dict[int, tuple[int | None, str | None]] = {}
    with result.collect() as rows_out:
        for row in rows_out:
            out[row[0]] = (row[1], row[2])
    return out


@pytest.fixture(scope="module")
def udaf_jar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from braid_streaming.flink.udafs import build_udaf_jar

    return build_udaf_jar(tmp_path_factory.mktemp("udafs"))


def test_flink_reads_event_times_like_the_embedded_runner(udaf_jar: Path) -> None:
    raws = TRICKY + _sampled(300)
    want = [embedded(r) for r in raws]
    got = flink(raws, udaf_jar)
    mismatches = [(r, w, got.get(i)) for i, (r, w) in enumerate(zip(raws, want, strict=True))
                  if got.get(i) != w]
    assert not mismatches, mismatches[:10]
    # the table covers every outcome, and the sample is not all one
    table = dict(zip(TRICKY, want, strict=False))
    assert table['"2026-01-01T00:00:00Z"'] == (1_767_225_600_000, None)
    assert table['"2026-01-01 00:00:00.123456+05:30"'] == (1_767_205_800_123, None)
    assert table['"1969-12-31T23:59:59.9999Z"'] == (-1, None)
    assert table['"2026-01-01T00:00:00"'] == (None, "naive_timestamp")
    assert table["12345678901234567890"] == (None, "wrong_type")
    assert table["-1500"] == (-1500, None)
    sampled: dict[str | None, int] = {}
    for _ms, reason in want[len(TRICKY):]:
        sampled[reason] = sampled.get(reason, 0) + 1
    assert set(sampled) == {None, "wrong_type", "naive_timestamp"}, sampled
