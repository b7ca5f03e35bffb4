#!/usr/bin/env bash
# The quickstart: embedded defaults (DuckDB + Parquet offline, SQLite online), no servers.
set -euo pipefail
BIN=${BIN:-.venv/bin}
REPO=${REPO:-feature_repo}
EVENTS=${EVENTS:-200000}
braid() { "$BIN/braid" -r "$REPO" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. generate $EVENTS synthetic card transactions, user profiles and chargebacks"
rm -rf "$REPO/data"
braid generate --events "$EVENTS" --days 14

step "2. plan: what apply would register"
braid plan

step "3. apply: register definitions, lineage and storage namespaces"
braid apply

step "4. compile: DuckDB SQL per view and the Flink statement set"
braid compile --out build

step "5. backfill: tiles and projection rows into the offline store (Parquet)"
braid backfill

step "6. materialize: latest rows and live tiles into the online store (SQLite)"
braid materialize

step "7. discover: search the registry and describe a view"
braid search "spending" --limit 5
braid describe user_txn_stats
