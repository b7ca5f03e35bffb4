"""Time as braid sees it (DESIGN §4.0): int64 epoch milliseconds, UTC, integer tile arithmetic."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from braid.errors import DefinitionError, TimestampError

MS = 1
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY

#: Candidate default hops, smallest first (DESIGN §4.2).
HOP_CANDIDATES: tuple[int, ...] = (MINUTE, 5 * MINUTE, HOUR, DAY)
#: Largest number of tiles a default hop may give a window.
MAX_TILES_PER_WINDOW = 48

_UNITS = {"ms": MS, "s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY, "w": WEEK}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(value: str | int | dt.timedelta, what: str = "duration") -> int:
    """Convert "10m", "1h", "7d", "250ms", a timedelta or an int of ms to milliseconds.

    >>> parse_duration("1h")
    3600000
    """
    if isinstance(value, bool):
        raise DefinitionError(f"{what}: expected a duration like '1h', got {value!r}")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, dt.timedelta):
        ms = value // dt.timedelta(milliseconds=1)
        if dt.timedelta(milliseconds=ms) != value:
            raise DefinitionError(f"{what}: {value!r} is not a whole number of milliseconds")
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise DefinitionError(
                f"{what}: cannot read {value!r}; write a whole number and a unit "
                "(ms, s, m, h, d, w), e.g. '10m', '1h', '7d'"
            )
        ms = int(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise DefinitionError(f"{what}: expected a duration like '1h', got {type(value).__name__}")
    if ms <= 0:
        raise DefinitionError(f"{what}: must be positive, got {value!r}")
    return ms


def format_duration(ms: int) -> str:
    """Render milliseconds with the largest unit that divides them: 3600000 -> '1h'."""
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", SECOND)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def pmod(a: int, b: int) -> int:
    """Positive modulo, ((a % b) + b) % b, written out so every engine can copy it."""
    return ((a % b) + b) % b


def tile_start(ts: int, hop: int) -> int:
    """Start of the hop-aligned tile holding ``ts``: ts - pmod(ts, hop)."""
    return ts - pmod(ts, hop)


def default_hop(window: int, name: str = "window") -> int:
    """The smallest candidate hop h with window % h == 0 and window / h <= 48 (DESIGN §4.2)."""
    for hop in HOP_CANDIDATES:
        if window % hop == 0 and window // hop <= MAX_TILES_PER_WINDOW:
            return hop
    divisors = [h for h in HOP_CANDIDATES if window % h == 0]
    hint = (
        f"hop='{format_duration(divisors[-1])}' gives {window // divisors[-1]} tiles; "
        if divisors
        else ""
    )
    raise DefinitionError(
        f"{name}: window {format_duration(window)} has no default hop among 1m, 5m, 1h, 1d "
        f"(a hop must divide the window into at most {MAX_TILES_PER_WINDOW} tiles); "
        f"{hint}pass hop= explicitly, or choose a window such as "
        f"{format_duration(_round_window(window))}"
    )


def _round_window(window: int) -> int:
    for hop in HOP_CANDIDATES:
        rounded = -(-window // hop) * hop
        if rounded // hop <= MAX_TILES_PER_WINDOW:
            return rounded
    return -(-window // DAY) * DAY


def to_epoch_ms(value: Any, what: str = "timestamp") -> int:
    """Convert a zone-aware datetime, pandas Timestamp, ISO string or int (epoch ms) to ms.

    Zone-less inputs are refused (DESIGN §4.0).
    """
    if isinstance(value, bool):
        raise TimestampError(f"{what}: expected a timestamp, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as e:
            raise TimestampError(
                f"{what}: cannot parse {value!r}; use ISO 8601 with a zone, "
                "e.g. '2026-01-01T00:00:00Z'"
            ) from e
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise TimestampError(
                f"{what}: {value!r} has no time zone; braid refuses naive times. "
                "Attach one, e.g. datetime(..., tzinfo=timezone.utc) or "
                "series.dt.tz_localize('UTC')"
            )
        delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return delta // dt.timedelta(milliseconds=1)
    raise TimestampError(f"{what}: expected a timestamp, got {type(value).__name__}")


def from_epoch_ms(ms: int) -> dt.datetime:
    """The UTC datetime of an epoch-ms value."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
