#!/usr/bin/env bash
# Workers sharing the syncs of many connections (BENCHMARKS.md, "Workers"):
# bench/postgres.sh's throw-away durable cluster, with `--worker-connections`
# connections of `--devices` devices each, synced one after another by
# `sync`, then by 1, 2 and 4 `worker --once` processes at once, e.g.
#   bench/workers.sh --devices 50000 --worker-connections 20 --workers 1,2,4 --runs 3
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_OUT=bench/results-workers.json exec bench/postgres.sh "$@"
