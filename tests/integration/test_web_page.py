"""The discovery web page in headless Chromium against a real `braid serve` on the example repo.

Needs the Debian packages ``chromium`` (``/usr/bin/chromium``) and the Python package
``playwright`` (its bundled browsers are never downloaded). Screenshots go to tests/output/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from braid.store import FeatureStore
from tests.conftest import free_port, wait_for_port
from tests.integration.server_repo import ROOT, copy_example_repo

CHROMIUM = "/usr/bin/chromium"
OUTPUT = ROOT / "tests" / "output"
START, END = 1_700_000_000_000, 1_700_086_400_000  # 2023-11-14 22:13:20Z .. a day later
CUTOFF = 1_700_082_000_000

if not Path(CHROMIUM).exists():
    print(f"test_web_page skipped: {CHROMIUM} missing (apt-get install -y chromium)")
    pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium chromium-driver",
                allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="pip install playwright (no browser download)")
pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example fraud repo, applied, with coverage, cutoff, materialization, a statistics
    snapshot and a training set downstream of the service."""
    root = copy_example_repo(tmp_path_factory.mktemp("web") / "repo",
                             {"type": "sqlite", "path": "data/online.db"})
    fs = FeatureStore(root)
    fs.apply()
    reg, ns = fs.registry, fs.registry.serving_namespace("fraud", "user_txn_stats")
    assert ns is not None
    reg.add_backfilled_range("fraud", ns, START, END)
    reg.set_cutoff("fraud", ns, 60_000, CUTOFF)
    reg.set_materialized("fraud", ns, END)
    reg.save_stats("fraud", "user_txn_stats:amount_sum_1h", START, END, "backfill", {
        "count": 1200, "nulls": 3, "mean": 52.25, "std": 11.5, "min": 0.0, "max": 410.0,
        "quantiles": {"0": 0.0, "0.25": 40.0, "0.5": 50.0, "0.75": 61.0, "1": 410.0}})
    reg.add_edge("fraud", ("service", "fraud_v1"), ("training_set", "fraud_train_2023_11"))
    reg.close()
    return root


@pytest.fixture(scope="module")
def base_url(repo: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from braid.cli import main; main()",
                             "--repo", str(repo), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


@pytest.fixture(scope="module")
def page(base_url: str) -> Iterator[Any]:
    OUTPUT.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.goto(base_url + "/")
        pg.wait_for_selector("#project:has-text('project fraud')")
        pg.js_errors = errors
        yield pg
        browser.close()
    assert not errors, errors


def cli_json(repo: Path, *args: str) -> Any:
    from braid.cli import definitions  # noqa: F401  (registers the commands)
    from braid.cli.main import cli

    out = CliRunner().invoke(cli, ["--repo", str(repo), *args, "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def js_number(value: Any) -> str:
    """How the page prints a value: '-' for null, 0.0 as '0' (JavaScript numbers)."""
    if value is None:
        return "-"
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def rows(page: Any, selector: str) -> list[list[str]]:
    return [[c.strip() for c in r] for r in page.eval_on_selector_all(
        f"{selector} tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")]


def test_search_shows_the_cli_hits_live(page: Any, repo: Path) -> None:
    page.fill("#q", "amount_sum")
    page.wait_for_selector("#hits:has-text('user_txn_stats:amount_sum_1h')")
    names = page.eval_on_selector_all("#hits li a", "as => as.map(a => a.textContent)")
    expected = [h["name"] for h in cli_json(repo, "features", "search", "amount_sum",
                                            "--limit", "50")]
    assert names == expected
    page.screenshot(path=str(OUTPUT / "web_search.png"), full_page=True)
    page.fill("#f-tag", "tier=gold")
    page.fill("#q", "")
    page.wait_for_selector("#hits li >> nth=0")
    page.wait_for_function("document.querySelectorAll('#hits li').length === 1")
    assert page.text_content("#hits li a") == "user_txn_stats"


def test_view_page_schema_lineage_freshness_statistics(page: Any, repo: Path) -> None:
    page.fill("#f-tag", "")
    page.fill("#q", "user_txn_stats")
    page.wait_for_selector("h2:has-text('Results for \"user_txn_stats\"')")
    page.click("#hits li[data-kind=view] a")
    page.wait_for_selector("#title:has-text('user_txn_stats')")
    info = cli_json(repo, "features", "describe", "user_txn_stats")
    assert rows(page, "#windows") == [
        [a["name"], a["function"], a["input"], a["window"], a["hop"], a["dtype"], "-"]
        for a in info["aggregations"]]
    nodes = page.eval_on_selector_all("#lineage [data-node]",
                                      "ns => ns.map(n => n.dataset.node)")
    assert sorted(nodes) == sorted(["view:user_txn_stats", *info["lineage"]["upstream"],
                                    *info["lineage"]["downstream"]])
    assert "training_set:fraud_train_2023_11" in nodes
    assert page.locator("#lineage .edge").count() == 5
    fresh = page.text_content("#freshness")
    assert "backfilled2023-11-14 22:13:20Z .. 2023-11-15 22:13:20Z" in fresh
    assert "hop 1m: 2023-11-15 21:00:00Z" in fresh
    assert "materialized until2023-11-15 22:13:20Z" in fresh
    assert rows(page, "#stats")[0][:7] == ["amount_sum_1h", "1200", "3", "52.25", "11.5", "0",
                                           "410"]
    assert page.locator("#stats svg.histogram rect.bar").count() == 4
    page.screenshot(path=str(OUTPUT / "web_view.png"), full_page=True)


def test_view_page_projections_match_describe(page: Any, repo: Path) -> None:
    page.goto(page.url.split("#")[0] + "#/view/user_profile")
    page.wait_for_selector("#title:has-text('user_profile')")
    info = cli_json(repo, "describe", "user_profile")
    assert rows(page, "#schema") == [
        [f["name"], f["dtype"], f["expr"], js_number(f["default"])] for f in info["features"]]
    assert page.text_content("#stats") == "No statistics snapshot yet."
    assert "ttl30d" in page.text_content(".facts")


def test_service_page(page: Any, repo: Path) -> None:
    page.click("#lineage [data-node='service:fraud_v1']")
    page.wait_for_selector("#title:has-text('fraud_v1')")
    info = cli_json(repo, "describe", "fraud_v1")
    table = rows(page, "#service-features")
    assert [f"{r[0]}:{r[1]}" for r in table] == info["references"]
    scalers = {f"{r[0]}:{r[1]}": r[3] for r in table if r[3] != "-"}
    assert scalers == info["definition"]["scalers"]
    assert page.text_content("#logging") == "on, sample rate 1"
    page.screenshot(path=str(OUTPUT / "web_service.png"), full_page=True)


def test_unknown_view_shows_the_error(page: Any) -> None:
    page.goto(page.url.split("#")[0] + "#/view/user_txn_stat")
    page.wait_for_selector("#error")
    page.js_errors[:] = [e for e in page.js_errors if "404" not in e]  # the fetch's own log
    assert page.text_content("#error") == ("no view 'user_txn_stat' in project 'fraud'. "
                                           "Did you mean: user_txn_stats?")


def test_outputs_are_ignored_by_git() -> None:
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    out = subprocess.run(["git", "check-ignore", "tests/output/web_view.png"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ})
    assert out.stdout.strip() == "tests/output/web_view.png"
