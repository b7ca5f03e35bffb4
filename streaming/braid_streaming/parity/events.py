"""The adversarial event log of ``braid verify parity`` (DESIGN §7 "Parity as a product
command"): one view with every function at two hops, and a seeded log over a fixed number of
partitions holding out-of-order and late events, duplicate timestamps, cancellation
(``[1e16, 1, -1e16, 3]``) and large-offset (``1e9 + N(0, 1)``) values and NULLs.
"""

from __future__ import annotations

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

    @property
    def payload(self) -> bytes:
        return json.dumps(self.row).encode()


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
    out: list[LogEvent] = []
    for p, rows in per_part.items():
        top: int | None = None
        for o, row in enumerate(rows):
            late = top is not None and row["ts"] < top - LATENESS
            top = row["ts"] if top is None else max(top, row["ts"])
            out.append(LogEvent(p, o, row, late))
    return out


def accepted(log: list[LogEvent]) -> list[dict[str, Any]]:
    """The events every engine aggregates: the log minus the late ones."""
    return [e.row for e in log if not e.late]
