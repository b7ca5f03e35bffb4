"""Time is integer epoch milliseconds; tiles use positive-modulo arithmetic (DESIGN §4.0)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from braid.errors import DefinitionError, TimestampError
from braid.timeutil import default_hop, parse_duration, pmod, tile_start, to_epoch_ms


def test_pmod_and_tile_start_on_negative_times() -> None:
    assert pmod(-1500, 1000) == 500
    assert tile_start(-1500, 1000) == -2000
    assert tile_start(-1000, 1000) == -1000
    assert tile_start(0, 1000) == 0
    assert tile_start(999, 1000) == 0
    assert tile_start(1000, 1000) == 1000


def test_durations() -> None:
    assert parse_duration("250ms") == 250
    assert parse_duration("10m") == 600_000
    assert parse_duration(dt.timedelta(days=7)) == 7 * 86_400_000
    for bad in ("", "1.5h", "-1h", "0m", "h"):
        with pytest.raises(DefinitionError):
            parse_duration(bad)


def test_default_hop_rule() -> None:
    assert default_hop(600_000) == 60_000            # 10m -> 1m (10 tiles)
    assert default_hop(3_600_000) == 300_000         # 1h -> 5m (1m would give 60 > 48)
    assert default_hop(48 * 60_000) == 60_000        # 48 tiles is allowed
    assert default_hop(2 * 86_400_000) == 3_600_000  # 2d -> 1h (48 tiles)
    with pytest.raises(DefinitionError, match="hop='1m' gives 49 tiles"):
        default_hop(49 * 60_000)                      # 49m: 1m gives 49, 5m does not divide
    with pytest.raises(DefinitionError, match="no default hop"):
        default_hop(7 * 60_000 + 1)


def test_to_epoch_ms_refuses_naive_times() -> None:
    aware = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert to_epoch_ms(aware) == 1_767_225_600_000
    assert to_epoch_ms(pd.Timestamp("2026-01-01T00:00:00Z")) == 1_767_225_600_000
    assert to_epoch_ms("2026-01-01T01:00:00+01:00") == 1_767_225_600_000
    assert to_epoch_ms(dt.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC)) == -1
    with pytest.raises(TimestampError, match="tz_localize"):
        to_epoch_ms(dt.datetime(2026, 1, 1))
    with pytest.raises(TimestampError, match="no time zone"):
        to_epoch_ms("2026-01-01T00:00:00")
