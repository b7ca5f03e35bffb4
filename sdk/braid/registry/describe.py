"""``describe``: one dict with everything the registry knows about a view (or other object)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from braid.errors import RegistryError, close_matches
from braid.registry.records import KINDS, DefinitionRecord

if TYPE_CHECKING:
    from braid.registry.store import Registry

#: Which kind a bare name resolves to first.
_LOOKUP_ORDER = ("view", "service", "source", "entity", "label")


def describe(registry: Registry, project: str, name: str) -> dict[str, Any]:
    """Describe the live definition called ``name`` (a "view:feature" describes its view).

    Raises:
        RegistryError: nothing live has that name.
    """
    name = name.split(":")[0]
    live = registry.list_objects(project)
    record = next((r for kind in _LOOKUP_ORDER for r in live
                   if r.kind == kind and r.name == name), None)
    if record is None:
        raise RegistryError(
            f"nothing named '{name}' in project '{project}'."
            f"{close_matches(name, {r.name for r in live})}"
        )
    out = _common(registry, record)
    if record.kind == "view":
        out.update(_view(registry, record))
    else:
        out["definition"] = record.body
        out.update({k: v for k, v in record.meta.items() if k not in out})
    return out


def _common(registry: Registry, r: DefinitionRecord) -> dict[str, Any]:
    body = r.body or {}
    lineage = registry.lineage(r.project, r.kind, r.name)
    return {
        "kind": r.kind,
        "name": r.name,
        "project": r.project,
        "version": r.version,
        "content_hash": r.content_hash,
        "created_at": r.created_at,
        "description": body.get("description", ""),
        "owner": body.get("owner", ""),
        "tags": body.get("tags", {}),
        "versions": [
            {"version": v.version, "content_hash": v.content_hash, "created_at": v.created_at,
             "deleted": v.deleted, "plan_hash": v.plan_hash}
            for v in registry.versions(r.project, r.kind, r.name)
        ],
        "lineage": {side: [str(n) for n in nodes] for side, nodes in lineage.items()},
    }


def _view(registry: Registry, r: DefinitionRecord) -> dict[str, Any]:
    body, meta, project = r.body or {}, r.meta, r.project
    namespaces = registry.namespaces(project, r.name)
    features = meta.get("features", [])
    source = body.get("source", {})
    return {
        "entities": [{"name": e["name"], "join_keys": e["join_keys"]}
                     for e in body.get("entities", [])],
        "entity_keys": meta.get("entity_keys", {}),
        "source": {"name": source.get("name"), "topic": source.get("topic"),
                   "path": source.get("path"), "query": source.get("query"),
                   "timestamp_field": source.get("timestamp_field")},
        "filter": body.get("filter"),
        "ttl_ms": body.get("ttl"),
        "online": body.get("online"),
        "offline": body.get("offline"),
        "features": [f for f in features if f["kind"] == "projection"],
        "aggregations": [f for f in features if f["kind"] == "aggregation"],
        "schema": {f["name"]: f["dtype"] for f in features},
        "plan_hash": r.plan_hash,
        "namespace": r.namespace,
        "serving_namespace": next((n.namespace for n in namespaces if n.state == "serving"),
                                  None),
        "namespaces": [asdict(n) for n in namespaces],
        "backfilled": {n.namespace: registry.backfilled_ranges(project, n.namespace)
                       for n in namespaces},
        "cutoffs": {n.namespace: registry.cutoffs(project, n.namespace) for n in namespaces},
        "materialized": {n.namespace: registry.get_materialized(project, n.namespace)
                         for n in namespaces},
    }


__all__ = ["KINDS", "describe"]
