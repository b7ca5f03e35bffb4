"""braid's HTTP server (``braid serve``): online features in Feast's shapes, health, metrics,
feature discovery endpoints and a web page. Needs the ``server`` extra (FastAPI, uvicorn).

``import braid.server`` does not import FastAPI; :func:`create_app` does.

Example:
    >>> from braid.server import create_app
    >>> app = create_app("feature_repo")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from braid.server.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from braid.server.app import create_app

        return create_app
    raise AttributeError(name)
