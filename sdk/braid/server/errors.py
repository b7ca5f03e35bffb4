"""HTTP errors: the status of every braid error and the one-line JSON body they answer.

Body: ``{"detail": "<what, where, how to fix>", "type": "<error class>"}``.
"""

from __future__ import annotations

import orjson

from braid.errors import (
    BraidError,
    EntityKeyError,
    RegistryError,
    StoreError,
    TimestampError,
    UnknownFeatureError,
)


class RequestError(BraidError):
    """The request body is malformed (HTTP 400 for bad JSON, else 422)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class NotFoundError(BraidError):
    """No live definition of that kind and name (HTTP 404)."""


#: HTTP status per error class (the first match in MRO order wins; others: 500).
STATUS: dict[type[BaseException], int] = {
    UnknownFeatureError: 404, NotFoundError: 404, EntityKeyError: 422, TimestampError: 422,
    StoreError: 503, RegistryError: 503, BraidError: 400,
}


def status_of(exc: BaseException) -> int:
    """The HTTP status answering ``exc``."""
    if isinstance(exc, RequestError):
        return exc.status
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(exc: BaseException) -> bytes:
    """The JSON body of an error answer."""
    return orjson.dumps({"detail": str(exc), "type": type(exc).__name__})
