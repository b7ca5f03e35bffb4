"""Discovering a feature repository: ``braid.yaml`` plus the definitions in its Python files.

Every ``*.py`` file under the root (except ``data/``, hidden folders and ``__pycache__``) is
imported; module-level definitions are collected, and entities and sources nested in views
are collected too. A file that fails to import is an error, never skipped.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from braid.config import RepoConfig, load_config
from braid.definitions import (
    BatchSource,
    Entity,
    FeatureService,
    FeatureView,
    LabelSource,
    StreamSource,
    source_schema,
)
from braid.definitions.base import Definition
from braid.definitions.service import resolve_reference
from braid.dtypes import DType
from braid.errors import RepoError, UnknownFeatureError, close_matches
from braid.plan import ViewPlan, lower

_SKIP_DIRS = {"data", "__pycache__", "build", "node_modules"}


@dataclass
class Repo:
    """All definitions of a repository, by kind and name."""

    config: RepoConfig
    entities: dict[str, Entity] = field(default_factory=dict)
    sources: dict[str, BatchSource | StreamSource] = field(default_factory=dict)
    views: dict[str, FeatureView] = field(default_factory=dict)
    services: dict[str, FeatureService] = field(default_factory=dict)
    labels: dict[str, LabelSource] = field(default_factory=dict)
    origins: dict[tuple[str, str], str] = field(default_factory=dict)
    _plans: dict[str, ViewPlan] = field(default_factory=dict)

    @property
    def project(self) -> str:
        return self.config.project

    def objects(self) -> list[Definition]:
        """Every definition, kinds in dependency order."""
        return [*self.entities.values(), *self.sources.values(), *self.views.values(),
                *self.services.values(), *self.labels.values()]

    def view(self, name: str) -> FeatureView:
        if name not in self.views:
            raise UnknownFeatureError(
                f"unknown feature view '{name}'.{close_matches(name, self.views)}"
            )
        return self.views[name]

    def plan(self, name: str) -> ViewPlan:
        """The lowered plan of a view (schemas inferred from data where not declared)."""
        if name not in self._plans:
            view = self.view(name)
            schema = source_schema(view.source) or self.infer_schema(view)
            self._plans[name] = lower(view, self.project, schema)
        return self._plans[name]

    def plans(self) -> list[ViewPlan]:
        return [self.plan(n) for n in self.views]

    def refs(self, features: list[str] | None = None, service: str | None = None) -> list[str]:
        """Resolve a request's features ("view:feature" list, or a service name) and check them.

        Raises:
            UnknownFeatureError: an unknown view, feature or service, with close matches.
        """
        if (features is None) == (service is None):
            raise UnknownFeatureError("pass exactly one of features=[...] or service=...")
        if service is not None:
            if service not in self.services:
                raise UnknownFeatureError(
                    f"unknown feature service '{service}'.{close_matches(service, self.services)}"
                )
            return self.services[service].references(self.views)
        assert features is not None
        if isinstance(features, str):
            features = [features]
        for ref in features:
            resolve_reference(ref, self.views)
        return list(dict.fromkeys(features))

    def infer_schema(self, view: FeatureView) -> dict[str, DType]:
        """Read the column types of a view's batch source from its data with DuckDB."""
        from braid.duck import connect, describe_source

        src = view.batch_source
        if src is None:
            raise RepoError(f"view '{view.name}': source '{view.source.name}' has no schema")
        with connect() as con:
            return describe_source(con, src, self.config.resolve("."))


def load_repo(root: str | Path, config: RepoConfig | None = None) -> Repo:
    """Load ``root/braid.yaml`` and every definition in ``root``'s Python files.

    Raises:
        RepoError: on a missing config, a file that fails to import, or two different
            definitions with the same kind and name.
    """
    root = Path(root)
    repo = Repo(config=config or load_config(root))
    _forget_modules(root)  # a previous load (another repo, same module names) must not leak
    try:
        for path in sorted(_python_files(root)):
            module = _import(path, repo.project)
            for value in vars(module).values():
                _collect(repo, value, path)
    finally:
        _forget_modules(root)
    return repo


def _forget_modules(root: Path) -> None:
    top = str(root.resolve())
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and str(Path(file).resolve()).startswith(top + "/"):
            del sys.modules[name]


def _python_files(root: Path) -> list[Path]:
    out = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).parts
        if any(p in _SKIP_DIRS or p.startswith(".") for p in rel[:-1]):
            continue
        out.append(path)
    return out


def _import(path: Path, project: str) -> Any:
    name = f"braid_repo_{project}_{'_'.join(path.with_suffix('').parts[-3:])}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RepoError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent = str(path.parent)
    added = parent not in sys.path
    if added:
        sys.path.insert(0, parent)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        tb = traceback.extract_tb(e.__traceback__)
        line = next((f.lineno for f in reversed(tb) if f.filename == str(path)), None)
        at = f":{line}" if line else ""
        raise RepoError(f"{path}{at}: failed to import: {type(e).__name__}: {e}") from e
    finally:
        if added:
            sys.path.remove(parent)
    return module


_BUCKETS: dict[type, str] = {
    Entity: "entities", BatchSource: "sources", StreamSource: "sources",
    FeatureView: "views", FeatureService: "services", LabelSource: "labels",
}


def _collect(repo: Repo, value: Any, path: Path) -> None:
    bucket = _BUCKETS.get(type(value))
    if bucket is None:
        return
    table: dict[str, Any] = getattr(repo, bucket)
    existing = table.get(value.name)
    if existing is not None and existing != value:
        where = repo.origins.get((bucket, value.name), "?")
        raise RepoError(
            f"{path}: {type(value).__name__} '{value.name}' is defined twice with different "
            f"content (also in {where}); rename one"
        )
    table[value.name] = value
    repo.origins.setdefault((bucket, value.name), str(path))
    if isinstance(value, FeatureView):
        for e in value.entities:
            _collect(repo, e, path)
        _collect(repo, value.source, path)
    elif isinstance(value, StreamSource) and value.batch is not None:
        _collect(repo, value.batch, path)
    elif isinstance(value, LabelSource):
        _collect(repo, value.source, path)
