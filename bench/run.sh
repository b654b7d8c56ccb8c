#!/usr/bin/env bash
# Builds the release host, the native build and the harness, makes sure the
# Python venv with pysnc exists, then runs the benchmark. Arguments go to the
# harness (`bench/run.sh --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --release -p connector-host -p bench
if [ ! -x target/python-venv/bin/python ]; then
    python3 -m venv target/python-venv
    target/python-venv/bin/pip install --quiet -r tests/python/requirements.txt
fi
exec target/release/bench "$@"
