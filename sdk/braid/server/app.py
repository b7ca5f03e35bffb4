"""The FastAPI application of ``braid serve``: online features, health, metrics, discovery.

Routes:

* ``POST /get-online-features``: Feast's request and response shapes (:mod:`.online`).
* ``GET /health``: 200 when the online store answers, else 503 with the reason.
* ``GET /metrics``: Prometheus text (:mod:`.metrics`).
* ``GET /api/...``: feature discovery (:mod:`.discovery`); ``GET /`` the web page.

Errors answer ``{"detail": "<one line>", "type": "<error class>"}``: 400 for a body that is
not JSON, 404 for unknown features, services or views (with close matches), 422 for malformed
requests and bad entity keys, 503 when the online store or registry is unreachable. A Redis
outage needs no restart: the next request after Redis returns reconnects.

Example:
    >>> from braid.server import create_app
    >>> app = create_app("feature_repo")        # then: uvicorn, or httpx.ASGITransport(app)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from braid.errors import BraidError
from braid.server.discovery import discovery_router
from braid.server.errors import status_of
from braid.server.hotpath import OnlineFastPath
from braid.server.metrics import Metrics, MetricsMiddleware
from braid.server.online import OnlineEndpoint

if TYPE_CHECKING:
    from braid.store import FeatureStore

STATIC = Path(__file__).parent / "static"

#: Seconds a Redis command or connect may take before the request fails with 503.
REDIS_TIMEOUT_S = 2.0

#: The request body of ``/get-online-features`` for the OpenAPI schema (parsed by hand).
REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["entities"],
    "properties": {
        "features": {"type": "array", "items": {"type": "string"},
                     "description": "References 'view:feature'; or use feature_service."},
        "feature_service": {"type": "string"},
        "entities": {"type": "object", "additionalProperties": {"type": "array", "items": {}},
                     "description": "Join key -> values, all lists of equal length."},
        "full_feature_names": {"type": "boolean", "default": False},
    },
    "example": {"feature_service": "fraud_v1", "entities": {"user_id": [1], "merchant_id": [3]}},
}


def open_store(repo: str | Path) -> FeatureStore:
    """A FeatureStore for serving: Redis calls get socket timeouts unless the URL sets them,
    so a hung Redis fails a request with 503 instead of blocking it forever."""
    from braid.config import load_config
    from braid.store import FeatureStore

    config = load_config(Path(repo))
    online = config.online_store
    if online.type == "redis" and online.url:
        parts = urlsplit(online.url)
        query = dict(parse_qsl(parts.query))
        query.setdefault("socket_timeout", str(REDIS_TIMEOUT_S))
        query.setdefault("socket_connect_timeout", str(REDIS_TIMEOUT_S))
        url = urlunsplit(parts._replace(query=urlencode(query)))
        config = config.model_copy(update={"online_store": online.model_copy(update={"url": url})})
    return FeatureStore(repo, config=config)


def create_app(store: FeatureStore | str | Path, clock: Callable[[], int] | None = None) -> FastAPI:
    """Build the app around a FeatureStore (or a repository path).

    Args:
        store: the store to serve; a path opens it with :func:`open_store`.
        clock: epoch-ms clock for reads (tests pin it); default: the wall clock.
    """
    fs = store if not isinstance(store, (str, Path)) else open_store(store)
    fs.repo  # noqa: B018  (load definitions now: a broken repo fails at start, not per request)
    metrics = Metrics()
    online = OnlineEndpoint(fs, clock)
    # FastAPI's OpenTelemetry bridge checks its providers on every request (~15 us here);
    # braid exports its own Prometheus metrics, so it is off.
    app = FastAPI(title="braid", version=_version(),
                  description="Online features (Feast's HTTP shapes) and feature discovery.",
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.store = fs
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(OnlineFastPath, endpoint=online, metrics=metrics)  # outermost

    @app.exception_handler(BraidError)
    async def braid_error(request: Request, exc: BraidError) -> JSONResponse:
        metrics.error(request.scope, type(exc).__name__)
        return JSONResponse({"detail": str(exc), "type": type(exc).__name__}, status_of(exc))

    @app.post("/get-online-features", tags=["online"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": REQUEST_SCHEMA}}}})
    async def get_online_features(request: Request) -> Response:
        """Feature values for entity rows, in Feast's response shape.

        Served by :class:`~braid.server.hotpath.OnlineFastPath` before routing; this route
        documents it in OpenAPI and answers only if the fast path is bypassed.
        """
        return Response(online.handle(await request.body()), media_type="application/json")

    @app.get("/health", tags=["ops"])
    def health() -> JSONResponse:
        """200 when the online store answers, 503 with the reason when it does not."""
        start = time.perf_counter()
        kind = fs.config.online_store.type
        try:
            fs.online.fetch([("braid:health", ["_"])])
        except BraidError as e:
            metrics.errors.labels("/health", type(e).__name__).inc()
            return JSONResponse({"status": "unavailable", "project": fs.project,
                                 "online_store": {"type": kind, "ok": False, "error": str(e)}},
                                503)
        ms = round((time.perf_counter() - start) * 1000, 3)
        return JSONResponse({"status": "ok", "project": fs.project,
                             "online_store": {"type": kind, "ok": True, "latency_ms": ms}})

    @app.get("/metrics", tags=["ops"])
    def prometheus() -> Response:
        """Request counts, latency histogram and errors, as Prometheus text; plus serving-log
        delivery (drops included) and, in the runner's process, the embedded runner's."""
        raw = metrics.render()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        text += fs.log_metrics()
        import sys

        if "braid_streaming.runner" in sys.modules:
            text += sys.modules["braid_streaming.runner"].runner_metrics()
        return Response(text, media_type=metrics.content_type)

    app.include_router(discovery_router(fs))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` (used by ``braid serve``): repo from BRAID_REPO."""
    return create_app(os.environ.get("BRAID_REPO", "feature_repo"))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("braid")
    except Exception:  # not installed as a distribution (running from the tree)
        return "0"
