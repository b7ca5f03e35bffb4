"""The adversarial event log of ``braid verify parity`` (DESIGN §7 "Parity as a product
command"): one view with every function at two hops, and a seeded log over a fixed number of
partitions holding out-of-order and late events, duplicate timestamps, cancellation
(``[1e16, 1, -1e16, 3]``) and large-offset (``1e9 + N(0, 1)``) values and NULLs.

Event times are written as epoch ms, and every fifth event as ISO-8601 with a zone (offsets
``Z``, ``+02:00``, ``-05:30``, ``+0545``, a space separator, microseconds that floor to the
ms); one record in the middle of partition 0 has a zoneless time, which every streaming
engine dead-letters as ``naive_timestamp``.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass
from typing import Any

from braid.definitions import Aggregation, Entity, FeatureView, StreamSource
from braid.plan import ViewPlan, lower
from braid.timeutil import MINUTE

T0 = 1_699_999_200_000  # a whole hour
LATENESS = 10 * MINUTE
PARTITIONS = 2
FUNCS = ("count", "sum", "mean", "min", "max", "last", "var", "stddev")
SCHEMA = {"user_id": "int64", "ts": "int64", "amount": "float64", "country": "string"}


def parity_source(topic: str) -> StreamSource:
    return StreamSource(name="parity_events", topic=topic, timestamp_field="ts",
                        schema=dict(SCHEMA), allowed_lateness=LATENESS, partitions=PARTITIONS)


VIEW = "parity"


def parity_view(topic: str) -> FeatureView:
    """Every function over 1h (hop 5m), and sum/var/last over 1d (hop 1h)."""
    user = Entity(name="user", join_keys={"user_id": "int64"})
    aggs = [Aggregation(function="count", window="1h")]
    aggs += [Aggregation(column="amount", function=f, window="1h") for f in FUNCS[1:]]
    aggs += [Aggregation(column="amount", function="sum", window="1d"),
             Aggregation(column="amount", function="var", window="1d"),
             Aggregation(column="country", function="last", window="1d")]
    return FeatureView(name=VIEW, entities=[user], source=parity_source(topic),
                       aggregations=aggs)


def parity_plan(project: str, topic: str) -> ViewPlan:
    """The lowered :func:`parity_view` of ``project``."""
    return lower(parity_view(topic), project)


@dataclass(frozen=True)
class LogEvent:
    """One record of the log: its partition, position and payload, and whether §4.4 makes
    it late (computed on the log: ts < M(p, o) - L)."""

    partition: int
    offset: int
    row: dict[str, Any]
    late: bool
    #: the event time as written in the payload when not epoch ms (ISO-8601)
    time_text: str | None = None
    #: the dead-letter reason every streaming engine must give it (None: valid)
    reason: str | None = None

    @property
    def payload(self) -> bytes:
        row = self.row if self.time_text is None else {**self.row, "ts": self.time_text}
        return json.dumps(row).encode()


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ZONES = [dt.timedelta(0), dt.timedelta(hours=2), -dt.timedelta(hours=5, minutes=30),
          dt.timedelta(hours=5, minutes=45)]


def iso_time(ms: int, i: int) -> str:
    """Epoch ms ``ms`` as zoned ISO-8601, in the ``i``-th of a few spellings; the extra
    microseconds floor back to ``ms``."""
    zone = _ZONES[i % len(_ZONES)]
    local = (_EPOCH + dt.timedelta(milliseconds=ms, microseconds=i % 1000)).astimezone(
        dt.timezone(zone))
    text = local.isoformat(timespec="microseconds")
    if zone == dt.timedelta(0):
        return text.replace("+00:00", "Z")
    if zone == _ZONES[3]:
        return text.replace("T", " ").replace("+05:45", "+0545")
    return text


def naive_time(ms: int) -> str:
    """Epoch ms ``ms`` as ISO-8601 without a zone (dead-lettered: ``naive_timestamp``)."""
    return (_EPOCH + dt.timedelta(milliseconds=ms)).replace(tzinfo=None).isoformat()


def _amount(rng: random.Random, user: int, i: int) -> float | None:
    if i % 13 == 0:
        return None
    if user == 0:
        return [1e16, 1.0, -1e16, 3.0][i % 4]  # cancellation
    if user == 1:
        return 1e9 + rng.gauss(0.0, 1.0)  # large offset
    return round(rng.uniform(-50, 50), 3)


def generate_log(n_events: int = 400, seed: int = 7) -> list[LogEvent]:
    """The log, per partition in offset order (partition = user % PARTITIONS)."""
    rng = random.Random(seed)
    per_part: dict[int, list[dict[str, Any]]] = {p: [] for p in range(PARTITIONS)}
    clock = {p: T0 for p in range(PARTITIONS)}
    for i in range(n_events):
        user = rng.randrange(4)
        p = user % PARTITIONS
        clock[p] += rng.randrange(0, 40_000)
        ts = clock[p]
        roll = rng.random()
        if roll < 0.15:
            ts -= rng.randrange(0, LATENESS)  # out of order, within the lateness
        elif roll < 0.20:
            ts -= LATENESS + rng.randrange(1, 3 * LATENESS)  # late
        elif roll < 0.28 and per_part[p]:
            ts = per_part[p][-1]["ts"]  # duplicate timestamp of the previous event
        row: dict[str, Any] = {"user_id": user, "ts": ts, "amount": _amount(rng, user, i),
               "country": rng.choice(["FR", "DE", "US", "ZZ"])}
        per_part[p].append(row)
    naive = len(per_part[0]) // 2  # a zoneless time: refused, so it never moves M
    out: list[LogEvent] = []
    for p, rows in per_part.items():
        top: int | None = None
        o = 0
        for j, row in enumerate(rows):
            if p == 0 and j == naive:
                out.append(LogEvent(p, o, dict(row), False, naive_time(row["ts"]),
                                    "naive_timestamp"))
                o += 1
            late = top is not None and row["ts"] < top - LATENESS
            top = row["ts"] if top is None else max(top, row["ts"])
            text = iso_time(row["ts"], o) if o % 5 == 1 else None
            out.append(LogEvent(p, o, row, late, text))
            o += 1
    return out


def accepted(log: list[LogEvent]) -> list[dict[str, Any]]:
    """The events every engine aggregates: the log minus the late and refused ones."""
    return [e.row for e in log if not e.late and e.reason is None]


def refused(log: list[LogEvent]) -> set[tuple[str, int, int]]:
    """(reason, partition, offset) of every dead letter the log must give: late and
    refused events."""
    return {("late" if e.late else e.reason or "", e.partition, e.offset)
            for e in log if e.late or e.reason is not None}
