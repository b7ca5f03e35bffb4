"""Where events come from: card transactions (a stream with its Parquet twin), user profiles
(batch) and chargebacks (the labels, arriving weeks later)."""

from braid import BatchSource, StreamSource

TRANSACTION_SCHEMA = {
    "txn_id": "string",
    "user_id": "int64",
    "merchant_id": "int64",
    "amount": "float64",
    "country": "string",
    "is_online": "bool",
    "ts": "timestamp",
}

transactions_archive = BatchSource(
    name="transactions_archive",
    path="data/transactions/*.parquet",
    timestamp_field="ts",
    schema=TRANSACTION_SCHEMA,
    description="Every card transaction, one Parquet file per day (the stream's batch twin).",
)

transactions = StreamSource(
    name="transactions",
    topic="transactions",
    schema=TRANSACTION_SCHEMA,
    timestamp_field="ts",
    allowed_lateness="1h",
    partitions=2,
    batch=transactions_archive,
    description="Card transactions as the payment service emits them (JSON).",
    owner="payments@example.com",
    tags={"pii": "false", "domain": "payments"},
)

user_profiles = BatchSource(
    name="user_profiles",
    path="data/user_profiles/*.parquet",
    timestamp_field="updated_at",
    created_timestamp_field="loaded_at",
    schema={
        "user_id": "int64",
        "age": "int64",
        "credit_limit": "float64",
        "country": "string",
        "account_tier": "string",
        "updated_at": "timestamp",
        "loaded_at": "timestamp",
    },
    description="Nightly export of the user table (one row per change).",
    owner="accounts@example.com",
)

chargebacks_log = BatchSource(
    name="chargebacks_log",
    path="data/chargebacks/*.parquet",
    timestamp_field="reported_at",
    schema={"user_id": "int64", "is_chargeback": "int64", "reported_at": "timestamp"},
    description="Chargebacks reported by the card networks, days to weeks after the purchase.",
)
