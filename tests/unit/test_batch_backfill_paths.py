"""Backfill's fast paths keep its guarantees: many chunks/slices give the same store as one,
two threads the same as one, and a failed chunk leaves the store as it was (no stray files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from braid.duck import connect
from braid.repo import Repo, load_repo
from braid_batch import backfill as backfill_module
from braid_batch.backfill import backfill
from braid_batch.offline import OfflineStore
from braid_batch.testing import TRICKY_DEFS, TRICKY_TYPES, make_repo, tricky_events, write_events


def build(root: Path) -> Repo:
    make_repo(root, TRICKY_DEFS)
    write_events(root / "data" / "tx.parquet", tricky_events(n_random=400), TRICKY_TYPES)
    return load_repo(root)


def snapshot(repo: Repo) -> dict[str, list[tuple]]:
    store = OfflineStore.for_repo(repo)
    out: dict[str, list[tuple]] = {}
    with connect() as con:
        for plan in repo.plans():
            for hop in plan.hops:
                rows = store.tiles_relation(con, plan, hop).fetchall()
                out[f"{plan.name}/{hop}"] = sorted(rows, key=repr)
            if plan.projections:
                out[f"{plan.name}/rows"] = sorted(store.rows_relation(con, plan).fetchall(),
                                                  key=repr)
    return out


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_small_chunks_and_slices_equal_one_pass(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    one = build(tmp_path / "one")
    backfill(one, progress=False, threads=1)
    many = build(tmp_path / "many")
    monkeypatch.setattr(backfill_module, "SLICE_ROWS", 37)
    backfill(many, progress=False, chunk_rows=50, threads=2)
    a, b = snapshot(one), snapshot(many)
    assert a.keys() == b.keys() and all(a[k] for k in a)
    for k in a:
        assert a[k] == b[k], k


def test_failed_chunk_leaves_the_store_unchanged(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    repo = build(tmp_path / "repo")
    backfill(repo, progress=False)
    before, listing = snapshot(repo), files(tmp_path / "repo" / "data" / "offline")
    calls = {"n": 0}
    original = OfflineStore.stage_partition

    def flaky(self: OfflineStore, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (injected)")
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(OfflineStore, "stage_partition", flaky)
    with pytest.raises(OSError, match="injected"):
        backfill(repo, progress=False, threads=1)
    assert calls["n"] == 3
    assert snapshot(repo) == before
    assert files(tmp_path / "repo" / "data" / "offline") == listing  # no temp files left
