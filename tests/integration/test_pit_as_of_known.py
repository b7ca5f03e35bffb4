"""``as_of_known=True`` counts only events ingested by t, also in the complete tiles of a
window (DESIGN §4.7): an event that arrived after t never leaks into a training row at t."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from braid.store import FeatureStore

T = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000

DEFS = """
from braid import Aggregation, BatchSource, Entity, FeatureView

user = Entity(name="user", join_keys={"user_id": "int64"})
tx = BatchSource(name="tx", path="data/tx/*.parquet", timestamp_field="ts",
                 schema={"user_id": "int64", "amount": "float64", "ts": "timestamp",
                         "_ingested_at": "timestamp"})
spend = FeatureView(name="spend", entities=[user], source=tx, aggregations=[
    Aggregation(column="amount", function="sum", window="1h"),
    Aggregation(column="amount", function="count", window="1h"),
    Aggregation(column="amount", function="stddev", window="1h"),
])
"""


def test_late_ingested_events_are_not_known(tmp_path: Path) -> None:
    (tmp_path / "data/tx").mkdir(parents=True)
    (tmp_path / "braid.yaml").write_text("project: t\n")
    (tmp_path / "defs.py").write_text(DEFS)
    ts = [T - 40 * MIN, T - 30 * MIN, T - 20 * MIN, T - 1 * MIN]
    ingested = [T - 40 * MIN, T + 2 * MIN, T - 20 * MIN, T - 1 * MIN]  # 2nd arrives late
    ms = pa.timestamp("ms", tz="UTC")
    pq.write_table(pa.table({"user_id": pa.array([1] * 4, pa.int64()),
                             "amount": [1.0, 10.0, 100.0, 1000.0],
                             "ts": pa.array(ts).cast(ms), "_ingested_at": pa.array(ingested).cast(ms)}),
                   tmp_path / "data/tx/part-0.parquet")
    fs = FeatureStore(tmp_path)
    fs.apply()
    entity_df = pd.DataFrame({"user_id": [1, 1], "event_timestamp": pd.to_datetime(
        [T, T + 5 * MIN], unit="ms", utc=True)})
    refs = ["spend:amount_sum_1h", "spend:amount_count_1h", "spend:amount_stddev_1h"]
    for backfilled in (False, True):
        if backfilled:
            fs.backfill(progress=False)  # stored tiles now hold the late-arriving event
        known = fs.get_historical_features(entity_df, refs, as_of_known=True).to_pandas()
        every = fs.get_historical_features(entity_df, refs).to_pandas()
        assert every["amount_sum_1h"].tolist() == [1111.0, 1111.0]
        # at T the event ingested at T+2m is unknown; at T+5m it is known
        assert known["amount_sum_1h"].tolist() == [1101.0, 1111.0]
        assert known["amount_count_1h"].tolist() == [3, 4]
        sd = pd.Series([1.0, 100.0, 1000.0]).std()
        assert abs(known["amount_stddev_1h"][0] - sd) < 1e-9 * sd
