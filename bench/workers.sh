#!/usr/bin/env bash
# Workers sharing the syncs of many connections (BENCHMARKS.md, "Workers"):
# a throw-away PostgreSQL cluster with its durable defaults on 127.0.0.1,
# removed afterwards; `--worker-connections` connections of `--devices`
# devices each, synced one after another by `sync`, then by 1, 2 and 4
# `worker --once` processes at once. Arguments go to the harness, e.g.
#   bench/workers.sh --devices 50000 --worker-connections 20 --workers 1,2,4 --runs 3
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(DURABLE=1 tools/postgres-cluster.sh start)"
trap 'tools/postgres-cluster.sh stop "$CONNECTOR_TEST_POSTGRES_DIR"' EXIT
BENCH_POSTGRES_PASSWORD="$CONNECTOR_TEST_POSTGRES_PASSWORD" bench/run.sh \
  --latency-ms 0 --pysnc-devices 0 --out bench/results-workers.json \
  --postgres "$CONNECTOR_TEST_POSTGRES?sslmode=disable" "$@"
