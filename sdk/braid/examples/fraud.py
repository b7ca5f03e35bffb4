"""Deterministic synthetic data for the fraud example repository.

Writes, under ``<out>/``:
  transactions/part-NNNNN.parquet   card transactions (the stream's batch twin)
  user_profiles/part-00000.parquet  user table changes, with a load (created) time
  chargebacks/part-00000.parquet    chargeback labels, days after purchases

The same ``seed``, ``events`` and ``end`` always give the same bytes of data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from braid.timeutil import DAY, HOUR, MINUTE

COUNTRIES = np.array(["US", "GB", "DE", "FR", "BR", "IN", "NG", "JP"])
TIERS = np.array(["basic", "plus", "premium"])


@dataclass(frozen=True)
class FraudDataSpec:
    """How much data to generate and where in time it ends (epoch ms, UTC)."""

    events: int = 200_000
    days: int = 14
    end_ms: int = 0
    seed: int = 7
    chunk: int = 2_000_000

    @property
    def users(self) -> int:
        return max(10, self.events // 40)

    @property
    def merchants(self) -> int:
        return max(5, self.events // 400)

    @property
    def start_ms(self) -> int:
        return self.end_ms - self.days * DAY


def _ts(ms: np.ndarray) -> pa.Array:
    return pa.array(ms.astype("int64"), pa.int64()).cast(pa.timestamp("ms", tz="UTC"))


def write_transactions(spec: FraudDataSpec, out: Path) -> int:
    """Write transactions in time-ordered Parquet chunks; returns the row count."""
    folder = out / "transactions"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    rng = np.random.default_rng(spec.seed)
    # Users differ in activity (Zipf-like weights) so windows are sometimes full, often empty.
    weights = 1.0 / np.arange(1, spec.users + 1) ** 0.8
    weights /= weights.sum()
    span = spec.end_ms - spec.start_ms
    written = 0
    for i, lo in enumerate(range(0, spec.events, spec.chunk)):
        n = min(spec.chunk, spec.events - lo)
        frac = np.sort(rng.random(n))
        ts = spec.start_ms + (lo + frac * n) / spec.events * span
        users = rng.choice(spec.users, size=n, p=weights) + 1
        merchants = rng.integers(1, spec.merchants + 1, size=n)
        amount = np.round(rng.lognormal(mean=3.2, sigma=1.1, size=n), 2)
        table = pa.table({
            "txn_id": pa.array([f"t{lo + j:010d}" for j in range(n)]),
            "user_id": pa.array(users, pa.int64()),
            "merchant_id": pa.array(merchants, pa.int64()),
            "amount": pa.array(amount, pa.float64()),
            "country": pa.array(COUNTRIES[rng.integers(0, len(COUNTRIES), size=n)]),
            "is_online": pa.array(rng.random(n) < 0.6),
            "ts": _ts(np.floor(ts)),
        })
        pq.write_table(table, folder / f"part-{i:05d}.parquet")
        written += n
    return written


def write_profiles(spec: FraudDataSpec, out: Path) -> int:
    """One to three changes per user; loaded into the warehouse 0-6 hours after the change."""
    folder = out / "user_profiles"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed + 1)
    changes = rng.integers(1, 4, size=spec.users)
    user_ids = np.repeat(np.arange(1, spec.users + 1), changes)
    n = len(user_ids)
    updated = spec.start_ms - 20 * DAY + rng.random(n) * (spec.days + 20) * DAY
    loaded = updated + rng.integers(0, 6 * HOUR, size=n)
    age = rng.integers(18, 90, size=n)
    table = pa.table({
        "user_id": pa.array(user_ids, pa.int64()),
        "age": pa.array(age, pa.int64()),
        "credit_limit": pa.array(np.round(rng.choice([500, 1000, 2500, 5000, 10000], size=n)
                                          * rng.uniform(0.8, 1.2, size=n), 2)),
        "country": pa.array(COUNTRIES[rng.integers(0, len(COUNTRIES), size=n)]),
        "account_tier": pa.array(TIERS[rng.integers(0, len(TIERS), size=n)]),
        "updated_at": _ts(np.floor(updated)),
        "loaded_at": _ts(np.floor(loaded)),
    })
    pq.write_table(table, folder / "part-00000.parquet")
    return n


def write_chargebacks(spec: FraudDataSpec, out: Path) -> int:
    """About 2% of users get a chargeback, reported 1-10 days into the period."""
    folder = out / "chargebacks"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed + 2)
    k = max(1, math.ceil(spec.users * 0.02))
    users = rng.choice(np.arange(1, spec.users + 1), size=k, replace=False)
    reported = spec.start_ms + rng.integers(DAY, 10 * DAY, size=k) + rng.integers(0, 60, size=k) * MINUTE
    table = pa.table({
        "user_id": pa.array(users, pa.int64()),
        "is_chargeback": pa.array(np.ones(k, dtype=np.int64)),
        "reported_at": _ts(reported),
    })
    pq.write_table(table, folder / "part-00000.parquet")
    return k


def generate(spec: FraudDataSpec, out: Path) -> dict[str, int]:
    """Write all three datasets; returns the row count of each."""
    out = Path(out)
    return {
        "transactions": write_transactions(spec, out),
        "user_profiles": write_profiles(spec, out),
        "chargebacks": write_chargebacks(spec, out),
    }
