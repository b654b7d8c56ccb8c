#!/usr/bin/env bash
# The second-runtime benchmark (BENCHMARKS.md, "The same component on Node"):
# builds the release host and emulator, installs the Node host's pinned
# packages, then runs bench/node_bench.py. Arguments go to the script
# (--devices N, --runs N).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p connector-host -p servicenow-emulator
npm ci --prefix hosts/node --no-audit --no-fund --loglevel=error
exec python3 bench/node_bench.py --host target/release/connector-host \
    --emulator target/release/servicenow-emulator "$@"
