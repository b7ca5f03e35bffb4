"""``POST /get-online-features``: Feast's request and response shapes over braid's reader.

Request (Feast's ``GetOnlineFeaturesRequest``)::

    {"features": ["user_txn_stats:amount_sum_1h", ...]} | {"feature_service": "fraud_v1"},
    "entities": {"user_id": [1, 2], ...}, "full_feature_names": false}

Response (Feast's ``convert_response_to_dict`` shape): one result per column, join keys first
(in request order, status PRESENT, event time 0), then each feature::

    {"metadata": {"feature_names": ["user_id", "amount_sum_1h"]},
     "results": [{"values": [1, 2], "statuses": ["PRESENT", "PRESENT"],
                  "event_timestamps": ["1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"]},
                 {"values": [12.5, 0], "statuses": ["PRESENT", "NOT_FOUND"],
                  "event_timestamps": ["2026-11-02T10:15:00.250Z", "1970-01-01T00:00:00Z"]}]}

Event times follow braid's reader: a projection's stored event time, the read time for a
window with data, the epoch (Feast's empty Timestamp) where nothing was found. Values of
``timestamp`` features are RFC 3339 strings too.

The hot path parses with orjson, checks the body by hand (no pydantic), reuses a per-request
shape plan and the facade's cached reader, and serializes with orjson.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from braid.dtypes import DType
from braid.errors import EntityKeyError
from braid.server.errors import RequestError

if TYPE_CHECKING:
    from braid.store import FeatureStore

EPOCH = "1970-01-01T00:00:00Z"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def rfc3339(ms: int | None) -> str:
    """Epoch ms as Feast writes a protobuf Timestamp: ``...:00Z`` or ``...:00.250Z``."""
    if not ms:
        return EPOCH
    seconds, frac = divmod(ms, 1000)
    return f"{_second(seconds)}.{frac:03d}Z" if frac else f"{_second(seconds)}Z"


@dataclass(frozen=True)
class RequestPlan:
    """What a (features | service, full_feature_names) request needs, resolved once."""

    features: list[str] | None
    service: str | None
    full_feature_names: bool
    keys: dict[str, DType]  # join key -> type, across the requested views
    key_views: dict[str, list[str]]  # join key -> views keyed by it (for messages)
    timestamp_slots: tuple[int, ...]  # feature positions whose values are timestamps


def build_plan(store: FeatureStore, features: list[str] | None, service: str | None,
               full_feature_names: bool) -> RequestPlan:
    """Resolve the references (UnknownFeatureError on unknown names) and the needed keys."""
    repo = store.repo
    refs = repo.refs(features, service)
    keys: dict[str, DType] = {}
    key_views: dict[str, list[str]] = {}
    ts_slots = []
    for slot, ref in enumerate(refs):
        view, _, name = ref.partition(":")
        plan = repo.plan(view)
        for key, dtype in plan.entity_keys:
            keys.setdefault(key, dtype)
            if view not in key_views.setdefault(key, []):
                key_views[key].append(view)
        dtypes = {p.name: p.dtype for p in plan.projections}
        dtypes.update({a.name: a.dtype for a in plan.aggregations})
        if dtypes.get(name) == DType.TIMESTAMP:
            ts_slots.append(slot)
    return RequestPlan(features, service, full_feature_names, keys, key_views, tuple(ts_slots))


class OnlineEndpoint:
    """Answers get-online-features bodies with Feast-shaped JSON bytes.

    Args:
        store: the feature store (its reader cache is shared with SDK callers).
        clock: epoch-ms clock (tests pin it).
    """

    def __init__(self, store: FeatureStore, clock: Callable[[], int] | None = None) -> None:
        self.store = store
        self.clock = clock
        self._plans: dict[tuple[Any, ...], RequestPlan] = {}

    def plan(self, features: list[str] | None, service: str | None, full: bool) -> RequestPlan:
        """The cached :class:`RequestPlan` of a request shape."""
        key = (tuple(features) if features is not None else None, service, full)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = build_plan(self.store, features, service, full)
        return plan

    def handle(self, body: bytes) -> bytes:
        """Parse, read and serialize one request body.

        Raises:
            RequestError: malformed body (400/422).
            UnknownFeatureError: unknown view, feature or service.
            EntityKeyError: missing, unknown or mistyped join keys.
            StoreError: the online store is unreachable.
        """
        return orjson.dumps(self.read(*parse_body(body)))

    def read(self, features: list[str] | None, service: str | None, entities: dict[str, Any],
             full: bool = False, log: bool = False, request_id: str | None = None,
             now: int | None = None) -> dict[str, Any]:
        """The Feast-shaped response for entity columns (``{"user_id": [1, 2]}``)."""
        plan = self.plan(features, service, full)
        columns, n = check_entities(entities, plan)
        names = list(columns)
        rows = [dict(zip(names, vals, strict=True))
                for vals in zip(*columns.values(), strict=True)]
        if now is None and self.clock is not None:
            now = self.clock()
        if log and service is None:
            raise RequestError('"log": true needs a "feature_service" (logs belong to a service)')
        result = self.store.get_online_features(rows, features=features, service=service,
                                                now=now, full_feature_names=full, log=log,
                                                request_id=request_id)
        out = result.to_dict()
        statuses = result.statuses()
        times = result.event_timestamps()
        present, epoch = ["PRESENT"] * n, [EPOCH] * n
        results: list[dict[str, Any]] = [
            {"values": columns[k], "statuses": present, "event_timestamps": epoch} for k in names]
        for slot, name in enumerate(result.feature_names):
            values = out[name]
            if slot in plan.timestamp_slots:
                values = [None if v is None else rfc3339(v) for v in values]
            results.append({"values": values, "statuses": statuses[name],
                            "event_timestamps": [rfc3339(t) for t in times[name]]})
        names += result.feature_names
        response: dict[str, Any] = {"metadata": {"feature_names": names}, "results": results}
        if log:
            response["metadata"]["request_ids"] = list(result.request_ids)  # type: ignore[union-attr]
        return response


def parse_body(body: bytes) -> tuple[list[str] | None, str | None, dict[str, Any], bool, bool,
                                     str | None]:
    """Check the body's structure: (features, feature_service, entities, full_feature_names,
    log, request_id). ``"log": true`` records the served values for log-and-wait training."""
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RequestError(f"request body is not valid JSON: {e}", 400) from None
    if not isinstance(req, dict):
        raise RequestError(f"request body must be a JSON object, got {_kind(req)}")
    features = req.get("features") or None  # Feast sends [] beside a feature_service
    service = req.get("feature_service")
    if (features is None) == (service is None):
        raise RequestError('pass exactly one of "features": ["view:feature", ...] or '
                           '"feature_service": "name"')
    if features is not None and (not isinstance(features, list)
                                 or not all(isinstance(f, str) for f in features)):
        raise RequestError('"features" must be a list of "view:feature" strings')
    if service is not None and not isinstance(service, str):
        raise RequestError(f'"feature_service" must be a string, got {_kind(service)}')
    entities = req.get("entities")
    if not isinstance(entities, dict) or not entities:
        raise RequestError('"entities" must be a non-empty object of join key -> list of '
                           'values, e.g. {"user_id": [1, 2]}')
    full = req.get("full_feature_names", False)
    if not isinstance(full, bool):
        raise RequestError(f'"full_feature_names" must be true or false, got {_kind(full)}')
    log = req.get("log", False)
    if not isinstance(log, bool):
        raise RequestError(f'"log" must be true or false, got {_kind(log)}')
    request_id = req.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError(f'"request_id" must be a string, got {_kind(request_id)}')
    return features, service, entities, full, log, request_id


def check_entities(entities: dict[str, Any], plan: RequestPlan) -> tuple[dict[str, list[Any]],
                                                                        int]:
    """Check names, lengths and types of the entity columns; returns them and the row count.

    Only the join keys the plan needs are kept, in request order.
    """
    missing = [k for k in plan.keys if k not in entities]
    if missing:
        needs = "; ".join(f"'{k}' (for {', '.join(plan.key_views[k])})" for k in missing)
        raise EntityKeyError(f"entities lack join key {needs}; got: {', '.join(entities)}")
    unknown = [k for k in entities if k not in plan.keys]
    if unknown:
        raise EntityKeyError(
            f"entities has {', '.join(repr(k) for k in unknown)}, which no requested view is "
            f"keyed by; expected: {', '.join(plan.keys)}")
    lengths = {}
    for key, values in entities.items():
        if not isinstance(values, list):
            raise EntityKeyError(f"entities['{key}'] must be a list of values, got "
                                 f"{_kind(values)}")
        lengths[key] = len(values)
        dtype = plan.keys[key]
        want: type = int if dtype == DType.INT64 else str
        for i, v in enumerate(values):
            if type(v) is not want or (type(v) is int and not INT64_MIN <= v <= INT64_MAX):
                raise EntityKeyError(
                    f"entities['{key}'][{i}] must be {dtype} (JSON "
                    f"{'integer' if want is int else 'string'}), got {_kind(v)} "
                    f"{orjson.dumps(v).decode()}")
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise EntityKeyError(f"entities lists must have equal lengths: {sizes}")
    return entities, next(iter(lengths.values()))


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number",
            bool: "boolean", type(None): "null"}.get(type(value), type(value).__name__)
