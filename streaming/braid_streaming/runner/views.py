"""Which views a runner computes, grouped by their stream source, and the source's key fields.

Example:
    >>> stream_views(repo, ["user_txn_stats"])
    {'transactions': (StreamSource(...), [ViewPlan(...)])}
"""

from __future__ import annotations

from braid.definitions.sources import StreamSource
from braid.errors import UnknownFeatureError, close_matches
from braid.plan import ViewPlan
from braid.repo import Repo
from braid_streaming.runner.state import RunnerError


def source_key_fields(repo: Repo, source_name: str) -> list[str]:
    """The union of the join keys of every view reading ``source_name``, in view-name order.

    ``push`` keys records with these fields and the runner requires them, so both sides agree
    on record keys (and so on partitions) without configuration.
    """
    out: list[str] = []
    for name in sorted(repo.views):
        view = repo.views[name]
        if view.source.name == source_name:
            out += [k for k in view.entity_keys if k not in out]
    return out


def stream_views(repo: Repo, names: list[str] | None = None
                 ) -> dict[str, tuple[StreamSource, list[ViewPlan]]]:
    """Online views whose source is a StreamSource, by source name.

    Args:
        repo: the loaded repository.
        names: views to run (default: every online view reading a stream).

    Raises:
        UnknownFeatureError: a named view does not exist.
        RunnerError: a named view does not read a stream, or none is selected.
    """
    for n in names or []:
        if n not in repo.views:
            raise UnknownFeatureError(f"unknown feature view '{n}'.{close_matches(n, repo.views)}")
    out: dict[str, tuple[StreamSource, list[ViewPlan]]] = {}
    for name in sorted(names or repo.views):
        view = repo.views[name]
        if not isinstance(view.source, StreamSource) or not view.online:
            if names:
                raise RunnerError(f"view '{name}' reads '{view.source.name}', which is not a "
                                  "StreamSource, or is not online; the runner computes online "
                                  "stream views only (use braid materialize for batch views)")
            continue
        out.setdefault(view.source.name, (view.source, []))[1].append(repo.plan(name))
    if not out:
        raise RunnerError("no online view reads a StreamSource; define one with "
                          "source=StreamSource(...) or pass --views")
    return out
