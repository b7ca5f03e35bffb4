"""Stream freshness of a view (braid_streaming.freshness) on the local log + SQLite, and the
discovery API's ``stream`` field: engine, offsets against log ends, lag, last streamed event
time (M(p)), dead letters by reason; nothing streamed yet; the Flink sink's offsets."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from braid.store import FeatureStore
from braid.timeutil import from_epoch_ms
from braid_streaming.freshness import FreshnessCache, stream_freshness
from braid_streaming.ingest import dlq_topic
from braid_streaming.log import open_log
from tests.integration.test_runner_repo import (
    bad_records,
    base_time,
    events,
    late_event,
    make_stream_repo,
    produce_bad,
)

pytest.importorskip("fastapi")

from braid.server import create_app  # noqa: E402
from tests.integration.test_server import Client  # noqa: E402

REASONS = {"malformed_json": 1, "missing_field": 1, "non_finite": 1, "wrong_type": 1,
           "naive_timestamp": 1, "future": 1, "late": 1}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_stream_repo(tmp_path / "repo")
    FeatureStore(root).apply()
    return root


def run_once(root: Path) -> None:
    fs = FeatureStore(root)
    with fs.stream_runner(max_wait_ms=20) as runner:
        runner.run(once=True, install_signals=False)


def ends(fs: FeatureStore, topic: str = "txns") -> dict[int, int]:
    with open_log(fs.config.kafka, fs.config.root) as log:
        return log.end_offsets(topic)


def without_age(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "last_event_age_ms"}


def test_nothing_streamed_yet(repo: Path) -> None:
    fs = FeatureStore(repo)
    kafka_before = {m for m in ("confluent_kafka", "kafka") if m in sys.modules}
    fresh = stream_freshness(fs, "user_txn")
    assert fresh["engine"] is None and fresh["runner_group"] is None
    assert fresh["namespace"] == fs.registry.serving_namespace("shop", "user_txn")
    assert (fresh["source"], fresh["topic"], fresh["log"]) == ("txns", "txns", "local")
    assert fresh["partitions"] == {} and fresh["lag"] is None
    assert fresh["last_event_ms"] is None and fresh["last_event_time"] is None
    assert fresh["dead_letters"] == {"total": 0, "by_reason": {}, "scanned": 0,
                                     "capped": False}
    assert fresh["errors"] == []
    assert not (repo / "data" / "online.db").exists()  # read-only: no store file created
    # pushed but never run: ends known, nobody owns the namespace
    fs.push("txns", events(base_time(), n=10))
    fresh = stream_freshness(fs, "user_txn")
    assert fresh["engine"] is None and fresh["lag"] is None
    assert {p: (v["committed"], v["end"]) for p, v in fresh["partitions"].items()} == {
        str(p): (None, e) for p, e in ends(fs).items()}
    assert {m for m in ("confluent_kafka", "kafka") if m in sys.modules} == kafka_before


def test_runner_offsets_lag_event_time_and_dead_letters(repo: Path) -> None:
    t0 = base_time()
    evs = events(t0, n=80)
    fs = FeatureStore(repo)
    fs.push("txns", evs)
    fs.push("txns", [late_event(t0)])
    produce_bad(fs, bad_records(t0))
    run_once(repo)

    fs = FeatureStore(repo)
    owner = fs.registry.get_state("shop", f"stream:{fs.registry.serving_namespace('shop', 'user_txn')}")
    fresh = stream_freshness(fs, "user_txn")
    assert fresh["engine"] == "embedded"
    assert fresh["runner_group"] == owner["group"]
    assert [i["id"] for i in fresh["instances"]] == [f"{owner['group']}.0of1"]
    assert fresh["instances"][0]["seq"] >= 1 and fresh["instances"][0]["in_flight"] is None
    end = ends(fs)
    assert sum(end.values()) == len(evs) + 1 + len(bad_records(t0))
    assert fresh["offsets_topic"] == "txns"
    assert {p: (v["committed"], v["end"], v["lag"]) for p, v in fresh["partitions"].items()} == {
        str(p): (e, e, 0) for p, e in end.items()}
    assert fresh["lag"] == 0
    newest = max(e["ts"] for e in evs)
    assert fresh["last_event_ms"] == newest
    assert max(v["last_event_ms"] for v in fresh["partitions"].values()) == newest
    assert fresh["last_event_time"] == from_epoch_ms(newest).isoformat().replace("+00:00", "Z")
    assert fresh["last_event_age_ms"] >= 0
    assert fresh["dead_letters"] == {"total": 7, "by_reason": REASONS, "scanned": 7,
                                     "capped": False}
    assert fresh["errors"] == []
    # every view of the source sees the same dead letters; one cache serves them all
    with FreshnessCache(fs) as cache:
        both = [stream_freshness(fs, v, cache) for v in ("user_txn", "merchant_big")]
    assert [b["dead_letters"]["by_reason"] for b in both] == [REASONS, REASONS]
    assert both[0]["lag"] == both[1]["lag"] == 0

    # more events, no run: the lag is exactly what was pushed, committed offsets unchanged
    more = events(t0 + 3_600_000, n=13, seed=9)  # 14 records: events() adds a duplicate
    fs.push("txns", more)
    later = stream_freshness(fs, "user_txn")
    assert later["lag"] == len(more) == 14
    assert {p: v["committed"] for p, v in later["partitions"].items()} == {
        p: v["committed"] for p, v in fresh["partitions"].items()}
    assert {p: v["end"] for p, v in later["partitions"].items()} == {
        str(p): e for p, e in ends(fs).items()}
    assert later["last_event_ms"] == newest

    # the discovery API answers the same dict
    client = Client(create_app(fs))
    try:
        view = client.get("/api/views/user_txn").json()
        every = client.get("/api/freshness").json()
    finally:
        client.close()
    want = without_age(stream_freshness(fs, "user_txn"))
    assert without_age(view["freshness"]["stream"]) == want
    assert without_age(every["user_txn"]["stream"]) == want
    assert every["merchant_big"]["stream"]["lag"] == len(more)
    assert view["freshness"]["stream"]["last_event_age_ms"] >= 0


def test_dead_letters_counted_once_per_record_and_source_and_capped(repo: Path) -> None:
    t0 = base_time()
    fs = FeatureStore(repo)
    fs.push("txns", events(t0, n=20))
    produce_bad(fs, bad_records(t0)[:2])
    run_once(repo)
    with open_log(fs.config.kafka, fs.config.root) as log:
        topic = dlq_topic("shop")
        first = log.read_range(topic, 0, 0, 1)[0]
        other = orjson.dumps({"reason": "wrong_type", "topic": "clicks", "partition": 0,
                              "offset": 5})
        # a replayed letter (same source place) and a letter of another source
        log.produce(topic, [(first.key, first.value, 1), (b"clicks/0/5", other, 1)])
        log.flush()
    fresh = stream_freshness(fs, "user_txn")
    assert fresh["dead_letters"] == {
        "total": 2, "by_reason": {"malformed_json": 1, "missing_field": 1}, "scanned": 4,
        "capped": False}
    with FreshnessCache(fs, dlq_cap=1) as cache:
        capped = stream_freshness(fs, "user_txn", cache)["dead_letters"]
    assert capped["capped"] is True and capped["scanned"] == 1 and capped["total"] <= 1


def test_flink_sink_offsets(repo: Path) -> None:
    fs = FeatureStore(repo)
    ns = fs.registry.serving_namespace("shop", "user_txn")
    tiles = "braid.shop.user_txn.tiles"
    with open_log(fs.config.kafka, fs.config.root) as log:
        log.create_topic(tiles, 2)
        log.produce(tiles, [(None, b"{}", 1)] * 6, partition=0)
        log.produce(tiles, [(None, b"{}", 1)] * 3, partition=1)
        log.flush()
    fs.registry.set_state("shop", f"sink:{ns}", {"0": 4})
    fresh = stream_freshness(fs, "user_txn")
    assert fresh["engine"] == "flink" and fresh["offsets_topic"] == tiles
    assert fresh["partitions"] == {
        "0": {"committed": 4, "end": 6, "lag": 2, "last_event_ms": None},
        "1": {"committed": 0, "end": 3, "lag": 3, "last_event_ms": None}}
    assert fresh["lag"] == 5 and fresh["last_event_ms"] is None


def test_batch_view_has_no_stream_section(tmp_path: Path) -> None:
    from tests.integration.server_repo import make_repo

    fs = FeatureStore(make_repo(tmp_path / "repo", {"type": "sqlite", "path": "data/online.db"}))
    fs.apply()
    assert stream_freshness(fs, "user_txn") == {}


def test_web_page_shows_stream_freshness(repo: Path) -> None:
    """The view page's freshness card in headless Chromium against `braid serve`."""
    import subprocess

    from tests.conftest import free_port, wait_for_port

    if not Path("/usr/bin/chromium").exists():
        pytest.skip("/usr/bin/chromium missing: apt-get install -y chromium")
    api = pytest.importorskip("playwright.sync_api")
    t0 = base_time()
    evs = events(t0, n=30)
    fs = FeatureStore(repo)
    fs.push("txns", evs)
    fs.push("txns", [late_event(t0)])
    produce_bad(fs, bad_records(t0)[:1])
    run_once(repo)
    fs.push("txns", events(t0 + 3_600_000, n=4, seed=3))  # 5 records waiting
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from braid.cli import main; main()",
                             "--repo", str(repo), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    errors: list[str] = []
    try:
        wait_for_port(port, timeout=30)
        with api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/#/view/user_txn")
            page.wait_for_selector("#freshness:has-text('stream engine')")
            text = page.text_content("#freshness") or ""
            browser.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert not errors, errors
    group = stream_freshness(fs, "user_txn")["runner_group"]
    assert f"stream engineembedded runner (group {group}, 1 instance)" in text
    newest = from_epoch_ms(max(e["ts"] for e in evs)).isoformat(sep=" ", timespec="milliseconds")
    newest = newest.replace("+00:00", "Z").replace(".000Z", "Z")  # as the page's fmtTime
    assert f"last streamed event{newest} (" in text
    assert "ownership cutoffhop 10m: -inf (the stream owns every tile)" in text
    assert "stream lag5 records (txns: p0 " in text
    assert "dead letters2 (late: 1, malformed_json: 1)" in text
