#!/usr/bin/env bash
# The full sync into PostgreSQL beside SQLite (BENCHMARKS.md, "PostgreSQL
# as the store"): a throw-away cluster with PostgreSQL's durable defaults
# (fsync on, as SQLite's WAL with synchronous=NORMAL syncs at checkpoints),
# on 127.0.0.1, removed afterwards. Arguments go to the harness, e.g.
#   bench/postgres.sh --devices 100000,1000000 --runs 3
# The results go to bench/results-postgres.json (or BENCH_OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(DURABLE=1 tools/postgres-cluster.sh start)"
trap 'tools/postgres-cluster.sh stop "$CONNECTOR_TEST_POSTGRES_DIR"' EXIT
BENCH_POSTGRES_PASSWORD="$CONNECTOR_TEST_POSTGRES_PASSWORD" bench/run.sh \
  --latency-ms 0 --pysnc-devices 0 --out "${BENCH_OUT:-bench/results-postgres.json}" \
  --postgres "$CONNECTOR_TEST_POSTGRES?sslmode=disable" "$@"
