"""What a serving-log record holds, and how it is encoded (DESIGN §8).

One record per (request, entity row), JSON on the log topic ``braid.<project>.log.<service>``
(key: the request id, so one request's rows stay in one partition and in order)::

    {"request_id": "9f..", "row": 0, "service": "fraud_v1", "service_version": "<sha256>",
     "served_at": 1767225690000, "scaler_version": null,
     "entities": {"user_id": 7, "merchant_id": 3},
     "values": {"user_txn_stats:amount_sum_1h": 12.5, ...},      # raw, unscaled, as served
     "event_ts": {"user_txn_stats:amount_sum_1h": 1767225690000, ...},
     "status": {"user_txn_stats:amount_sum_1h": "PRESENT", ...}}

Features are keyed by their reference ("view:feature"), so the record does not depend on the
caller's ``full_feature_names``. Columns of the Parquet sink and of training sets use the
short feature name, or ``view__feature`` where two views of the service share a name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from braid.dtypes import DType
from braid.errors import BraidError

if TYPE_CHECKING:
    from braid.repo import Repo

#: Columns every log row has, before the entity keys and features.
META_COLUMNS = ("request_id", "row", "service", "service_version", "served_at",
                "scaler_version")
TS_SUFFIX = "__event_timestamp"
STATUS_SUFFIX = "__status"
_TS = pa.timestamp("ms", tz="UTC")


class LoggingError(BraidError):
    """Serving logs cannot be written or read as asked (bad arguments, missing logs)."""


def log_topic(project: str, service: str) -> str:
    """The log topic of a service: ``braid.<project>.log.<service>``."""
    return f"braid.{project}.log.{service}"


def service_version(body: dict[str, Any]) -> str:
    """The content hash the registry gives a service version (sha256 of canonical JSON)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class LogSchema:
    """Entity keys and features of one service's log, with their types and column names."""

    service: str
    version: str
    keys: tuple[tuple[str, DType], ...]
    refs: tuple[str, ...]
    columns: tuple[str, ...]  # output column per ref
    dtypes: tuple[DType, ...]

    @classmethod
    def for_service(cls, repo: Repo, service: str) -> LogSchema:
        """Resolve a service of ``repo`` (raises UnknownFeatureError for unknown names)."""
        refs = repo.refs(None, service)
        keys: dict[str, DType] = {}
        dtypes: list[DType] = []
        for ref in refs:
            view, name = ref.split(":", 1)
            plan = repo.plan(view)
            for k, t in plan.entity_keys:
                keys.setdefault(k, t)
            found = [p.dtype for p in plan.projections if p.name == name]
            found += [a.dtype for a in plan.aggregations if a.name == name]
            dtypes.append(found[0])
        shorts = [r.split(":", 1)[1] for r in refs]
        columns = [r.replace(":", "__") if shorts.count(s) > 1 else s
                   for r, s in zip(refs, shorts, strict=True)]
        body = repo.services[service].model_dump(mode="json")
        return cls(service, service_version(body), tuple(keys.items()), tuple(refs),
                   tuple(columns), tuple(dtypes))

    def arrow_schema(self) -> pa.Schema:
        """The Parquet sink's schema (``_partition``/``_offset`` name the log record)."""
        fields = [pa.field("request_id", pa.string()), pa.field("row", pa.int32()),
                  pa.field("service", pa.string()), pa.field("service_version", pa.string()),
                  pa.field("served_at", _TS), pa.field("scaler_version", pa.string())]
        fields += [pa.field(k, t.arrow) for k, t in self.keys]
        for col, t in zip(self.columns, self.dtypes, strict=True):
            fields += [pa.field(col, t.arrow), pa.field(col + TS_SUFFIX, _TS),
                       pa.field(col + STATUS_SUFFIX, pa.string())]
        fields += [pa.field("_partition", pa.int32()), pa.field("_offset", pa.int64())]
        return pa.schema(fields)

    def to_table(self, records: list[tuple[int, int, dict[str, Any]]]) -> pa.Table:
        """Decoded records ``(partition, offset, record)`` as an Arrow table of the sink.

        Features the record lacks (an older service version) are NULL.
        """
        cols: dict[str, list[Any]] = {f.name: [] for f in self.arrow_schema()}
        for p, o, r in records:
            for m in META_COLUMNS:
                cols[m].append(r.get(m))
            ents = r.get("entities", {})
            for k, _ in self.keys:
                cols[k].append(ents.get(k))
            vals, ts, st = r.get("values", {}), r.get("event_ts", {}), r.get("status", {})
            for ref, col in zip(self.refs, self.columns, strict=True):
                cols[col].append(vals.get(ref))
                cols[col + TS_SUFFIX].append(ts.get(ref))
                cols[col + STATUS_SUFFIX].append(st.get(ref))
            cols["_partition"].append(p)
            cols["_offset"].append(o)
        arrays = []
        for f in self.arrow_schema():
            values = cols[f.name]
            if pa.types.is_timestamp(f.type):
                arrays.append(pa.array(values, pa.int64()).cast(f.type))
            else:
                arrays.append(pa.array(values, f.type))
        return pa.Table.from_arrays(arrays, schema=self.arrow_schema())
