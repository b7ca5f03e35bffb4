"""Ranked search over the latest definitions of a project (in Python; fine for thousands).

Rank, best first: exact name > name prefix > name substring > feature names > column names >
tags > description > owner. Views, their features (hits named ``view:feature``), services,
sources, entities and label sources are searched. A multi-word query matches a field when
every word occurs in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from braid.registry.records import DefinitionRecord

#: Score of a match in each field; the ranking contract.
SCORES: dict[str, int] = {
    "name:exact": 100, "name:prefix": 80, "name:substring": 60,
    "feature:exact": 50, "feature:prefix": 45, "feature:substring": 40,
    "column:exact": 35, "column:substring": 30,
    "tag": 25, "description": 15, "owner": 10, "filter": 1,
}
_KIND_ORDER = {"view": 0, "feature": 1, "service": 2, "source": 3, "entity": 4, "label": 5}


@dataclass(frozen=True)
class SearchHit:
    """One result: what matched (``field``, ``matched`` text) and how well (``score``)."""

    kind: str
    name: str
    field: str
    score: int
    matched: str = ""
    description: str = ""


@dataclass(frozen=True)
class _Doc:
    """A searchable thing: a definition or a feature of a view."""

    kind: str
    name: str
    names: tuple[str, ...]  # matched at name rank (a feature's own name for features)
    features: tuple[str, ...]
    columns: tuple[str, ...]
    tags: dict[str, str]
    description: str
    owner: str
    entities: frozenset[str]
    own_labels: bool = True  # False for features: tags and owner are their view's (filters only)


def search(
    records: Iterable[DefinitionRecord],
    text: str,
    tag: str | None = None,
    owner: str | None = None,
    entity: str | None = None,
    limit: int = 20,
) -> list[SearchHit]:
    """Rank ``records`` (latest, live versions) against ``text`` and the filters.

    ``tag`` is ``"key"`` or ``"key=value"``; ``owner`` matches exactly (any case); ``entity``
    keeps views and features of that entity, services using them, and the entity itself.
    An empty ``text`` lists everything that passes the filters (features excluded).
    """
    live = [r for r in records if not r.deleted and r.body is not None]
    view_entities = {r.name: frozenset(r.meta.get("entities", [])) for r in live
                     if r.kind == "view"}
    words = text.lower().split()
    hits = []
    for doc in _docs(live, view_entities):
        if not _passes(doc, tag, owner, entity):
            continue
        if not words:
            if doc.kind != "feature":
                hits.append(SearchHit(doc.kind, doc.name, "filter", SCORES["filter"], "",
                                      doc.description))
            continue
        hit = _best(doc, text.lower().strip(), words)
        if hit is not None:
            hits.append(hit)
    hits.sort(key=lambda h: (-h.score, _KIND_ORDER.get(h.kind, 9), h.name))
    return hits[:limit]


def _docs(live: list[DefinitionRecord], view_entities: dict[str, frozenset[str]]) -> Iterator[_Doc]:
    for r in live:
        body: dict[str, Any] = r.body or {}
        meta = r.meta
        tags = dict(body.get("tags") or {})
        owner, desc = str(body.get("owner") or ""), str(body.get("description") or "")
        columns = list(meta.get("columns") or [])
        features: list[str] = []
        entities: frozenset[str] = frozenset()
        if r.kind == "view":
            columns += list(meta.get("entity_keys") or {})
            features = [f["name"] for f in meta.get("features", [])]
            entities = view_entities.get(r.name, frozenset())
            for f in meta.get("features", []):
                yield _Doc("feature", f"{r.name}:{f['name']}", (), (f["name"],), (), tags,
                           str(f.get("description") or ""), owner, entities, own_labels=False)
        elif r.kind == "service":
            features = list(meta.get("references") or [])
            entities = frozenset().union(*(view_entities.get(v, frozenset())
                                           for v in meta.get("views", [])))
        elif r.kind == "entity":
            entities = frozenset([r.name])
        yield _Doc(r.kind, r.name, (r.name,), tuple(features), tuple(columns), tags, desc,
                   owner, entities)


def _passes(doc: _Doc, tag: str | None, owner: str | None, entity: str | None) -> bool:
    if tag is not None:
        key, _, value = tag.partition("=")
        if key not in doc.tags or (value and doc.tags[key] != value):
            return False
    if owner is not None and doc.owner.lower() != owner.lower():
        return False
    return entity is None or entity in doc.entities


def _best(doc: _Doc, text: str, words: list[str]) -> SearchHit | None:
    for field, score, matched in _matches(doc, text, words):
        return SearchHit(doc.kind, doc.name, field, score, matched, doc.description)
    return None


def _matches(doc: _Doc, text: str, words: list[str]) -> Iterator[tuple[str, int, str]]:
    """Candidate matches, best first (the first one found is the hit)."""
    def contains(value: str) -> bool:
        low = value.lower()
        return all(w in low for w in words)

    for level, values in (("name", doc.names), ("feature", doc.features)):
        field = "name" if level == "name" else "feature"
        for v in values:
            if v.lower() == text:
                yield field, SCORES[f"{level}:exact"], v
        for v in values:
            if v.lower().startswith(text):
                yield field, SCORES[f"{level}:prefix"], v
        for v in values:
            if contains(v):
                yield field, SCORES[f"{level}:substring"], v
    for v in doc.columns:
        if v.lower() == text:
            yield "column", SCORES["column:exact"], v
    for v in doc.columns:
        if contains(v):
            yield "column", SCORES["column:substring"], v
    if not doc.own_labels:
        if doc.description and contains(doc.description):
            yield "description", SCORES["description"], doc.description
        return
    for k, v in doc.tags.items():
        if contains(f"{k}={v}") or contains(f"{k} {v}"):
            yield "tag", SCORES["tag"], f"{k}={v}"
    if doc.description and contains(doc.description):
        yield "description", SCORES["description"], doc.description
    if doc.owner and contains(doc.owner):
        yield "owner", SCORES["owner"], doc.owner
