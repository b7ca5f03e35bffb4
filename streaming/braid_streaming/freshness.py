"""Stream freshness of a view (read-only diagnostic for discovery, DESIGN §6.4, §7).

For the serving namespace of a view reading a StreamSource: which engine writes it, how far it
has read each partition against the log's end, the newest event time it has applied and the
dead letters of its source. Nothing here writes: runner state is read from where the runner
keeps it, offsets from where the writers commit them.

* **Owner.** The registry state ``stream:<namespace>`` (``{"group", "instances"}``, recorded by
  the embedded runner after its first committed batch) means ``engine == "embedded"``; the
  registry state ``sink:<namespace>`` (``{partition: next offset}``, the online writer of the
  Flink path) means ``engine == "flink"``; neither means ``engine is None`` (nothing streamed).
* **Embedded runner.** One state document per instance, key
  ``runner:<project>:<source>:<group>.<i>of<n>``, JSON ``{seq, offsets{p}, max_ts{p},
  intent}`` (:mod:`braid_streaming.runner.state`), stored beside the online state
  (:mod:`braid_streaming.runner.meta`): SQLite table ``braid_runner_meta(key, value)`` in the
  online database file (read here through a read-only connection), Redis string key
  ``braid:_meta:<key>``. Offsets are merged over instances (the highest per partition, should
  a partition appear in two instance counts' documents); the last streamed event time is the
  highest M(p).
* **Flink.** Offsets are those of the tiles topic ``braid.<project>.<view>.tiles`` the writer
  applies; the Flink job's own position and event time live in its checkpoints and are not
  reported (``last_event_ms`` is None).
* **Dead letters.** The project's topic ``braid.<project>.dlq`` is read from its start up to the
  end offsets seen at the start of the read (at most :data:`DLQ_SCAN_CAP` records; ``capped``
  says when the cap was hit). A letter counts for the view when its ``topic`` is the source's;
  letters are counted once per ``(topic, partition, offset)`` (a replay may write one twice).
  One scan serves every view of a call through :class:`FreshnessCache`.

A log that cannot be read (a broker outage) does not fail the call: what could be read is
returned and ``errors`` says what could not. Kafka clients are imported only when
``braid.yaml`` names a broker.

Example:
    >>> with FreshnessCache(store) as cache:
    ...     stream_freshness(store, "user_txn_stats", cache)["lag"]
    0
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from braid.errors import BraidError, StoreError
from braid.timeutil import from_epoch_ms

if TYPE_CHECKING:
    from braid.store import FeatureStore
    from braid_streaming.log.base import Log

#: The most dead letters one call reads.
DLQ_SCAN_CAP = 100_000
#: Seconds a Kafka read of the dead-letter topic may take before it reports what it has.
DLQ_SCAN_TIMEOUT_S = 10.0
_POLL_RECORDS = 10_000


def _iso(ms: int | None) -> str | None:
    return None if ms is None else from_epoch_ms(ms).isoformat().replace("+00:00", "Z")


@dataclass
class DeadLetterCounts:
    """Dead letters per source topic and reason, from one bounded read of the DLQ topic."""

    by_topic: dict[str, Counter[str]] = field(default_factory=dict)
    scanned: int = 0
    capped: bool = False
    error: str | None = None

    def for_topic(self, topic: str) -> dict[str, Any]:
        counts = self.by_topic.get(topic, Counter())
        return {"total": sum(counts.values()), "by_reason": dict(sorted(counts.items())),
                "scanned": self.scanned, "capped": self.capped}


class FreshnessCache:
    """What one freshness call reads once for all its views: the log client, the end
    offsets of each topic and the dead-letter counts. Close it (or use ``with``)."""

    def __init__(self, store: FeatureStore, dlq_cap: int = DLQ_SCAN_CAP,
                 dlq_timeout_s: float = DLQ_SCAN_TIMEOUT_S) -> None:
        self.store = store
        self.dlq_cap = dlq_cap
        self.dlq_timeout_s = dlq_timeout_s
        self._log: Log | None = None
        self._ends: dict[str, dict[int, int]] = {}
        self._dlq: DeadLetterCounts | None = None
        self._meta: dict[str, str | None] = {}

    @property
    def log_kind(self) -> str:
        return "local" if self.store.config.kafka.bootstrap is None else "kafka"

    def log(self) -> Log:
        if self._log is None:
            from braid_streaming.log import open_log

            self._log = open_log(self.store.config.kafka, self.store.config.root)
        return self._log

    def end_offsets(self, topic: str) -> dict[int, int]:
        """End offset per partition (empty when the topic does not exist yet)."""
        if topic not in self._ends:
            log = self.log()
            self._ends[topic] = log.end_offsets(topic) if log.topic_exists(topic) else {}
        return self._ends[topic]

    def dead_letters(self) -> DeadLetterCounts:
        if self._dlq is None:
            self._dlq = self._scan_dlq()
        return self._dlq

    def _scan_dlq(self) -> DeadLetterCounts:
        from braid_streaming.ingest import dlq_topic

        out = DeadLetterCounts()
        topic = dlq_topic(self.store.project)
        try:
            ends = {p: e for p, e in self.end_offsets(topic).items() if e > 0}
            if not ends:
                return out
            log = self.log()
            log.assign(topic, sorted(ends), dict.fromkeys(ends, 0))
            seen: set[tuple[str, int, int]] = set()
            pos = dict.fromkeys(ends, 0)
            deadline = time.monotonic() + self.dlq_timeout_s
            while any(pos[p] < e for p, e in ends.items()):
                if out.scanned >= self.dlq_cap:
                    out.capped = True
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    out.error = (f"read {out.scanned} dead letters of {topic} within "
                                 f"{self.dlq_timeout_s:.0f}s; counts are partial")
                    break
                batch = log.poll(min(_POLL_RECORDS, self.dlq_cap - out.scanned),
                                 timeout=min(left, 1.0))
                for r in batch:
                    if r.topic != topic or r.offset >= ends.get(r.partition, -1):
                        continue
                    pos[r.partition] = max(pos[r.partition], r.offset + 1)
                    out.scanned += 1
                    _count(out, r.value, seen)
        except BraidError as e:
            out.error = f"dead-letter topic {topic}: {e}"
        return out

    def meta(self, keys: list[str]) -> dict[str, str | None]:
        """Runner state documents by key (None where absent), read without writing."""
        missing = [k for k in keys if k not in self._meta]
        if missing:
            self._meta.update(_read_meta(self.store, missing))
        return {k: self._meta.get(k) for k in keys}

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> FreshnessCache:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _count(out: DeadLetterCounts, value: bytes, seen: set[tuple[str, int, int]]) -> None:
    try:
        d = json.loads(value)
        src, reason = str(d.get("topic")), str(d.get("reason") or "unknown")
        place = (src, int(d.get("partition", -1)), int(d.get("offset", -1)))
    except (ValueError, TypeError, AttributeError):
        src, reason, place = "?", "unreadable_letter", ("?", -1, -1)
    if place[2] >= 0:
        if place in seen:
            return
        seen.add(place)
    out.by_topic.setdefault(src, Counter())[reason] += 1


def _read_meta(store: FeatureStore, keys: list[str]) -> dict[str, str | None]:
    cfg = store.config.online_store
    if cfg.type != "redis":
        path = Path(store.config.resolve(cfg.path))
        if not path.exists():
            return dict.fromkeys(keys)
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            marks = ",".join("?" * len(keys))
            rows = con.execute(f"SELECT key, value FROM braid_runner_meta WHERE key IN ({marks})",
                               keys).fetchall()
        except sqlite3.OperationalError:
            rows = []  # no runner ever ran on this store
        finally:
            con.close()
        found = {str(k): str(v) for k, v in rows}
        return {k: found.get(k) for k in keys}
    # Redis (or a store with its own metadata): the layout of braid_streaming.runner.meta,
    # read directly so that importing the runner package (and its metrics) stays the runner's
    online: Any = store.online
    if hasattr(online, "get_meta"):
        return {k: online.get_meta(k) for k in keys}
    client = online.client
    out: dict[str, str | None] = {}
    for k in keys:
        try:
            raw = client.execute_command("GET", "braid:_meta:" + k)
        except Exception as e:  # redis.RedisError, without importing redis here
            raise StoreError(f"redis GET braid:_meta:{k} failed: {e}") from e
        out[k] = None if raw is None else (raw.decode() if isinstance(raw, bytes) else str(raw))
    return out


def _stream_source(store: FeatureStore, view: str) -> tuple[str, dict[str, Any]] | None:
    """(serving namespace, source body) of a live view reading a stream; None otherwise."""
    record = next((r for r in store.registry.list_objects(store.project, "view")
                   if r.name == view), None)
    if record is None:
        raise BraidError(f"no view '{view}' in the registry of project '{store.project}'; "
                         "run `braid apply` first")
    source = (record.body or {}).get("source") or {}
    if not source.get("topic"):
        return None
    ns = store.registry.serving_namespace(store.project, view) or record.namespace
    return ns, source


def stream_freshness(store: FeatureStore, view: str,
                     cache: FreshnessCache | None = None) -> dict[str, Any]:
    """Stream freshness of ``view``'s serving namespace; ``{}`` for a view reading a batch
    source.

    Returns a dict with ``view``, ``namespace``, ``source``, ``topic`` (the source's),
    ``engine`` (``"embedded"``, ``"flink"`` or None: nothing streamed yet), ``runner_group``
    and ``instances`` (embedded: ``{"id", "seq", "in_flight"}`` each, ``in_flight`` being the
    sequence of a batch whose intent is written but not committed), ``offsets_topic`` (the
    topic the offsets are on: the source for the runner, the tiles topic for Flink),
    ``partitions`` (``{"<p>": {"committed", "end", "lag", "last_event_ms"}}``; ``committed``
    and ``lag`` None without an engine), ``lag`` (the sum; None without an engine),
    ``last_event_ms`` / ``last_event_time`` (ISO) / ``last_event_age_ms`` (max M(p)),
    ``dead_letters`` (``{"total", "by_reason", "scanned", "capped"}`` for the source's topic),
    ``log`` (``"local"`` or ``"kafka"``) and ``errors`` (what could not be read).

    Args:
        store: the feature store.
        view: a live view name.
        cache: reads shared by several views of one call (default: a private one).

    Raises:
        BraidError: no live view has that name.
    """
    found = _stream_source(store, view)
    if found is None:
        return {}
    if cache is None:
        with FreshnessCache(store) as own:
            return _freshness(store, view, found, own)
    return _freshness(store, view, found, cache)


def _freshness(store: FeatureStore, view: str, found: tuple[str, dict[str, Any]],
               cache: FreshnessCache) -> dict[str, Any]:
    ns, source = found
    project, reg = store.project, store.registry
    topic, name = str(source["topic"]), str(source.get("name"))
    errors: list[str] = []
    owner = reg.get_state(project, f"stream:{ns}")
    sink = reg.get_state(project, f"sink:{ns}")
    out: dict[str, Any] = {
        "view": view, "namespace": ns, "source": name, "topic": topic, "engine": None,
        "runner_group": None, "instances": [], "offsets_topic": topic, "partitions": {},
        "lag": None, "last_event_ms": None, "last_event_time": None,
        "last_event_age_ms": None, "dead_letters": {}, "log": cache.log_kind,
        "errors": errors,
    }
    committed: dict[int, int] = {}
    max_ts: dict[int, int] = {}
    if owner:
        out["engine"], out["runner_group"] = "embedded", owner.get("group")
        if sink:
            errors.append(f"namespace {ns} has both runner and Flink sink offsets; one "
                          "streaming engine per namespace is expected")
        keys = [f"runner:{project}:{name}:{owner.get('group')}.{tag}"
                for tag in owner.get("instances", [])]
        try:
            docs = cache.meta(keys)
        except BraidError as e:
            errors.append(f"runner state: {e}")
            docs = {}
        for key, raw in docs.items():
            rid = key.rsplit(":", 1)[1]
            if raw is None:
                errors.append(f"runner {rid}: no state document '{key}' in the online store")
                continue
            try:
                doc = json.loads(raw)
                offsets = {int(p): int(o) for p, o in (doc.get("offsets") or {}).items()}
                marks = {int(p): int(m) for p, m in (doc.get("max_ts") or {}).items()}
                intent = doc.get("intent")
                out["instances"].append({"id": rid, "seq": int(doc.get("seq", 0)),
                                         "in_flight": int(intent["seq"]) if intent else None})
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                errors.append(f"runner {rid}: unreadable state document ({e})")
                continue
            for p, o in offsets.items():
                committed[p] = max(o, committed.get(p, o))
            for p, m in marks.items():
                max_ts[p] = max(m, max_ts.get(p, m))
    elif sink:
        out["engine"] = "flink"
        out["offsets_topic"] = f"braid.{project}.{view}.tiles"
        committed = {int(p): int(o) for p, o in sink.items()}
    try:
        ends = cache.end_offsets(out["offsets_topic"])
    except BraidError as e:
        errors.append(f"end offsets of {out['offsets_topic']}: {e}")
        ends = {}
    parts: dict[str, Any] = {}
    for p in sorted(set(ends) | set(committed)):
        c, end = committed.get(p), ends.get(p)
        if out["engine"] == "flink" and c is None:
            c = 0  # the writer reads a tiles topic from its start
        parts[str(p)] = {"committed": c, "end": end,
                         "lag": None if c is None or end is None else max(0, end - c),
                         "last_event_ms": max_ts.get(p)}
    out["partitions"] = parts
    if out["engine"] is not None:
        lags = [v["lag"] for v in parts.values() if v["lag"] is not None]
        out["lag"] = sum(lags) if lags else None
    if max_ts:
        last = max(max_ts.values())
        out["last_event_ms"], out["last_event_time"] = last, _iso(last)
        out["last_event_age_ms"] = int(time.time() * 1000) - last
    dlq = cache.dead_letters()
    out["dead_letters"] = dlq.for_topic(topic)
    if dlq.error:
        errors.append(dlq.error)
    return out


__all__ = ["DLQ_SCAN_CAP", "DeadLetterCounts", "FreshnessCache", "stream_freshness"]
