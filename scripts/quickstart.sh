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

step "7. online lookup (SDK read path; braid serve answers the same over HTTP)"
braid get-online --service fraud_v1 -e user_id=1 -e merchant_id=3

step "8. point-in-time training set for three labelled moments"
mkdir -p build
NOW=$(date -u +%Y-%m-%dT%H:00:00Z)
cat > build/entities.csv <<CSV
user_id,merchant_id,event_timestamp,label
1,3,$NOW,0
2,7,$NOW,1
1,3,$(date -u -d '-3 days' +%Y-%m-%dT%H:%M:00Z),0
CSV
braid get-historical --entities build/entities.csv --service fraud_v1 --out build/training.parquet
"$BIN/python" -c "import pandas as pd; pd.set_option('display.width', 160); print(pd.read_parquet('build/training.parquet').iloc[:, :8].to_string())"

step "9. running statistics of every feature, and a scaled training set (scalers fitted as of a cutoff)"
braid stats compute
braid stats show user_txn_stats:amount_sum_1h
CUTOFF=$(date -u -d '-2 days' +%Y-%m-%dT00:00:00Z)
braid get-historical --entities build/entities.csv --service fraud_v1 --scale --stats-as-of "$CUTOFF" \
  --out build/training_scaled.parquet
"$BIN/python" -c "import pandas as pd; pd.set_option('display.width', 160); print(pd.read_parquet('build/training_scaled.parquet').iloc[:, :8].to_string())"

step "10. streaming: the embedded runner on the local log; one pushed event changes an online feature"
"$BIN/python" scripts/quickstart_stream.py "$REPO" stream

step "11. log-and-wait: log served features, let labels arrive, train on exactly what serving saw"
"$BIN/python" scripts/quickstart_stream.py "$REPO" logs

step "12. discover: search the registry and describe a view"
braid search "spending" --limit 5
braid describe user_txn_stats
