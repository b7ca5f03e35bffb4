"""Stream statistics from the embedded runner (DESIGN §9): each batch's owned projection rows
(``_ts >= C``) are counted into the registry's chunk snapshots before the offsets commit, under
the offset-range guard, so a replay after a crash counts nothing twice."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from braid.stats.snapshots import chunks_as_of
from braid.stats.stream import apply_stream_delta, stats_delta
from braid.store import FeatureStore
from tests.integration.test_runner_repo import (
    bad_records,
    base_time,
    events,
    late_event,
    produce_bad,
)

DEFINITIONS = '''
from braid import Aggregation, Entity, Feature, FeatureView, StreamSource

user = Entity(name="user", join_keys={"user_id": "int64"})

SCHEMA = {"user_id": "int64", "merchant_id": "int64", "amount": "float64", "ts": "timestamp"}

txns = StreamSource(name="txns", topic="txns", schema=SCHEMA, timestamp_field="ts",
                    allowed_lateness="10m", partitions=2)

# An aggregation (a hop, so a cutoff) and a numeric projection: stream statistics.
user_amount = FeatureView(
    name="user_amount", entities=[user], source=txns, ttl="1d",
    aggregations=[Aggregation(column="amount", function="sum", window="1h", hop="10m")],
    features=[Feature(name="last_amount", dtype="float64", expr="amount")])

# Projection only: no cutoff, no stream statistics (the batch pass counts its rows).
user_last = FeatureView(
    name="user_last", entities=[user], source=txns, ttl="1d",
    features=[Feature(name="last_merchant", dtype="int64", expr="merchant_id")])
'''

REF = "user_amount:last_amount"


class Crash(Exception):
    """Injected by a chunk hook: the process 'dies' after the stats, before the commit."""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "braid.yaml").write_text("project: shop\nregistry: sqlite:///data/registry.db\n"
                                     "offline_store:\n  path: data/offline\n"
                                     "online_store:\n  type: sqlite\n  path: data/online.db\n")
    (root / "definitions.py").write_text(textwrap.dedent(DEFINITIONS))
    return root


def run_once(root: Path, **options: Any) -> FeatureStore:
    fs = FeatureStore(root)
    with fs.stream_runner(max_wait_ms=20, **options) as runner:
        runner.run(once=True, install_signals=False)
    return fs


def push_all(repo: Path) -> list[dict[str, Any]]:
    """Valid events (repeated keys, one duplicate), one late event and refused records."""
    t0 = base_time()
    evs = events(t0, n=300)
    fs = FeatureStore(repo)
    fs.push("txns", evs)
    fs.push("txns", [late_event(t0)])
    produce_bad(fs, bad_records(t0))
    return evs


def check(fs: FeatureStore, evs: list[dict[str, Any]]) -> None:
    merged = fs.stats(REF)
    assert merged is not None
    summary = merged.summary()
    amounts = np.array([e["amount"] for e in evs], dtype=float)
    assert summary["count"] == len(evs)  # every on-time row, not only each key's latest
    assert summary["mean"] == pytest.approx(float(np.mean(amounts)), rel=1e-9)
    assert set(summary["origins"]) == {"stream"}


def test_runner_counts_owned_rows_once_across_batches_and_replays(repo: Path) -> None:
    evs = push_all(repo)
    fs = run_once(repo, max_batch=37)  # many batches, ranges cut mid-stream
    check(fs, evs)
    assert fs.stats("user_last:last_merchant") is None  # projection-only: skipped

    # A replay of counted ranges is refused by the guard in the snapshot rows.
    plan = fs.repo.plan("user_amount")
    snaps = chunks_as_of(fs.registry, "shop", REF, None, plan.namespace)
    assert snaps
    offsets = snaps[0].body["offsets"]
    ranges = {int(p): (0, end) for p, end in offsets.items()}
    rows = pa.table({"_ts": [e["ts"] for e in evs], "last_amount": [e["amount"] for e in evs]})
    cutoff = min(fs.registry.cutoffs("shop", plan.namespace).values())
    assert apply_stream_delta(fs.registry, plan, stats_delta(plan, rows), ranges,
                              cutoff=cutoff) == 0
    check(FeatureStore(repo), evs)


def test_crash_after_stats_before_commit_replays_without_double_counting(repo: Path) -> None:
    evs = push_all(repo)

    def die_in_second_view(view: str, hop: int | None, chunk: int) -> None:
        if view == "user_last":  # after user_amount (tiles, rows and stats) was applied
            raise Crash()

    with pytest.raises(Crash):
        run_once(repo, max_batch=10_000, hook=die_in_second_view)
    # The crashed batch was counted, its offsets not committed (the intent remains).
    before = FeatureStore(repo).stats(REF)
    assert before is not None and before.summary()["count"] > 0
    fs = run_once(repo)  # replays the intent's ranges (guard: skipped), then the rest
    check(fs, evs)
