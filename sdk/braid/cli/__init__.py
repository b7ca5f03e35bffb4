"""The ``braid`` command line."""

from braid.cli.main import main

__all__ = ["main"]
