"""Repository discovery: braid.yaml + Python files; import failures are errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from braid.config import load_config
from braid.errors import RepoError
from braid.repo import load_repo
from tests.conftest import EXAMPLE_REPO


def test_example_repo_loads_every_kind() -> None:
    repo = load_repo(EXAMPLE_REPO)
    assert set(repo.views) == {"user_txn_stats", "merchant_risk", "user_profile"}
    assert set(repo.entities) == {"user", "merchant"}
    assert {"transactions", "transactions_archive", "user_profiles"} <= set(repo.sources)
    assert set(repo.services) == {"fraud_v1"} and set(repo.labels) == {"chargebacks"}
    assert len(repo.views["user_txn_stats"].aggregations) == 20
    plan = repo.plan("user_txn_stats")
    assert plan.hops == (60_000, 300_000, 3_600_000, 86_400_000)


def write_repo(root: Path, body: str, config: str = "project: t\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "braid.yaml").write_text(config)
    (root / "defs.py").write_text(body)
    return root


def test_a_file_that_fails_to_import_is_an_error(tmp_path: Path) -> None:
    root = write_repo(tmp_path, "from braid import Entity\nx = 1 / 0\n")
    with pytest.raises(RepoError, match=r"defs.py:2: failed to import: ZeroDivisionError"):
        load_repo(root)


def test_same_name_twice_with_different_content(tmp_path: Path) -> None:
    body = ("from braid import Entity\n"
            "a = Entity(name='u', join_keys={'id': 'int64'})\n")
    root = write_repo(tmp_path, body)
    (root / "more.py").write_text(
        "from braid import Entity\nb = Entity(name='u', join_keys={'id': 'string'})\n")
    with pytest.raises(RepoError, match="Entity 'u' is defined twice"):
        load_repo(root)


def test_config_errors_and_env_overrides(tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="not found; run `braid init"):
        load_config(tmp_path)
    (tmp_path / "braid.yaml").write_text("project: t\nonline_store: {type: memcached}\n")
    with pytest.raises(RepoError, match="online_store.type"):
        load_config(tmp_path)
    (tmp_path / "braid.yaml").write_text("project: t\n")
    cfg = load_config(tmp_path, env={"BRAID_REDIS_URL": "redis://h:1/0",
                                     "BRAID_KAFKA_BOOTSTRAP": "k:9092"})
    assert cfg.online_store.type == "redis" and cfg.online_store.url == "redis://h:1/0"
    assert cfg.kafka.bootstrap == "k:9092"
    assert cfg.registry_url == f"sqlite:///{tmp_path.absolute()}/data/registry.db"


def test_two_repos_with_same_module_names_do_not_leak(tmp_path: Path) -> None:
    for name, key in (("a", "int64"), ("b", "string")):
        root = write_repo(tmp_path / name, "", config=f"project: {name}\n")
        (root / "ents.py").write_text(
            f"from braid import Entity\nu = Entity(name='u', join_keys={{'id': '{key}'}})\n")
        (root / "defs.py").write_text("from ents import u\n")
        repo = load_repo(root)
        assert str(repo.entities["u"].join_keys["id"]) == key
