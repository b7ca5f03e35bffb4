"""Repository configuration: ``braid.yaml`` plus environment overrides (DESIGN §10).

Example ``feature_repo/braid.yaml``::

    project: fraud
    registry: sqlite:///data/registry.db
    offline_store: {path: data/offline}
    online_store: {type: sqlite, path: data/online.db}   # or {type: redis, url: redis://...}
                                                         # (redis+cluster://host:port: a cluster)
    kafka: {bootstrap: null}                             # null: the local log under data/log
    flink: {mode: local}

Environment variables win over the file: BRAID_REGISTRY_URL, BRAID_OFFLINE_PATH,
BRAID_ONLINE_PATH, BRAID_REDIS_URL (switches the online store to Redis),
BRAID_KAFKA_BOOTSTRAP, BRAID_FLINK_REMOTE (host:port).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from braid.errors import RepoError

CONFIG_FILE = "braid.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OfflineStoreConfig(_Section):
    path: str = "data/offline"


class OnlineStoreConfig(_Section):
    type: Literal["sqlite", "redis"] = "sqlite"
    path: str = "data/online.db"
    url: str | None = None


class KafkaConfig(_Section):
    bootstrap: str | None = None
    client: Literal["confluent", "kafka-python"] = "confluent"
    local_log_path: str = "data/log"


class FlinkConfig(_Section):
    mode: Literal["local", "remote"] = "local"
    remote: str | None = None
    parallelism: int = 1
    checkpoint_interval_ms: int = 1000
    state_dir: str = "data/flink"


class RepoConfig(_Section):
    """The parsed ``braid.yaml``; relative paths are resolved against ``root``."""

    project: str
    root: str = "."
    registry: str = "sqlite:///data/registry.db"
    offline_store: OfflineStoreConfig = OfflineStoreConfig()
    online_store: OnlineStoreConfig = OnlineStoreConfig()
    kafka: KafkaConfig = KafkaConfig()
    flink: FlinkConfig = FlinkConfig()

    def resolve(self, path: str) -> Path:
        """``path`` made absolute against the repository root."""
        p = Path(path)
        return p if p.is_absolute() else Path(self.root) / p

    @property
    def registry_url(self) -> str:
        """The SQLAlchemy URL with a relative ``sqlite:///`` path resolved against the root."""
        prefix = "sqlite:///"
        if self.registry.startswith(prefix) and not self.registry.startswith(prefix + "/"):
            rel = self.registry[len(prefix):]
            if rel != ":memory:":
                return prefix + str(self.resolve(rel).absolute())
        return self.registry


_ENV: dict[str, tuple[str, ...]] = {
    "BRAID_REGISTRY_URL": ("registry",),
    "BRAID_OFFLINE_PATH": ("offline_store", "path"),
    "BRAID_ONLINE_PATH": ("online_store", "path"),
    "BRAID_REDIS_URL": ("online_store", "url"),
    "BRAID_KAFKA_BOOTSTRAP": ("kafka", "bootstrap"),
    "BRAID_FLINK_REMOTE": ("flink", "remote"),
}


def load_config(root: str | Path, env: dict[str, str] | None = None) -> RepoConfig:
    """Read ``root/braid.yaml`` and apply environment overrides.

    Raises:
        RepoError: the file is missing, not YAML, or has unknown or mistyped keys.
    """
    root = Path(root)
    env = dict(os.environ) if env is None else env
    path = root / CONFIG_FILE
    if not path.is_file():
        raise RepoError(f"{path}: not found; run `braid init {root}` to create a repository")
    try:
        raw: Any = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RepoError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(raw, dict):
        raise RepoError(f"{path}: expected a mapping at the top level")
    for var, keys in _ENV.items():
        if env.get(var):
            node = raw
            for k in keys[:-1]:
                if not isinstance(node.get(k), dict):
                    node[k] = {}
                node = node[k]
            node[keys[-1]] = env[var]
    if env.get("BRAID_REDIS_URL"):
        raw["online_store"]["type"] = "redis"
    if env.get("BRAID_FLINK_REMOTE"):
        raw["flink"]["mode"] = "remote"
    raw["root"] = str(root.absolute())
    try:
        return RepoConfig(**raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RepoError(f"{path}: '{where}': {first['msg']}") from None
