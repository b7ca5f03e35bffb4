"""The registry on PostgreSQL (DESIGN §6, §11): the shared scenario on SQLite and PostgreSQL,
plus what only a server shows (separate connections, several registries on one database).

``pg_url`` (tests/conftest.py) creates a fresh database or skips with the reason.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa

from braid.errors import RegistryError
from braid.registry import Registry


def _shared() -> ModuleType:
    """The scenario and repository writer of tests/unit/test_registry.py."""
    name = "braid_tests_unit_registry"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "unit" / "test_registry.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


shared = _shared()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    pg: str = request.getfixturevalue("pg_url")
    return pg


@pytest.fixture
def registry(url: str) -> Iterator[Registry]:
    reg = Registry(url, clock=shared.ticking_clock())
    yield reg
    reg.close()


def test_core_scenario(registry: Registry, tmp_path: Path) -> None:
    shared.core_scenario(registry, tmp_path / "repo")
    assert registry.url.split(":")[0] in ("sqlite", "postgresql+psycopg")


def test_a_second_registry_sees_applied_state(url: str, tmp_path: Path) -> None:
    # project "t" may exist from the scenario on the shared PostgreSQL database: use "t2"
    root = tmp_path / "repo"
    repo = shared.write_repo(root, project="t2")
    with Registry(url) as writer:
        writer.apply(repo)
        writer.add_backfilled_range("t2", "ns", 0, 10)
    with Registry(url) as reader:
        assert [r.name for r in reader.list_objects("t2", "view")] == ["user_txn_stats"]
        assert reader.backfilled_ranges("t2", "ns") == [(0, 10)]
        assert not reader.plan(repo).has_changes
        assert reader.serving_namespace("t2", "user_txn_stats") == \
            repo.plan("user_txn_stats").namespace


def test_concurrent_backfill_ranges_are_not_lost(url: str) -> None:
    # each thread has its own engine (own connections), like separate braid processes
    from concurrent.futures import ThreadPoolExecutor

    registries = [Registry(url) for _ in range(4)]
    registries[0].add_backfilled_range("t4", "ns", 0, 1)  # the row exists: writers queue on it

    def add(i: int) -> None:
        reg = registries[i % 4]
        reg.add_backfilled_range("t4", "ns", 10 * i, 10 * i + 5)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(add, range(1, 21)))
    got = registries[0].backfilled_ranges("t4", "ns")
    for reg in registries:
        reg.close()
    assert got == [(0, 1)] + [(10 * i, 10 * i + 5) for i in range(1, 21)]


@pytest.mark.postgres
def test_postgres_tables_and_versions_are_real(pg_url: str, tmp_path: Path) -> None:
    repo = shared.write_repo(tmp_path / "repo", project="t3")
    with Registry(pg_url) as reg:
        reg.apply(repo)
        reg.apply(shared.write_repo(tmp_path / "repo", project="t3", description="new words"))
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as con:
        rows = con.execute(sa.text(
            "SELECT version, deleted FROM braid_definitions "
            "WHERE project = 't3' AND kind = 'view' ORDER BY version")).all()
        assert [tuple(r) for r in rows] == [(1, False), (2, False)]
        serving = con.execute(sa.text(
            "SELECT state FROM braid_namespaces WHERE project = 't3'")).scalars().all()
        assert serving == ["serving"]
        tables = set(sa.inspect(con).get_table_names())
    engine.dispose()
    assert {"braid_definitions", "braid_edges", "braid_namespaces", "braid_state",
            "braid_stats"} <= tables


def test_unreachable_postgres_is_one_line() -> None:
    with pytest.raises(RegistryError) as info:
        Registry("postgresql://braid:pw0rd@127.0.0.1:9/braid?connect_timeout=2")
    message = str(info.value)
    assert message.startswith("registry database postgresql+psycopg://braid:***@127.0.0.1:9")
    assert "pw0rd" not in message and "\n" not in message
