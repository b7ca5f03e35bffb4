"""Registry tables (SQLAlchemy Core), portable across SQLite and PostgreSQL.

Definition records are append-only: every version of every definition is kept, a removal is
a tombstone version. Operational state (backfilled ranges, cutoffs, offsets), namespaces,
lineage edges and statistics snapshots live in their own tables, outside the definitions.
JSON is stored as text written by :func:`braid.registry.records.dumps`, so both databases
hold the same bytes and content hashes can be recomputed from them.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: Every version of every definition (kinds: entity, source, view, service, label).
definitions = sa.Table(
    "braid_definitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=True),  # NULL for a tombstone
    sa.Column("meta", sa.Text, nullable=False),  # derived: feature dtypes, columns, references
    sa.Column("plan_hash", sa.String(64), nullable=True),
    sa.Column("namespace", sa.String(300), nullable=True),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("project", "kind", "name", "version", name="uq_braid_definition_version"),
)

#: Lineage: (src_kind, src_name) -> (dst_kind, dst_name).
edges = sa.Table(
    "braid_edges",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("src_kind", sa.String(20), primary_key=True),
    sa.Column("src_name", sa.String(200), primary_key=True),
    sa.Column("dst_kind", sa.String(20), primary_key=True),
    sa.Column("dst_name", sa.String(200), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

#: Storage namespaces of each view (DESIGN §6.5).
namespaces = sa.Table(
    "braid_namespaces",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("view", sa.String(200), primary_key=True),
    sa.Column("namespace", sa.String(300), primary_key=True),
    sa.Column("plan_hash", sa.String(64), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

#: Operational key/value state per project.
state = sa.Table(
    "braid_state",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(500), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

#: Statistics snapshots of features over a data time range.
stats = sa.Table(
    "braid_stats",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("ref", sa.String(400), nullable=False),
    sa.Column("start_ms", sa.BigInteger, nullable=False),
    sa.Column("end_ms", sa.BigInteger, nullable=False),
    sa.Column("origin", sa.String(100), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("ix_braid_stats_ref", "project", "ref", "end_ms"),
)
