"""Who the fraud features are about."""

from braid import Entity

user = Entity(
    name="user",
    join_keys={"user_id": "int64"},
    description="A buyer with an account on the shop.",
    owner="risk-team@example.com",
)

merchant = Entity(
    name="merchant",
    join_keys={"merchant_id": "int64"},
    description="A seller receiving payments.",
    owner="risk-team@example.com",
)
