#!/usr/bin/env bash
# Every test of the project, from a fresh clone:
#   1. the Rust workspace (unit tests and the end-to-end tests over 127.0.0.1);
#   2. ServiceNow's own Python SDK (pysnc) and pysnow against the emulator over HTTPS.
set -euo pipefail
cd "$(dirname "$0")/.."

# rust-toolchain.toml pins 1.95.0. Where rustup may not download toolchains
# (RUSTUP_AUTO_INSTALL=0) but the default toolchain is 1.95.0, name it so.
if command -v rustup >/dev/null && ! rustup toolchain list | grep -q '^1\.95\.0'; then
  if rustc +stable --version 2>/dev/null | grep -q '^rustc 1\.95\.0 '; then
    # A linked toolchain cannot add targets later: add the wasm target first.
    rustup target add wasm32-wasip2 --toolchain stable
    rustup toolchain link 1.95.0 "$(rustc +stable --print sysroot)"
  fi
fi

cargo test --workspace

# The real clients need the emulator binary and a Python environment of their own.
cargo build -p servicenow-emulator
venv=target/python-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
SERVICENOW_EMULATOR="$PWD/target/debug/servicenow-emulator" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python
