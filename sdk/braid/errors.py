"""Typed errors. Every message is one line: what went wrong, where, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BraidError(Exception):
    """Base class of every error braid raises on purpose."""


class DefinitionError(BraidError):
    """A definition (entity, source, view, service, label source) is malformed."""


class ExpressionError(DefinitionError):
    """A SQL expression or filter is outside braid's portable subset or mistyped."""


class RepoError(BraidError):
    """The feature repository (folder, braid.yaml, Python files) cannot be loaded."""


class UnknownFeatureError(BraidError):
    """A feature reference names a view or feature that does not exist."""


class EntityKeyError(BraidError):
    """Entity keys are missing or of the wrong type."""


class TimestampError(BraidError):
    """A timestamp is zone-less or cannot be converted to epoch milliseconds."""


class RegistryError(BraidError):
    """The registry is unreachable or holds something unexpected."""


class StoreError(BraidError):
    """An offline or online store operation failed."""


class CoverageError(StoreError):
    """A request needs offline data for times that were never backfilled."""


def close_matches(word: str, candidates: Iterable[str]) -> str:
    """Return ' Did you mean: a, b?' for the closest candidates, or ''."""
    found = difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(found)}?" if found else ""
