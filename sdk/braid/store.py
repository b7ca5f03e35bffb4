"""The FeatureStore facade: composes the repository, registry, compilers and runtimes.

It holds little logic (STYLE 8): each method delegates to the part that owns the work.

Example:
    >>> store = FeatureStore("feature_repo")
    >>> print(store.plan().render())
    >>> store.apply()
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from braid.config import RepoConfig, load_config
from braid.repo import Repo, load_repo

if TYPE_CHECKING:
    from braid.registry import PlanDiff, Registry


class FeatureStore:
    """A feature repository and the stores it writes.

    Args:
        repo_path: folder holding ``braid.yaml`` and the definition files.
        config: an explicit configuration (default: read ``braid.yaml`` + environment).
    """

    def __init__(self, repo_path: str | Path = "feature_repo", config: RepoConfig | None = None):
        self.root = Path(repo_path)
        self.config = config or load_config(self.root)

    @cached_property
    def repo(self) -> Repo:
        """The loaded definitions (imported once per FeatureStore)."""
        return load_repo(self.root, self.config)

    @property
    def project(self) -> str:
        return self.config.project

    @cached_property
    def registry(self) -> Registry:
        from braid.registry import Registry

        return Registry.from_config(self.config)

    # ------------------------------------------------------------------ definitions
    def plan(self) -> PlanDiff:
        """What ``apply`` would change, without changing it."""
        return self.registry.plan(self.repo)

    def apply(self) -> PlanDiff:
        """Store every new definition version, lineage and storage namespace."""
        return self.registry.apply(self.repo)

    def compile(self, target: str = "all", out: str | Path = "build") -> list[Path]:
        """Write runnable SQL per view and target; returns the files written.

        DuckDB: ``<out>/duckdb/<view>.sql`` (tiles per hop and projection rows over the batch
        source). Flink: ``<out>/flink/<project>.sql`` (one statement set for the project).
        """
        from braid.compile.artifacts import write_artifacts

        return write_artifacts(self.repo, target, Path(out))

    def search(self, text: str, **filters: Any) -> list[Any]:
        """Ranked search over names, features, descriptions, tags, owners and columns."""
        return self.registry.search(self.project, text, **filters)

    def describe(self, name: str) -> dict[str, Any]:
        """Everything known about a view (or other object): schema, versions, lineage."""
        return self.registry.describe(self.project, name)
