"""`braid init`: a small, working repository to start from."""

from __future__ import annotations

from pathlib import Path

from braid.errors import RepoError

_CONFIG = """\
project: {project}
registry: sqlite:///data/registry.db
offline_store:
  path: data/offline
online_store:
  type: sqlite          # or: type: redis, url: redis://localhost:6379/0
  path: data/online.db
kafka:
  bootstrap: null       # null: a local log under data/log
"""

_DEFINITIONS = '''\
"""Definitions of the {project} feature repository. Edit, then run `braid plan` and `braid apply`."""

from braid import Aggregation, BatchSource, Entity, Feature, FeatureService, FeatureView

customer = Entity(name="customer", join_keys={{"customer_id": "int64"}})

orders = BatchSource(
    name="orders",
    path="data/orders/*.parquet",
    timestamp_field="ordered_at",
    schema={{"customer_id": "int64", "total": "float64", "ordered_at": "timestamp"}},
)

customer_orders = FeatureView(
    name="customer_orders",
    entities=[customer],
    source=orders,
    features=[Feature(name="total", dtype="float64")],
    aggregations=[
        Aggregation(function="count", window="7d"),
        Aggregation(column="total", function="sum", window="7d"),
    ],
    ttl="30d",
    description="Order activity of a customer.",
)

customer_model = FeatureService(name="customer_model", features=[customer_orders])
'''


def scaffold(path: Path, project: str | None = None) -> list[Path]:
    """Create ``braid.yaml`` and ``definitions.py`` under ``path``; refuse to overwrite."""
    project = project or path.resolve().name.replace("-", "_")
    files = {path / "braid.yaml": _CONFIG.format(project=project),
             path / "definitions.py": _DEFINITIONS.format(project=project)}
    for f in files:
        if f.exists():
            raise RepoError(f"{f} already exists; choose an empty folder")
    (path / "data").mkdir(parents=True, exist_ok=True)
    for f, text in files.items():
        f.write_text(text)
    return list(files)
