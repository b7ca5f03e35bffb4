"""Feature views of the fraud model."""

from entities import merchant, user
from sources import transactions, user_profiles

from braid import Aggregation, Feature, FeatureView

WINDOWS = ("10m", "1h", "24h", "7d")

user_txn_stats = FeatureView(
    name="user_txn_stats",
    entities=[user],
    source=transactions,
    aggregations=[
        Aggregation(column="amount", function=function, window=window)
        for window in WINDOWS
        for function in ("count", "sum", "mean", "max", "stddev")
    ],
    description="Spending velocity of a user: how much, how often, how erratic.",
    owner="risk-team@example.com",
    tags={"team": "risk", "tier": "gold"},
)

merchant_risk = FeatureView(
    name="merchant_risk",
    entities=[merchant],
    source=transactions,
    filter="is_online AND amount >= 50",
    aggregations=[
        Aggregation(function="count", window="1h", name="online_large_count_1h"),
        Aggregation(function="count", window="24h", name="online_large_count_24h"),
        Aggregation(column="amount", function="sum", window="1h", name="online_large_sum_1h"),
        Aggregation(column="amount", function="sum", window="24h", name="online_large_sum_24h"),
        Aggregation(column="amount", function="last", window="24h", name="last_online_large_amount"),
    ],
    description="Large online payments a merchant received recently (card-testing signal).",
    owner="risk-team@example.com",
    tags={"team": "risk"},
)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    source=user_profiles,
    features=[
        Feature(name="age", dtype="int64"),
        Feature(name="credit_limit", dtype="float64", default=0.0),
        Feature(name="is_premium", dtype="bool", expr="account_tier = 'premium'"),
        Feature(name="limit_per_year_of_age", dtype="float64", expr="credit_limit / age"),
        Feature(name="home_country", dtype="string", expr="country"),
    ],
    ttl="30d",
    description="Slow-moving account attributes from the user table.",
    owner="accounts@example.com",
    tags={"team": "accounts", "pii": "true"},
)
