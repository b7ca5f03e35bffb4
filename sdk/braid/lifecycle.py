"""Storage namespace lifecycle (DESIGN §6.5): which plan serves, promote, and gc.

A changed view gets a new namespace (a new plan hash) that is backfilled while serving stays
on the old one; ``promote`` switches serving; ``gc`` deletes the offline files and online keys
of namespaces that neither serve nor belong to the repository's current plan.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from braid.definitions import BatchSource, Entity, FeatureView, StreamSource
from braid.errors import BraidError, RegistryError
from braid.plan import ViewPlan, lower
from braid.repo import Repo


def serving_plan(repo: Repo, registry: Any, view: str) -> ViewPlan:
    """The plan reads of ``view`` use: the registry's serving namespace.

    It is the repository's current plan unless the view changed and the new namespace was
    not promoted yet; then the stored definition of the serving namespace is lowered.
    """
    current = repo.plan(view)
    serving = registry.serving_namespace(repo.project, view) if registry is not None else None
    if serving is None or serving == current.namespace:
        return current
    for record in reversed(registry.versions(repo.project, "view", view)):
        if record.namespace == serving and record.body is not None:
            old = view_from_body(record.body)
            plan = lower(old, repo.project)
            if plan.namespace == serving:
                return plan
    raise RegistryError(
        f"view '{view}' serves namespace {serving}, whose definition the registry cannot "
        f"rebuild; run `braid promote {view}` to serve {current.namespace}"
    )


def view_from_body(body: dict[str, Any]) -> FeatureView:
    """Rebuild a FeatureView from its stored JSON (``model_dump(mode="json")``)."""
    data = dict(body)
    data["entities"] = [Entity(**e) for e in data["entities"]]
    data["source"] = _source(data["source"])
    return FeatureView(**data)


def _source(body: dict[str, Any]) -> BatchSource | StreamSource:
    data = dict(body)
    if "schema_" in data:
        data["schema"] = data.pop("schema_")
    if "topic" not in data:
        return BatchSource(**data)
    if data.get("batch") is not None:
        data["batch"] = _source(data["batch"])
    return StreamSource(**data)


def promote(repo: Repo, registry: Any, view: str, namespace: str | None = None,
            force: bool = False) -> tuple[str | None, str]:
    """Serve ``view`` from ``namespace`` (default: the current plan's); returns (old, new).

    Refuses a namespace that was never backfilled (its reads would be empty) unless ``force``.
    """
    target = namespace or repo.plan(view).namespace
    old = registry.serving_namespace(repo.project, view)
    if old == target:
        return old, target
    plan = repo.plan(view)
    if not force and plan.offline and target == plan.namespace \
            and not registry.backfilled_ranges(repo.project, target):
        raise BraidError(
            f"namespace {target} of view '{view}' has no backfilled range; run "
            f"`braid backfill --views {view}` and `braid materialize --views {view}` first "
            "(or pass --force)"
        )
    registry.promote(repo.project, view, target)
    return old, target


@dataclass(frozen=True)
class Removed:
    """One namespace removed by gc."""

    view: str
    namespace: str
    offline_files: int
    online_keys: int


def gc(repo: Repo, registry: Any, online: Any, offline_root: Path,
       dry_run: bool = False) -> list[Removed]:
    """Delete storage of namespaces that neither serve nor match the current plan."""
    out = []
    for view in repo.views:
        current = repo.plan(view).namespace
        for ns in registry.gc_candidates(repo.project, view, current):
            folder = offline_root / repo.project / ns
            files = sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0
            keys = 0
            if not dry_run:
                shutil.rmtree(folder, ignore_errors=True)
                keys = delete_online_namespace(online, repo.project, ns)
                registry.retire(repo.project, view, ns)
            out.append(Removed(view, ns, files, keys))
    return out


def delete_online_namespace(online: Any, project: str, namespace: str) -> int:
    """Remove every key of a namespace from the online store; returns the keys removed."""
    prefix = f"braid:{project}:{namespace}:"
    client = getattr(online, "client", None)
    if client is not None:  # Redis: SCAN + UNLINK in batches, never KEYS
        removed, batch = 0, []
        for key in client.scan_iter(match=prefix.replace("{", "\\{") + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += client.unlink(*batch)
                batch = []
        if batch:
            removed += client.unlink(*batch)
        return int(removed)
    con = sqlite3.connect(online.path, timeout=60)
    try:
        hi = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        with con:
            n = con.execute("SELECT COUNT(DISTINCT key) FROM braid_online WHERE key >= ? "
                            "AND key < ?", (prefix, hi)).fetchone()[0]
            con.execute("DELETE FROM braid_online WHERE key >= ? AND key < ?", (prefix, hi))
            con.execute("DELETE FROM braid_online_expiry WHERE key >= ? AND key < ?",
                        (prefix, hi))
        return int(n)
    finally:
        con.close()
