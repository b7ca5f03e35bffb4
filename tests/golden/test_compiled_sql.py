"""Golden files of every compiled artifact of the example repository (STYLE 5).

Regenerate with:  pytest tests/golden --update-goldens   (then read the diff in review).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from braid.compile.artifacts import render_artifacts
from braid.repo import load_repo
from tests.conftest import EXAMPLE_REPO

GOLDEN = Path(__file__).parent / "compiled"
ARTIFACTS = render_artifacts(load_repo(EXAMPLE_REPO), bootstrap="localhost:9092")


@pytest.mark.parametrize("rel", sorted(ARTIFACTS))
def test_artifact_matches_golden(rel: str, request: pytest.FixtureRequest) -> None:
    path = GOLDEN / rel
    text = ARTIFACTS[rel]
    if request.config.getoption("--update-goldens"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"missing golden {path}; run pytest tests/golden --update-goldens"
    assert text == path.read_text(), f"{rel} changed; review and run with --update-goldens"


def test_every_view_has_a_duckdb_artifact() -> None:
    views = load_repo(EXAMPLE_REPO).views
    assert {f"duckdb/{v}.sql" for v in views} <= set(ARTIFACTS)


def test_no_stale_goldens() -> None:
    on_disk = {str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*.sql")}
    assert on_disk <= set(ARTIFACTS), f"stale goldens: {sorted(on_disk - set(ARTIFACTS))}"
