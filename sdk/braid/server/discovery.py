"""Feature discovery over HTTP: search, views, services, lineage, freshness, statistics.

Every answer is built from the registry (what ``braid apply`` stored), so the page and
``braid features search|describe`` show the same facts:

* ``GET /api/project``: project name and every live definition (kind, name, description).
* ``GET /api/features?q=&tag=&owner=&entity=&limit=``: ranked hits of ``registry.search``.
* ``GET /api/views/{name}``: ``registry.describe`` plus ``freshness`` and ``statistics``.
* ``GET /api/services/{name}``: a service's features (with dtype and scaler), logging.
* ``GET /api/lineage/{name}``: nodes and edges around an object, with layout columns.
* ``GET /api/freshness``: freshness of every view (``stream``: engine, lag, last event time,
  dead letters; see :mod:`braid_streaming.freshness`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query

from braid.errors import close_matches
from braid.server.errors import NotFoundError

if TYPE_CHECKING:
    from braid.registry import DefinitionRecord
    from braid.store import FeatureStore
    from braid_streaming.freshness import FreshnessCache

#: Which kind a bare name resolves to first (as ``braid describe`` does).
LOOKUP_ORDER = ("view", "service", "source", "entity", "label", "training_set")


def discovery_router(fs: FeatureStore) -> APIRouter:
    """The ``/api`` routes over ``fs``'s registry."""
    router = APIRouter(prefix="/api", tags=["discovery"])
    project = fs.project

    @router.get("/project")
    def project_info() -> dict[str, Any]:
        """Project name and every live definition."""
        objects = [{"kind": r.kind, "name": r.name,
                    "description": (r.body or {}).get("description", "")}
                   for r in fs.registry.list_objects(project)]
        return {"project": project, "objects": objects}

    @router.get("/features")
    def search(q: str = "", tag: str | None = None, owner: str | None = None,
               entity: str | None = None,
               limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
        """Ranked search over names, features, columns, tags, descriptions and owners."""
        hits = fs.search(q, tag=tag, owner=owner, entity=entity, limit=limit)
        return {"query": q, "hits": [dataclasses.asdict(h) for h in hits]}

    @router.get("/views/{name}")
    def view(name: str) -> dict[str, Any]:
        """Schema, source, entities, windows, ttl, versions, owner, tags, namespaces,
        coverage, lineage, freshness and the latest statistics per feature."""
        record = _find(fs, name.split(":")[0], "view")
        info = fs.describe(record.name)
        info["freshness"] = freshness(fs, info)
        info["statistics"] = statistics(fs, record)
        return info

    @router.get("/services/{name}")
    def service(name: str) -> dict[str, Any]:
        """A service's features (view, dtype, scaler), logging, versions and lineage."""
        record = _find(fs, name, "service")
        info = fs.describe(record.name)
        body = record.body or {}
        scalers = body.get("scalers") or {}
        dtypes = _dtypes(fs)
        info["features"] = [
            {"ref": ref, "view": ref.split(":")[0], "feature": ref.split(":")[1],
             "dtype": dtypes.get(ref), "scaler": scalers.get(ref)}
            for ref in record.meta.get("references", [])]
        info["views"] = record.meta.get("views", [])
        info["scalers"] = scalers
        info["logging"] = body.get("logging")
        return info

    @router.get("/lineage/{name}")
    def lineage(name: str, kind: str | None = None) -> dict[str, Any]:
        """Sources -> views -> services -> training sets around one object."""
        return lineage_graph(fs, name, kind)

    @router.get("/freshness")
    def all_freshness() -> dict[str, Any]:
        """Freshness of every live view (one read of the log and dead letters for all)."""
        from braid_streaming.freshness import FreshnessCache

        with FreshnessCache(fs) as cache:
            return {r.name: freshness(fs, fs.describe(r.name), cache)
                    for r in fs.registry.list_objects(project, "view")}

    return router


def _find(fs: FeatureStore, name: str, kind: str) -> DefinitionRecord:
    live = fs.registry.list_objects(fs.project)
    for r in live:
        if r.kind == kind and r.name == name:
            return r
    other = next((r for r in live if r.name == name), None)
    if other is not None:
        raise NotFoundError(f"'{name}' is a {other.kind}, not a {kind}; "
                            f"see /api/{other.kind}s/{name}")
    if not live:
        raise NotFoundError(f"the registry of project '{fs.project}' is empty; run "
                            "`braid apply` first")
    names = [r.name for r in live if r.kind == kind]
    raise NotFoundError(f"no {kind} '{name}' in project '{fs.project}'."
                        f"{close_matches(name, names)}")


def freshness(fs: FeatureStore, info: dict[str, Any],
              cache: FreshnessCache | None = None) -> dict[str, Any]:
    """Freshness of a described view's serving namespace.

    ``backfilled`` ranges and their overall ``coverage``, the ownership ``cutoffs`` per hop
    (batch below, stream at or above), the ``materialized`` point and its age. ``stream`` is
    :func:`braid_streaming.freshness.stream_freshness` for a view reading a stream (engine,
    offsets and lag per partition, last streamed event time, dead letters by reason) and
    ``{}`` for a view reading a batch source.
    """
    from braid_streaming.freshness import stream_freshness

    ns = info.get("serving_namespace") or info.get("namespace")
    ranges = [list(r) for r in (info.get("backfilled") or {}).get(ns, [])]
    materialized = (info.get("materialized") or {}).get(ns)
    cutoffs = (info.get("cutoffs") or {}).get(ns) or {}
    now = int(time.time() * 1000)
    return {
        "namespace": ns,
        "backfilled": ranges,
        "coverage": [ranges[0][0], ranges[-1][1]] if ranges else None,
        "cutoffs": {str(h): c for h, c in sorted(cutoffs.items())},
        "materialized": materialized,
        "materialized_age_ms": None if materialized is None else now - materialized,
        "stream": stream_freshness(fs, info["name"], cache),
    }


def statistics(fs: FeatureStore, record: DefinitionRecord) -> dict[str, Any]:
    """The newest statistics snapshot of each feature of a view (None where there is none)."""
    out: dict[str, Any] = {}
    for f in record.meta.get("features", []):
        snap = fs.registry.stats_as_of(fs.project, f"{record.name}:{f['name']}")
        out[f["name"]] = None if snap is None else {
            "start": snap.start, "end": snap.end, "origin": snap.origin,
            "created_at": snap.created_at, "body": snap.body}
    return out


def _dtypes(fs: FeatureStore) -> dict[str, str]:
    return {f"{r.name}:{f['name']}": f.get("dtype")
            for r in fs.registry.list_objects(fs.project, "view")
            for f in r.meta.get("features", [])}


def lineage_graph(fs: FeatureStore, name: str, kind: str | None = None) -> dict[str, Any]:
    """Nodes (with a layout ``column``: longest path from a root) and edges around an object.

    ``name`` may be ``kind:name``; a bare name resolves view, service, source, entity, label,
    training set in that order.
    """
    edges = fs.registry.edges(fs.project)
    if kind is None and ":" in name and name.split(":")[0] in LOOKUP_ORDER:
        kind, name = name.split(":", 1)
    known = {(n.kind, n.name) for e in edges for n in e}
    known |= {(r.kind, r.name) for r in fs.registry.list_objects(fs.project)}
    kinds = [kind] if kind else list(LOOKUP_ORDER)
    focus = next(((k, name) for k in kinds if (k, name) in known), None)
    if focus is None:
        raise NotFoundError(f"nothing named '{name}' in the lineage of project "
                            f"'{fs.project}'.{close_matches(name, {n for _, n in known})}")
    walked = fs.registry.lineage(fs.project, *focus)
    keep = {focus} | {(n.kind, n.name) for side in walked.values() for n in side}
    pairs = [((a.kind, a.name), (b.kind, b.name)) for a, b in edges]
    pairs = [(a, b) for a, b in pairs if a in keep and b in keep]
    column = _columns(keep, pairs)
    nodes = [{"id": f"{k}:{n}", "kind": k, "name": n, "column": column[(k, n)],
              "focus": (k, n) == focus} for k, n in sorted(keep, key=lambda x: (column[x], x))]
    return {"focus": f"{focus[0]}:{focus[1]}", "nodes": nodes,
            "edges": [{"src": f"{a[0]}:{a[1]}", "dst": f"{b[0]}:{b[1]}"} for a, b in pairs]}


def _columns(nodes: set[tuple[str, str]],
             pairs: list[tuple[tuple[str, str], tuple[str, str]]]) -> dict[tuple[str, str], int]:
    column = dict.fromkeys(nodes, 0)
    for _ in range(len(nodes)):  # longest path by relaxation; lineage graphs are acyclic
        changed = False
        for a, b in pairs:
            if column[b] < column[a] + 1:
                column[b] = column[a] + 1
                changed = True
        if not changed:
            break
    # Roots (entities, raw sources) sit just left of their nearest consumer, so an edge does
    # not run behind a column of other nodes.
    for node in nodes:
        if not any(b == node for _, b in pairs):
            after = [column[b] for a, b in pairs if a == node]
            if after:
                column[node] = min(after) - 1
    return column
