"""A changed view gets a new namespace; serving stays on the old one until promote; gc
removes the old storage (DESIGN §6.5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from braid.store import FeatureStore

T = 1_767_225_600_000  # 2026-01-01T00:00:00Z

DEFS = '''
from braid import Aggregation, BatchSource, Entity, FeatureView

user = Entity(name="user", join_keys={"user_id": "int64"})
tx = BatchSource(name="tx", path="data/tx/*.parquet", timestamp_field="ts",
                 schema={"user_id": "int64", "amount": "float64", "ts": "timestamp"})
spend = FeatureView(name="spend", entities=[user], source=tx, filter="FILTER",
                    aggregations=[Aggregation(column="amount", function="sum", window="1h")],
                    description="DESCRIPTION")
'''


def write_defs(root: Path, flt: str, description: str = "v1") -> None:
    (root / "defs.py").write_text(DEFS.replace("FILTER", flt).replace("DESCRIPTION", description))


def test_change_backfill_promote_gc(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "data/tx").mkdir(parents=True)
    (root / "braid.yaml").write_text("project: t\n")
    pq.write_table(pa.table({
        "user_id": pa.array([1, 1, 1], pa.int64()),
        "amount": [5.0, 50.0, 500.0],
        "ts": pa.array([T - 600_000, T - 500_000, T - 400_000]).cast(pa.timestamp("ms", tz="UTC")),
    }), root / "data/tx/part-0.parquet")
    write_defs(root, "amount > 1")
    fs = FeatureStore(root)
    fs.apply()
    fs.backfill(progress=False)
    fs.materialize(now=T)
    ref = ["spend:amount_sum_1h"]

    def read(store: FeatureStore) -> float:
        return store.get_online_features([{"user_id": 1}], ref, now=T).to_dict()["amount_sum_1h"][0]

    assert read(fs) == 555.0
    old_ns = fs.repo.plan("spend").namespace

    write_defs(root, "amount > 1", description="cosmetic edit")  # same plan, same namespace
    fs = FeatureStore(root)
    assert fs.repo.plan("spend").namespace == old_ns

    write_defs(root, "amount > 10")
    fs = FeatureStore(root)
    diff = fs.plan()
    new_ns = fs.repo.plan("spend").namespace
    assert new_ns != old_ns and new_ns in diff.render()
    fs.apply()
    assert fs.registry.serving_namespace("t", "spend") == old_ns
    assert read(fs) == 555.0  # still the old definition's values
    try:
        fs.promote("spend")
        raise AssertionError("promote of a never backfilled namespace must be refused")
    except Exception as e:
        assert "no backfilled range" in str(e)
    fs.backfill(progress=False)
    fs.materialize(now=T)
    assert read(fs) == 555.0  # backfilled but not promoted
    assert fs.promote("spend") == (old_ns, new_ns)
    assert read(fs) == 550.0
    offline = root / "data/offline/t"
    assert (offline / old_ns).is_dir()
    dry = fs.gc(dry_run=True)
    assert [(r.view, r.namespace) for r in dry] == [("spend", old_ns)]
    assert (offline / old_ns).is_dir()
    removed = fs.gc()
    assert len(removed) == 1 and removed[0].online_keys == 1 and removed[0].offline_files > 0
    assert not (offline / old_ns).exists() and (offline / new_ns).is_dir()
    assert read(fs) == 550.0
    states = {n.namespace: n.state for n in fs.registry.namespaces("t", "spend")}
    assert states == {old_ns: "retired", new_ns: "serving"}
    assert fs.gc() == []
    shutil.rmtree(root)
