"""The plan: what ``apply`` would change in the registry, like ``terraform plan``.

Example:
    >>> diff = registry.plan(load_repo("feature_repo"))
    >>> print(diff.render())
    + view user_txn_stats
    ~ view user_profile (description)
    Plan: 1 to add, 1 to change, 0 to remove, 5 unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from braid.registry.records import KINDS, Candidate, DefinitionRecord

Action = Literal["add", "change", "remove", "unchanged"]
_SIGN = {"add": "+", "change": "~", "remove": "-", "unchanged": " "}


@dataclass(frozen=True)
class NamespaceChange:
    """A view whose compiled plan changed: it gets a new storage namespace (DESIGN §6.5).

    ``old`` is the namespace serving now (None for a new view, which serves at once).
    """

    view: str
    old: str | None
    new: str

    @property
    def note(self) -> str:
        if self.old is None:
            return f"new namespace {self.new} serves at once; backfill it"
        return (
            f"namespace {self.old} -> {self.new}: backfill {self.new}, then "
            f"`braid promote {self.view}`; serving stays on {self.old} until then"
        )


@dataclass(frozen=True)
class Change:
    """One definition's fate under ``apply``."""

    kind: str
    name: str
    action: Action
    old_version: int | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanDiff:
    """Added, changed, removed and unchanged definitions per kind, plus namespace changes."""

    project: str
    changes: tuple[Change, ...]
    namespace_changes: tuple[NamespaceChange, ...] = field(default=())

    def _names(self, action: Action) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {k: [] for k in KINDS}
        for c in self.changes:
            if c.action == action:
                out[c.kind].append(c.name)
        return out

    @property
    def added(self) -> dict[str, list[str]]:
        """Names per kind that apply adds (also a re-added, previously removed name)."""
        return self._names("add")

    @property
    def changed(self) -> dict[str, list[str]]:
        return self._names("change")

    @property
    def removed(self) -> dict[str, list[str]]:
        return self._names("remove")

    @property
    def unchanged(self) -> dict[str, list[str]]:
        return self._names("unchanged")

    @property
    def has_changes(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)

    def namespace_change(self, view: str) -> NamespaceChange | None:
        return next((n for n in self.namespace_changes if n.view == view), None)

    def render(self, show_unchanged: bool = False) -> str:
        """Readable text: one line per change, namespace notes indented, a summary line."""
        lines = [f"Registry plan for project '{self.project}':"]
        for c in self.changes:
            if c.action == "unchanged" and not show_unchanged:
                continue
            detail = f" ({', '.join(c.fields)})" if c.fields else ""
            lines.append(f"  {_SIGN[c.action]} {c.kind} {c.name}{detail}")
            ns = self.namespace_change(c.name) if c.kind == "view" else None
            if ns is not None:
                lines.append(f"      {ns.note}")
        if not self.has_changes:
            lines.append("  No changes. The registry matches the repository.")
        counts = {a: sum(1 for c in self.changes if c.action == a) for a in _SIGN}
        lines.append(
            f"Plan: {counts['add']} to add, {counts['change']} to change, "
            f"{counts['remove']} to remove, {counts['unchanged']} unchanged."
        )
        return "\n".join(lines)


def compute_diff(
    project: str,
    candidates: Iterable[Candidate],
    latest: dict[tuple[str, str], DefinitionRecord],
    serving: dict[str, str],
) -> PlanDiff:
    """Compare the repository's candidates with the latest stored versions.

    Args:
        project: the project name.
        candidates: the repository's definitions.
        latest: latest stored version per (kind, name), tombstones included.
        serving: serving namespace per view name.
    """
    changes: list[Change] = []
    ns_changes: list[NamespaceChange] = []
    seen: set[tuple[str, str]] = set()
    for cand in candidates:
        seen.add((cand.kind, cand.name))
        old = latest.get((cand.kind, cand.name))
        if old is None or old.deleted:
            changes.append(Change(cand.kind, cand.name, "add", old.version if old else None))
        elif old.content_hash != cand.content_hash or old.plan_hash != cand.plan_hash:
            fields = _changed_fields(old.body or {}, cand.body)
            if old.plan_hash != cand.plan_hash and not fields:
                fields = ("plan",)  # e.g. a schema inferred from the data changed
            changes.append(Change(cand.kind, cand.name, "change", old.version, fields))
        else:
            changes.append(Change(cand.kind, cand.name, "unchanged", old.version))
            continue
        if cand.kind == "view" and cand.namespace is not None:
            current = serving.get(cand.name)
            if current != cand.namespace:
                ns_changes.append(NamespaceChange(cand.name, current, cand.namespace))
    for (kind, name), old in sorted(latest.items(), key=lambda kv: _order(kv[0])):
        if (kind, name) not in seen and not old.deleted:
            changes.append(Change(kind, name, "remove", old.version))
    changes.sort(key=lambda c: _order((c.kind, c.name)))
    return PlanDiff(project, tuple(changes), tuple(ns_changes))


def _order(key: tuple[str, str]) -> tuple[int, str]:
    return list(KINDS).index(key[0]), key[1]


def _changed_fields(old: dict[str, object], new: dict[str, object]) -> tuple[str, ...]:
    return tuple(sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)))
