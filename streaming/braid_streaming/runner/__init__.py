"""The embedded micro-batch runner (``braid stream run``, DESIGN §7) and ``braid handoff``.

Layout: :mod:`.views` (what runs), :mod:`.source` (one source's exactly-once loop),
:mod:`.apply` (compiled DuckDB SQL -> guarded tile merges), :mod:`.archive` (Parquet twin),
:mod:`.state` / :mod:`.meta` (offsets, M(p), intent), :mod:`.tile_stats` (statistics of
aggregated features at tile closes), :mod:`.metrics`, :mod:`.service`
(the loop over sources, signals, status), :mod:`.handoff` (moving the cutoff C).

Example:
    >>> from braid_streaming.runner import StreamRunner
    >>> StreamRunner(FeatureStore("feature_repo")).run(once=True)
"""

from __future__ import annotations

from braid_streaming.runner.handoff import HandoffReport, handoff
from braid_streaming.runner.metrics import RunnerMetrics, runner_metrics
from braid_streaming.runner.service import StreamRunner
from braid_streaming.runner.source import STREAM_OWNS_ALL, RunnerOptions, SourceRunner
from braid_streaming.runner.state import Intent, RunnerError, RunnerState
from braid_streaming.runner.views import source_key_fields, stream_views

__all__ = [
    "STREAM_OWNS_ALL", "HandoffReport", "Intent", "RunnerError", "RunnerMetrics",
    "RunnerOptions", "RunnerState", "SourceRunner", "StreamRunner", "handoff",
    "runner_metrics", "source_key_fields", "stream_views",
]
