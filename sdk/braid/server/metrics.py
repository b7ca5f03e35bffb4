"""Prometheus metrics of the server, in a registry of their own (one per app).

Exposed at ``GET /metrics``:

* ``braid_http_requests_total{endpoint, method, status}``
* ``braid_http_request_duration_seconds{endpoint}`` (histogram, sub-millisecond buckets)
* ``braid_http_errors_total{endpoint, type}`` (the error class: ``StoreError``, ...)

``endpoint`` is the route template (``/api/views/{name}``), never the raw path, so label
cardinality stays bounded; unmatched paths count as ``unmatched``.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Latency buckets in seconds: 100 us to 2.5 s (an online read is ~0.1-1 ms).
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
           0.5, 1.0, 2.5)

Scope = MutableMapping[str, Any]


class Metrics:
    """Request counters, a latency histogram and error counters."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("braid_http_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("braid_http_request_duration_seconds",
                                 "HTTP request latency by endpoint", ["endpoint"],
                                 buckets=BUCKETS, registry=self.registry)
        self.errors = Counter("braid_http_errors", "Failed requests by endpoint and error type",
                              ["endpoint", "type"], registry=self.registry)

    def error(self, scope: Scope, kind: str) -> None:
        """Count an error of class ``kind`` on the scope's route."""
        self.errors.labels(route_of(scope), kind).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


def route_of(scope: Scope) -> str:
    """The matched route template of an ASGI scope, or ``unmatched``."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class Recorder:
    """Pre-bound metric children of one endpoint (``labels()`` lookups cost microseconds)."""

    def __init__(self, metrics: Metrics, endpoint: str, method: str) -> None:
        self.metrics = metrics
        self.endpoint, self.method = endpoint, method
        self.latency = metrics.latency.labels(endpoint)
        self.ok = metrics.requests.labels(endpoint, method, "200")

    def done(self, status: int, seconds: float, error: str | None = None) -> None:
        """Record one request."""
        self.latency.observe(seconds)
        if status == 200:
            self.ok.inc()
        else:
            self.metrics.requests.labels(self.endpoint, self.method, str(status)).inc()
        if error is not None:
            self.metrics.errors.labels(self.endpoint, error).inc()


class MetricsMiddleware:
    """A plain ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware) that times
    every HTTP request and counts it by route and status."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            endpoint = route_of(scope)
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            self.metrics.requests.labels(endpoint, scope["method"], str(status[0])).inc()
