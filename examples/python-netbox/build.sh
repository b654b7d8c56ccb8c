#!/usr/bin/env bash
# Builds the Python NetBox connector into a WebAssembly component:
#   examples/python-netbox/build.sh [OUTPUT.wasm]
# (default target/python-netbox/netbox_py.wasm). It installs componentize-py
# (pinned in requirements-build.txt) into a virtual environment under target/
# unless COMPONENTIZE_PY names the tool already.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/target/python-netbox/netbox_py.wasm}"
tool="${COMPONENTIZE_PY:-}"
if [ -z "$tool" ]; then
  venv="$root/target/componentize-py-venv"
  if [ ! -x "$venv/bin/componentize-py" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      -r "$root/examples/python-netbox/requirements-build.txt"
  fi
  tool="$venv/bin/componentize-py"
fi
mkdir -p "$(dirname "$out")"
# World `connector-with-runtime`: CPython's C library imports the filesystem
# and sockets interfaces, which the host links granting nothing.
"$tool" -d "$root/wit" -w connector-with-runtime componentize app \
  -p "$root/examples/python-netbox" -o "$out"
