#!/usr/bin/env bash
# The NetBox benchmark (BENCHMARKS.md, "NetBox"): builds the release host and
# NetBox emulator and the Python component (timing that build), makes sure a
# Python environment with pynetbox exists, then runs bench/netbox_bench.py.
# Arguments go to the script (--devices N, --runs N).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p connector-host -p netbox-emulator
examples/python-netbox/build.sh target/python-netbox/netbox_py.wasm >/dev/null   # installs the tool once
start=$(date +%s.%N)
examples/python-netbox/build.sh target/python-netbox/netbox_py.wasm >/dev/null
echo "Python component build: $(echo "$(date +%s.%N) - $start" | bc) s (componentize-py installed)"
if [ ! -x target/python-venv/bin/python ]; then
    python3 -m venv target/python-venv
fi
target/python-venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
exec python3 bench/netbox_bench.py --host target/release/connector-host \
    --emulator target/release/netbox-emulator --python target/python-venv/bin/python \
    --python-component target/python-netbox/netbox_py.wasm "$@"
