"""The registry (DESIGN §6): versioned definitions, lineage, namespaces, operational state
and statistics snapshots, in SQLite or PostgreSQL through SQLAlchemy Core."""

from braid.registry.diff import Change, NamespaceChange, PlanDiff
from braid.registry.lineage import Node
from braid.registry.namespaces import NamespaceRecord
from braid.registry.records import DefinitionRecord
from braid.registry.search import SearchHit
from braid.registry.state import merge_intervals
from braid.registry.stats import StatsSnapshot
from braid.registry.store import Registry

__all__ = [
    "Change", "DefinitionRecord", "NamespaceChange", "NamespaceRecord", "Node", "PlanDiff",
    "Registry", "SearchHit", "StatsSnapshot", "merge_intervals",
]
