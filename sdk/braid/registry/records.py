"""What the registry stores about a definition: canonical body, content hash, derived facts.

The content hash is the sha256 of the canonical JSON of ``model_dump(mode="json")`` (sorted
keys, no whitespace). Derived facts (``meta``) are computed from the repository when a
version is written: feature dtypes from the view's plan, source columns, a service's
resolved references. They serve search and describe and are not part of the hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from braid.definitions import (
    BatchSource,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    LabelSource,
    StreamSource,
    source_schema,
)
from braid.definitions.base import Definition
from braid.repo import Repo
from braid.timeutil import format_duration

#: Kinds in dependency order, with the Repo attribute holding each.
KINDS: dict[str, str] = {
    "entity": "entities",
    "source": "sources",
    "view": "views",
    "service": "services",
    "label": "labels",
}


def dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, compact separators."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(body: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of a definition body."""
    return hashlib.sha256(dumps(body).encode()).hexdigest()


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is a definition kind, else raise a one-line RegistryError."""
    from braid.errors import RegistryError

    if kind not in KINDS:
        raise RegistryError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


@dataclass(frozen=True)
class DefinitionRecord:
    """One stored version of a definition. A tombstone has ``deleted=True`` and no body."""

    project: str
    kind: str
    name: str
    version: int
    content_hash: str
    body: dict[str, Any] | None
    meta: dict[str, Any]
    plan_hash: str | None
    namespace: str | None
    created_at: int
    deleted: bool = False


@dataclass(frozen=True)
class Candidate:
    """A definition of the repository ready to be compared and stored."""

    kind: str
    name: str
    body: dict[str, Any]
    content_hash: str
    meta: dict[str, Any] = field(default_factory=dict)
    plan_hash: str | None = None
    namespace: str | None = None


def candidates(repo: Repo) -> list[Candidate]:
    """Every definition of ``repo`` as a :class:`Candidate`, kinds in dependency order."""
    out = []
    for kind, attr in KINDS.items():
        table: dict[str, Definition] = getattr(repo, attr)
        for name in sorted(table):
            obj = table[name]
            body = obj.model_dump(mode="json")
            plan_hash = namespace = None
            if isinstance(obj, FeatureView):
                plan = repo.plan(name)
                plan_hash, namespace = plan.plan_hash, plan.namespace
            out.append(Candidate(kind, name, body, content_hash(body), _meta(obj, repo),
                                 plan_hash, namespace))
    return out


def _meta(obj: Definition, repo: Repo) -> dict[str, Any]:
    if isinstance(obj, FeatureView):
        return _view_meta(obj, repo)
    if isinstance(obj, FeatureService):
        refs = service_references(obj)
        return {"references": refs, "views": sorted({r.split(":")[0] for r in refs})}
    if isinstance(obj, (BatchSource, StreamSource)):
        schema = source_schema(obj) or {}
        meta: dict[str, Any] = {
            "type": "stream" if isinstance(obj, StreamSource) else "batch",
            "columns": {k: str(v) for k, v in schema.items()},
        }
        if isinstance(obj, StreamSource) and obj.batch is not None:
            meta["batch"] = obj.batch.name
        return meta
    if isinstance(obj, LabelSource):
        return {"source": obj.source.name, "columns": [*obj.join_on, *obj.label_fields]}
    return {"columns": list(getattr(obj, "join_keys", {}))}


def _view_meta(view: FeatureView, repo: Repo) -> dict[str, Any]:
    plan = repo.plan(view.name)
    dtypes = {p.name: str(p.dtype) for p in plan.projections}
    dtypes.update({a.name: str(a.dtype) for a in plan.aggregations})
    features: list[dict[str, Any]] = [
        {"name": f.name, "kind": "projection", "dtype": dtypes.get(f.name, str(f.dtype)),
         "expr": f.expr or f.name, "default": f.default, "description": f.description}
        for f in view.features
    ]
    for a in view.aggregations:
        features.append({
            "name": a.feature_name, "kind": "aggregation", "dtype": dtypes.get(a.feature_name),
            "function": str(a.function), "input": a.expr or a.column,
            "window": format_duration(a.window), "window_ms": a.window,
            "hop": format_duration(a.effective_hop), "hop_ms": a.effective_hop,
            "default": a.default, "description": a.description,
        })
    return {
        "features": features,
        "entities": [e.name for e in view.entities],
        "entity_keys": {k: str(v) for k, v in view.entity_keys.items()},
        "source": view.source.name,
        "columns": [c for c, _ in plan.source.schema],
        "hops_ms": list(plan.hops),
    }


def service_references(service: FeatureService) -> list[str]:
    """A service's "view:feature" references, in order, without checking them."""
    out: list[str] = []
    for item in service.features:
        if isinstance(item, FeatureView):
            out += [f"{item.name}:{f}" for f in item.feature_names]
        elif isinstance(item, FeatureViewProjection):
            out += [f"{item.view.name}:{f}" for f in item.features]
        else:
            out.append(item)
    return list(dict.fromkeys(out))


Edge = tuple[str, str, str, str]


def repo_edges(repo: Repo) -> set[Edge]:
    """Lineage edges implied by the repository: (src_kind, src_name, dst_kind, dst_name)."""
    out: set[Edge] = set()
    for v in repo.views.values():
        out.add(("source", v.source.name, "view", v.name))
        out |= {("entity", e.name, "view", v.name) for e in v.entities}
    for s in repo.services.values():
        out |= {("view", r.split(":")[0], "service", s.name) for r in service_references(s)}
    for label in repo.labels.values():
        out.add(("source", label.source.name, "label", label.name))
    for src in repo.sources.values():
        if isinstance(src, StreamSource) and src.batch is not None:
            out.add(("source", src.batch.name, "source", src.name))
    return out


#: Kinds whose incoming edges are derived from definitions (and replaced on apply).
DERIVED_EDGE_KINDS = ("view", "service", "label", "source")
