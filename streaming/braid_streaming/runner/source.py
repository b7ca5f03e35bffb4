"""One StreamSource's micro-batch loop with an exactly-once effect (DESIGN §4.4, §6.4, §7).

Per batch: the records polled since the committed offsets form contiguous offset ranges per
partition (the batch *is* its ranges). Then:

1. write the intent ``{seq, ranges, max_ts_before, ingest_time_ms, cutoffs}`` into the runner
   state document (:mod:`~braid_streaming.runner.state`), durably;
2. dead letters to ``braid.<project>.dlq`` (keyed ``topic/partition/offset``), archive files
   named by the ranges, then per view tile deltas in chunks of keys under the per-key guard
   ``_seq:<runner>.<hop>`` and projection rows (last-write-wins);
3. commit ``{seq, offsets, M(p)}`` and clear the intent in one write.

With one instance, the runner keeps its keys' stored tiles in a
:class:`~braid.online.tilecache.TileCache` (it is their only writer), so merges do not read
them back; any failed batch and any moved cutoff clear it. Every step of 2 is idempotent, so a crash anywhere is repaired at start by rebuilding the
intent's batch with ``Log.read_range`` and decoding it with the stored ``max_ts_before`` and
``ingest_time_ms`` (identical decisions), then applying it again: guarded keys are skipped.
Transient store or broker errors retry the same batch with backoff.

Cutoffs: a (namespace, hop) without one is given ``C = STREAM_OWNS_ALL`` (the stream owns
every tile) if nothing was backfilled; if a backfill exists the runner refuses and asks for
``braid handoff``, which decides who owns what. Without committed offsets the runner starts
at the offsets for time ``min(C) - L``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from braid.config import KafkaConfig
from braid.duck import connect
from braid.errors import StoreError
from braid.online import OnlineStore
from braid.online.encoding import key_prefix
from braid.online.tilecache import TileCache
from braid.plan import ViewPlan
from braid.registry import Registry
from braid.stats.stream import apply_stream_delta, stats_delta
from braid.timeutil import tile_start
from braid_streaming.fetcher import Cut, Fetcher, FetcherError, FetchSpec, cut, ranges_of
from braid_streaming.ingest import Decoder, IngestResult, dlq_topic
from braid_streaming.log.base import Log, LogUnavailableError, Record
from braid_streaming.log.local import LocalLog
from braid_streaming.runner.apply import ChunkHook, apply_view
from braid_streaming.runner.archive import archive_dir, write_archive
from braid_streaming.runner.meta import meta_for
from braid_streaming.runner.meta_cache import CachedMeta
from braid_streaming.runner.metrics import RunnerMetrics
from braid_streaming.runner.state import Intent, RunnerError, RunnerState
from braid_streaming.runner.tile_stats import BatchCloser, watermark

#: The cutoff the runner gives a namespace nobody backfilled: the stream owns every tile.
STREAM_OWNS_ALL = -(2**50)

Say = Callable[[str], None]


@dataclass(frozen=True)
class RunnerOptions:
    """Batching, partition share and retry settings of a runner."""

    max_batch: int = 50_000
    max_wait_ms: int = 200
    instance: int = 0
    instances: int = 1
    chunk_keys: int = 5000
    retry_cap_s: float = 5.0
    #: Count aggregated features' tile closes into the stream statistics (tile_stats.py).
    tile_stats: bool = True
    #: Keys whose stored tiles the runner remembers, so merges skip reading them back
    #: (:mod:`braid.online.tilecache`; one instance only; 0: no cache).
    cache_keys: int = 100_000
    #: Read and decode batches ahead in a child process (:mod:`braid_streaming.fetcher`; Kafka logs).
    fetch_process: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.instance < self.instances:
            raise RunnerError(f"--instance {self.instance} is outside 0..{self.instances - 1}")
        if (self.max_batch < 1 or self.max_wait_ms < 0 or self.chunk_keys < 1
                or self.cache_keys < 0):
            raise RunnerError("max_batch and chunk_keys must be >= 1, max_wait_ms and "
                              "cache_keys >= 0")


class SourceRunner:
    """The runner of one source and its views (one instance of ``options.instances``)."""

    def __init__(self, project: str, source: object, plans: list[ViewPlan], log: Log,
                 online: OnlineStore, registry: Registry, root: Path, key_fields: list[str],
                 options: RunnerOptions, hook: ChunkHook | None = None,
                 say: Say | None = None, kafka: KafkaConfig | None = None) -> None:
        from braid.definitions.sources import StreamSource

        assert isinstance(source, StreamSource)
        self.project, self.source, self.plans, self.log = project, source, plans, log
        self.online, self.registry, self.options, self.hook = online, registry, options, hook
        self.say: Say = say or (lambda _: None)
        self.meta = meta_for(online)
        self.decoder = Decoder(source, key_fields)
        self.key_fields = list(key_fields)
        self.archive = archive_dir(source, root)
        names = ",".join(sorted(p.namespace for p in plans))
        self.group = hashlib.sha256(f"{source.name}|{names}".encode()).hexdigest()[:8]
        self.tag = f"{options.instance}of{options.instances}"
        self.runner_id = f"{self.group}.{self.tag}"
        self.state_key = f"runner:{project}:{source.name}:{self.runner_id}"
        self.metrics = RunnerMetrics(self.runner_id, source.name)
        self.state = RunnerState()
        self.partitions: list[int] = []
        self._con = connect(threads=1)  # one thread: float sums identical on replay
        self._owner_known = False
        # One instance writes every owned tile of its namespaces (DESIGN §6.4); several
        # share keys of views not keyed like the log, so only one may trust what it wrote.
        self.cache = (TileCache(options.cache_keys)
                      if options.instances == 1 and options.cache_keys else None)
        self._cache_cutoffs: dict[str, dict[int, int]] | None = None
        # the tile-close sets are this instance's alone too: their reads come from memory
        self.closer_meta = CachedMeta(self.meta)
        # the child that reads and decodes ahead (Kafka logs): its interpreter starts now,
        # start() tells it where to read
        self._kafka = (kafka if options.fetch_process and not isinstance(log, LocalLog)
                       else None)
        self._root = root
        self.fetcher = (Fetcher(self._kafka.client)  # starts the child
                        if self._kafka is not None else None)

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """Create topics, settle cutoffs, refuse unsafe starts, repair an intent, assign."""
        topic, opts = self.source.topic, self.options
        self.log.create_topic(dlq_topic(self.project), 1, compacted=True)
        if not self.log.topic_exists(topic):
            self.log.create_topic(topic, self.source.partitions)
        self.partitions = [p for p in range(self.log.partitions(topic))
                           if p % opts.instances == opts.instance]
        raw = self.meta.get(self.state_key)
        self._check_ownership(fresh=raw is None)
        cutoffs = self._ensure_cutoffs()
        if raw is not None:
            self.state = RunnerState.loads(raw)
            if self.state.intent is not None:
                self._recover(self.state.intent)
        missing = [p for p in self.partitions if p not in self.state.offsets]
        if missing:
            low = min(c for hc in cutoffs.values() for c in hc.values())
            at = self.log.offsets_for_times(topic, max(0, low - self.source.allowed_lateness))
            self.state.offsets.update({p: at[p] for p in missing})
        if self.fetcher is not None:
            self._start_fetcher(self.fetcher)
        else:
            self.log.assign(topic, self.partitions, {p: self.state.offsets[p]
                                                     for p in self.partitions})
        where = " ".join(f"p{p}@{self.state.offsets[p]}" for p in self.partitions)
        self.say(f"runner {self.runner_id}: {topic} [{where}] -> "
                 f"{', '.join(p.name for p in self.plans)}")

    def _start_fetcher(self, fetcher: Fetcher) -> None:
        assert self._kafka is not None
        opts = self.options
        self.fetcher = fetcher
        fetcher.begin(FetchSpec(
            self._kafka, str(self._root), self.source, self.key_fields,
            self.partitions, {p: self.state.offsets[p] for p in self.partitions},
            dict(self.state.max_ts), opts.max_batch, opts.max_wait_ms))

    def _check_ownership(self, fresh: bool) -> None:
        """Refuse when another runner group owns a namespace, or state exists without offsets."""
        for plan in self.plans:
            ns = plan.namespace
            owner = self.registry.get_state(self.project, f"stream:{ns}")
            if owner and owner.get("group") != self.group:
                raise RunnerError(
                    f"view '{plan.name}' (namespace {ns}) is written by runner group "
                    f"{owner.get('group')} (another --views selection); one streaming engine "
                    "per namespace: stop that runner and run the same --views selection")
            if not fresh:
                continue
            lost = bool(owner) and self.tag in owner.get("instances", [])
            unknown = (not owner and self.meta.has_prefix(key_prefix(plan))
                       and self.registry.get_materialized(self.project, ns) is None)
            if lost or unknown:
                why = ("runner offsets are gone" if lost else
                       "it holds state no runner or materialize recorded")
                raise RunnerError(
                    f"view '{plan.name}': the online store has state for namespace {ns} but "
                    f"no offsets for runner {self.runner_id} ({why}); starting would count "
                    "events twice. Fix: point braid.yaml at the store holding the offsets, or "
                    f"delete the keys '{key_prefix(plan)}*' and run braid backfill + "
                    "materialize + handoff")

    def _ensure_cutoffs(self) -> dict[str, dict[int, int]]:
        """Cutoff per namespace and hop; sets ``STREAM_OWNS_ALL`` where none exists."""
        out = self._read_cutoffs()
        for plan in self.plans:
            have = out[plan.namespace]
            for hop in plan.hops:
                if hop in have:
                    continue
                if self.registry.backfilled_ranges(self.project, plan.namespace):
                    raise RunnerError(
                        f"view '{plan.name}' is backfilled but has no cutoff for hop {hop} ms; "
                        f"run `braid handoff --view {plan.name}` so batch and stream each own "
                        "their tiles")
                c = tile_start(STREAM_OWNS_ALL, hop)
                self.registry.set_cutoff(self.project, plan.namespace, hop, c)
                have[hop] = c
                self.say(f"view '{plan.name}' hop {hop} ms had no cutoff and no backfill: "
                         "the stream owns every tile (braid handoff moves that later)")
        return out

    def _read_cutoffs(self) -> dict[str, dict[int, int]]:
        return {p.namespace: self.registry.cutoffs(self.project, p.namespace) for p in self.plans}

    def _recover(self, intent: Intent) -> None:
        """Rebuild an interrupted batch from its ranges and apply it again."""
        records: list[Record] = []
        for p, (lo, hi) in sorted(intent.ranges.items()):
            records += self.log.read_range(self.source.topic, p, lo, hi)
        self.say(f"runner {self.runner_id}: replaying batch {intent.seq} "
                 f"({len(records)} records) left by a crash")
        self.metrics.replays += 1
        self._decode_and_process(intent, records)

    # ------------------------------------------------------------------ batches
    def step(self) -> int:
        """Cut, decode and apply one batch; returns how many records it held (0: idle)."""
        if self.fetcher is not None:
            return self._step_fetched(self.fetcher)
        records = cut(self.log, self.options.max_batch, self.options.max_wait_ms,
                      self._unavailable)
        if not records:
            return 0
        intent = Intent(self.state.seq + 1, ranges_of(records, self.state.offsets),
                        dict(self.state.max_ts), time.time_ns() // 1_000_000,
                        self._read_cutoffs())
        self._decode_and_process(intent, records)
        return len(records)

    def _step_fetched(self, fetcher: Fetcher) -> int:
        """One batch the child cut and decoded (it continues from this batch's end)."""
        try:
            got = fetcher.take(self.options.max_wait_ms / 1000 + 0.05,
                               lambda why: self._unavailable(LogUnavailableError(why)))
        except FetcherError as e:
            if not isinstance(e.__cause__, (EOFError, OSError)):
                raise
            self.metrics.retries += 1  # it died (killed?): start another from our state
            self.say(f"runner {self.runner_id}: {e}; starting it again")
            fetcher.close()
            assert self._kafka is not None
            self._start_fetcher(Fetcher(self._kafka.client))
            return 0
        if got is None:
            return 0
        self._check_cut(got)
        intent = Intent(self.state.seq + 1, got.ranges, got.max_ts_before, got.ingest_time_ms,
                        self._read_cutoffs())
        self._process(intent, got.result, got.records, got.record_ts.tolist())
        return got.records

    def _check_cut(self, got: Cut) -> None:
        """The child continues where the last commit ended (it reads sequentially)."""
        starts = {p: lo for p, (lo, _) in got.ranges.items()}
        if any(self.state.offsets[p] != lo for p, lo in starts.items()) or any(
                self.state.max_ts.get(p) != m for p, m in got.max_ts_before.items()):
            raise RunnerError(f"runner {self.runner_id}: the fetch process cut a batch at "
                              f"{starts} but the runner committed {self.state.offsets}; "
                              "restart the runner")

    def _unavailable(self, e: LogUnavailableError) -> None:
        self.metrics.retries += 1
        self.say(f"runner {self.runner_id}: log unavailable, retrying: {e}")

    def _decode_and_process(self, intent: Intent, records: list[Record]) -> None:
        result = self.decoder.decode(records, intent.max_ts_before, intent.ingest_time_ms)
        self._process(intent, result, len(records), [r.timestamp_ms for r in records])

    def _process(self, intent: Intent, result: IngestResult, n: int,
                 record_ts: Sequence[int]) -> None:
        t0, attempt = time.perf_counter(), 0
        while True:
            try:
                self._apply(intent, result)
                break
            except (StoreError, LogUnavailableError) as e:  # _apply cleared the cache
                attempt += 1
                self.metrics.retries += 1
                wait = min(self.options.retry_cap_s, 0.05 * 2 ** min(attempt, 10))
                self.say(f"runner {self.runner_id}: batch {intent.seq} failed ({e}); "
                         f"retry {attempt} in {wait:.2f}s")
                time.sleep(wait)
        self.metrics.record_batch(n, result.counts, time.perf_counter() - t0)
        self.metrics.record_delays(time.time_ns() // 1_000_000, record_ts)

    def _apply(self, intent: Intent, result: IngestResult) -> None:
        if self.cache is not None and intent.cutoffs != self._cache_cutoffs:
            self.cache.clear()  # `braid handoff` gave batch some tiles: forget them all
            self._cache_cutoffs = intent.cutoffs
        try:
            self._apply_batch(intent, result)
        except BaseException:
            if self.cache is not None:  # what the failed try applied is unknown
                self.cache.clear()
            self.closer_meta.clear()
            raise

    def _apply_batch(self, intent: Intent, result: IngestResult) -> None:
        self.meta.set(self.state_key, replace(self.state, intent=intent).dumps())
        if result.dead_letters:
            self.log.produce(dlq_topic(self.project), [d.to_record() for d in result.dead_letters])
            self.log.flush()
        if self.archive is not None and result.table.num_rows:
            write_archive(self.archive, result.table, intent.ranges)
        on_time = result.on_time
        # tile-close statistics need every partition's M(p): one instance only (tile_stats.py)
        closer = (BatchCloser(self._con, self.closer_meta, self.online, self.registry, self.runner_id,
                              intent.seq, watermark(result.max_ts, self.partitions),
                              intent.cutoffs, self.cache)
                  if self.options.instances == 1 and self.options.tile_stats else None)
        with self.online.batch():  # SQLite: one transaction for the batch's writes
            for plan in self.plans:
                done = apply_view(self._con, self.online, plan, on_time,
                                  intent.cutoffs[plan.namespace], self.runner_id, intent.seq,
                                  self.options.chunk_keys, self.hook, before_merge=closer,
                                  cache=self.cache)
                if done.newest_ts is not None:
                    old = self.metrics.newest_ts.get(plan.name)
                    self.metrics.newest_ts[plan.name] = max(done.newest_ts,
                                                            old or done.newest_ts)
                self._apply_stats(plan, done.projection_rows, intent)
        if closer is not None:
            closer.commit()  # its metadata, after the batch's online writes (tile_stats.py)
        new = self.state.committed(intent, result.max_ts)
        self.meta.set(self.state_key, new.dumps())
        self.state = new
        self._record_owner()

    def _apply_stats(self, plan: ViewPlan, rows: pa.Table | None, intent: Intent) -> None:
        """Running statistics of the batch's owned projection rows (DESIGN §9), before the
        commit: the offset-range guard in each chunk snapshot makes a replay a no-op.

        A projection-only view (no hop, so no cutoff) is skipped: its ownership boundary is
        undefined, and the batch pass over the archive counts its rows."""
        cutoffs = intent.cutoffs.get(plan.namespace, {})
        cutoff = min((cutoffs[h] for h in plan.hops if h in cutoffs), default=None)
        if rows is None or cutoff is None:
            return
        ts = rows.column("_ts")
        if pa.types.is_timestamp(ts.type):
            ts = pc.cast(ts, pa.int64())
        owned = rows.filter(pc.greater_equal(ts, cutoff))  # DESIGN §6.4: batch counts ts < C
        delta = stats_delta(plan, owned)
        if delta:
            apply_stream_delta(self.registry, plan, delta, intent.ranges, cutoff=cutoff)

    def _record_owner(self) -> None:
        """Note in the registry that this instance has written its namespaces (once)."""
        if self._owner_known:
            return
        for plan in self.plans:
            key = f"stream:{plan.namespace}"
            owner = self.registry.get_state(self.project, key) or {"group": self.group,
                                                                  "instances": []}
            if self.tag not in owner["instances"]:
                owner["instances"] = sorted([*owner["instances"], self.tag])
                self.registry.set_state(self.project, key, owner)
        self._owner_known = True

    # ------------------------------------------------------------------ status
    def refresh_lag(self) -> None:
        """Update lag per partition (end offset - committed offset)."""
        try:
            ends = self.log.end_offsets(self.source.topic)
        except LogUnavailableError:
            return
        self.metrics.lag = {p: max(0, ends[p] - self.state.offsets.get(p, 0))
                            for p in self.partitions}

    def caught_up(self, target: dict[int, int]) -> bool:
        """Whether every partition's committed offset reached ``target``."""
        return all(self.state.offsets.get(p, 0) >= target.get(p, 0) for p in self.partitions)

    def close(self) -> None:
        if self.fetcher is not None:
            self.fetcher.close()
        self._con.close()
        self.log.close()
