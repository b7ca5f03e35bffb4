"""Offline store and backfill: partition math, atomic manifests, idempotence, cutoffs, late."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from braid.duck import connect
from braid.repo import Repo, load_repo
from braid_batch.backfill import backfill
from braid_batch.offline import BEGINNING, MANIFEST, OfflineStore, day_name, epoch_day
from braid_batch.pit import get_historical_features
from braid_batch.pit_sql import gaps
from braid_batch.testing import (
    MIN5,
    T0,
    TRICKY_DEFS,
    TRICKY_TYPES,
    make_repo,
    ref_projection,
    source_events,
    tricky_events,
    write_events,
)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = make_repo(tmp_path / "repo", TRICKY_DEFS)
    write_events(root / "data" / "tx.parquet", tricky_events(n_random=100), TRICKY_TYPES)
    return load_repo(root)


def listed(store: OfflineStore, repo: Repo) -> dict[str, list[str]]:
    out = {}
    for plan in repo.plans():
        for hop in [None, *plan.hops]:
            for m in store.manifests(plan, hop):
                out[str(m.directory)] = sorted(m.files)
    return out


def tiles(store: OfflineStore, repo: Repo, hop: int) -> list[tuple]:
    with connect() as con:
        rel = store.tiles_relation(con, repo.plan("user_tx"), hop)
        return sorted(rel.fetchall(), key=lambda r: (r[0], r[1]))


def test_partition_days_use_floor_arithmetic() -> None:
    assert epoch_day(-1) == -1 and day_name(-1) == "1969-12-31"
    assert epoch_day(0) == 0 and day_name(epoch_day(86_400_000 - 1)) == "1970-01-01"
    assert day_name(epoch_day(T0)) == "2023-11-14"


def test_backfill_writes_tiles_and_rows(repo: Repo) -> None:
    report = backfill(repo, progress=False)
    events = [e for e in tricky_events(n_random=100) if not e["_late"]]
    assert report.rows_read == 2 * len(events)  # two views read the same source
    assert report.rows_written == 2 * len(events)
    store = OfflineStore.for_repo(repo)
    plan = repo.plan("user_tx")
    counts = {(r[0], r[1]): r[2] for r in tiles(store, repo, MIN5)}
    assert counts[(1, T0)] == 3  # three events of user 1 at T0 + 1000
    assert counts[(4, -MIN5)] == 1 and counts[(4, -2 * MIN5)] == 1  # pre-epoch tiles
    pre = store.partition_dir(plan, MIN5, -1)
    assert pre.name == "date=1969-12-31" and (pre / MANIFEST).is_file()
    with connect() as con:
        schema = pq.read_schema(next(pre.glob("*.parquet")))
        assert [f.name for f in schema][:2] == ["user_id", "tile_start"]
        row_file = next(store.partition_dir(plan, None, epoch_day(T0)).glob("*.parquet"))
        assert str(pq.read_schema(row_file).field("_ts").type) == "timestamp[ms, tz=UTC]"
        pair = repo.plan("pair")
        latest = store.latest_rows(con, pair).select("user_id, merchant_id, score").fetchall()
    events = source_events(pair, repo.config.resolve("data/tx.parquet"))
    assert len(latest) == len({(e["user_id"], e["merchant_id"]) for e in events})
    for user, merchant, score in latest:
        assert ref_projection(pair, events, (user, merchant), 10**15)["score"] == score


def test_rebackfill_is_idempotent(repo: Repo) -> None:
    store = OfflineStore.for_repo(repo)
    backfill(repo, progress=False)
    first, files_before = tiles(store, repo, MIN5), listed(store, repo)
    backfill(repo, progress=False, chunk_rows=50)
    assert tiles(store, repo, MIN5) == first
    files_after = listed(store, repo)
    assert files_after.keys() == files_before.keys()
    for directory, names in files_after.items():  # replaced, never duplicated
        on_disk = sorted(p.name for p in Path(directory).glob("*.parquet"))
        assert on_disk == names and len(names) == 1


def test_unlisted_and_temporary_files_are_ignored(repo: Repo) -> None:
    backfill(repo, progress=False)
    store = OfflineStore.for_repo(repo)
    before = tiles(store, repo, MIN5)
    directory = store.partition_dir(repo.plan("user_tx"), MIN5, epoch_day(T0))
    real = next(directory.glob("part-*.parquet"))
    # a crash after a file was renamed but before the manifest was published
    (directory / "part-crashed.parquet").write_bytes(real.read_bytes())
    (directory / ".tmp-part-half.parquet").write_bytes(real.read_bytes()[:100])
    (directory / ".tmp-abc-_manifest.json").write_text("{half")
    assert tiles(store, repo, MIN5) == before


def test_cutoff_limits_tiles_and_coverage(repo: Repo) -> None:
    cutoff = T0 + 7 * MIN5 + 1
    backfill(repo, progress=False, cutoffs={MIN5: cutoff})
    store = OfflineStore.for_repo(repo)
    starts = [r[1] for r in tiles(store, repo, MIN5)]
    assert max(starts) == T0 + 7 * MIN5  # the tile holding the cutoff starts before it
    covered = store.covered(repo.plan("user_tx"), MIN5)
    assert covered[-1][1] == T0 + 8 * MIN5


def test_live_tiles_cover_the_widest_window_before_the_cutoff(repo: Repo) -> None:
    backfill(repo, progress=False)
    store = OfflineStore.for_repo(repo)
    with connect() as con:
        live = store.live_tiles(con, repo.plan("user_tx"), MIN5, now=T0 + 20 * MIN5,
                                cutoff=T0 + 13 * MIN5).fetchall()
    starts = {r[1] for r in live}
    assert (3, T0 + 12 * MIN5) in {(r[0], r[1]) for r in live}
    assert min(starts) >= T0 + 9 * MIN5 and max(starts) < T0 + 13 * MIN5


def test_late_events_excluded_unless_included(repo: Repo) -> None:
    store = OfflineStore.for_repo(repo)
    backfill(repo, ["user_tx"], progress=False, start=T0, end=T0 + 60_000)
    count = {(r[0], r[1]): r[2] for r in tiles(store, repo, MIN5)}
    backfill(repo, ["user_tx"], progress=False, start=T0, end=T0 + 60_000, include_late=True)
    count_late = {(r[0], r[1]): r[2] for r in tiles(store, repo, MIN5)}
    assert count_late[(5, T0)] == count[(5, T0)] + 1


def test_ranges_are_widened_to_whole_days_and_reported(repo: Repo) -> None:
    seen: list[tuple[str, int, int]] = []
    report = backfill(repo, ["user_tx"], progress=False, start=T0 + 5, end=T0 + 10,
                      on_range=lambda ns, a, b: seen.append((ns, a, b)))
    assert seen == [(repo.plan("user_tx").namespace, T0, T0 + 86_400_000)]
    assert report.views[0].start == T0 and report.events_per_second > 0


def test_gaps_treat_a_range_from_the_beginning_as_unbounded() -> None:
    assert gaps([], None, 10) == [(None, 10)]
    assert gaps([(5, 8)], None, 10) == [(None, 5), (8, 10)]
    assert gaps([(BEGINNING, 8)], None, 10) == [(8, 10)]
    assert gaps([(BEGINNING, 8)], 3, 6) == []
    assert gaps([(0, 4), (6, 9)], 2, 12) == [(4, 6), (9, 12)]


def test_a_backfill_without_start_covers_everything_before_its_first_event(repo: Repo) -> None:
    store = OfflineStore.for_repo(repo)
    backfill(repo, ["user_tx"], progress=False, start=T0)
    assert store.covered(repo.plan("user_tx"), None)[0][0] == epoch_day(T0) * 86_400_000
    backfill(repo, ["user_tx"], progress=False)
    for hop in [None, *repo.plan("user_tx").hops]:
        assert store.covered(repo.plan("user_tx"), hop)[0][0] == BEGINNING


def test_point_in_time_rows_never_rescan_a_fully_backfilled_source(repo: Repo,
                                                                   tmp_path: Path) -> None:
    backfill(repo, ["pair"], progress=False)
    events = [e for e in tricky_events(n_random=100) if not e["_late"]]
    first = min(e["ts"] for e in events)
    entities = pa.table({
        "user_id": pa.array([e["user_id"] for e in events], pa.int64()),
        "merchant_id": pa.array([e["merchant_id"] for e in events], pa.string()),
        "event_timestamp": pa.array([first - 1] + [e["ts"] for e in events[1:]], pa.int64())})
    before = get_historical_features(repo, entities, ["pair:score"]).to_arrow()
    assert before.column("score")[0].as_py() is None  # before the first event: no row yet
    # An event older than the backfill slipped into the source afterwards: the store's
    # coverage says nothing precedes the first event, so the request does not scan for it.
    older = {**events[0], "ts": first - 10, "ct": first - 10, "score": 999}
    write_events(tmp_path / "repo" / "data" / "tx.parquet", [older], TRICKY_TYPES)
    after = get_historical_features(repo, entities, ["pair:score"]).to_arrow()
    assert after.equals(before)
