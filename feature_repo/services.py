"""What the fraud model consumes, and the labels it learns from."""

from features import merchant_risk, user_profile, user_txn_stats
from sources import chargebacks_log

from braid import FeatureService, LabelSource, LoggingConfig

fraud_v1 = FeatureService(
    name="fraud_v1",
    features=[
        user_txn_stats[["amount_count_10m", "amount_sum_1h", "amount_mean_24h",
                        "amount_max_24h", "amount_stddev_7d", "amount_count_7d"]],
        merchant_risk,
        user_profile[["age", "credit_limit", "is_premium", "limit_per_year_of_age"]],
    ],
    logging=LoggingConfig(sample_rate=1.0),
    scalers={"user_txn_stats:amount_sum_1h": "standard", "user_profile:credit_limit": "robust"},
    description="Real-time card fraud score, version 1.",
    owner="risk-team@example.com",
    tags={"model": "fraud", "stage": "production"},
)

chargebacks = LabelSource(
    name="chargebacks",
    source=chargebacks_log,
    join_on=["user_id"],
    label_fields=["is_chargeback"],
    timestamp_field="reported_at",
    maturity="7d",
    missing="default",
    default_label={"is_chargeback": 0},
    description="A chargeback within 7 days of a purchase marks it as fraud.",
)
