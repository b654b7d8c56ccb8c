#!/usr/bin/env bash
# Every test of the project, from a fresh clone:
#   1. the Rust workspace (unit tests and the end-to-end tests over 127.0.0.1);
#   2. ServiceNow's own Python SDK (pysnc) and pysnow against the emulator over HTTPS,
#      NetBox's own client (pynetbox) against the NetBox emulator, and Prometheus'
#      parser (prometheus-client) on the console's /metrics;
#   3. the code checks: rustfmt, clippy with -D warnings for the host and for the
#      wasm32-wasip2 components, and rustdoc without warnings;
#   4. the Python NetBox connector, built with componentize-py, against the NetBox emulator;
#   5. the Node host (jco) against the emulator, judged against connector-host;
#   6. the operator console's flows in headless Chromium (screenshots in
#      target/console-screenshots/);
#   and the store's checks again on PostgreSQL, in a throw-away cluster.
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

cargo fmt --all --check
cargo test --workspace

# PostgreSQL: a throw-away cluster on 127.0.0.1 in a temporary directory
# (tools/postgres-cluster.sh; PostgreSQL installed with apt-get when
# missing), removed when this script ends. The store's checks on it, the
# commands on it, and workers sharing syncs through it (killed, paused,
# rate-limited).
eval "$(tools/postgres-cluster.sh start)"
trap 'tools/postgres-cluster.sh stop "$CONNECTOR_TEST_POSTGRES_DIR"' EXIT
cargo test -p connector-engine --lib -- --ignored store::
cargo test -p connector-e2e --test e2e -- --ignored e2e::postgres:: e2e::workers::

# Code checks (after the tests, whose build they reuse).
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --target wasm32-wasip2 \
  -p exposure-connector-sdk -p servicenow-connector -p netbox-connector -p example-inventory-connector \
  -p probe-connector -p broken-connector -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
# The product binary without the demo builds, and does not link the emulator.
cargo clippy -p connector-host --no-default-features -- -D warnings
if cargo tree -p connector-host --no-default-features -e normal --prefix none \
    | grep -q '^servicenow-emulator '; then
  echo "connector-host without the demo feature links servicenow-emulator" >&2
  exit 1
fi

# The real clients need the emulator binary and a Python environment of their own.
# The host they drive is `e2e-host` (the same `cli::main` as connector-host),
# which `cargo test` built: building connector-host alone would unify other
# features and compile wasmtime a second time.
cargo build -p servicenow-emulator -p netbox-emulator
venv=target/python-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
SERVICENOW_EMULATOR="$PWD/target/debug/servicenow-emulator" \
NETBOX_EMULATOR="$PWD/target/debug/netbox-emulator" \
CONNECTOR_HOST="$PWD/target/debug/e2e-host" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python

# The Python NetBox connector: built with componentize-py (installed from PyPI
# by its build script), then synced and judged against the NetBox emulator.
examples/python-netbox/build.sh target/python-netbox/netbox_py.wasm
PYTHON_NETBOX_COMPONENT="$PWD/target/python-netbox/netbox_py.wasm" \
  cargo test -p connector-e2e --test e2e -- --ignored --exact \
  e2e::netbox::the_python_connector_reads_the_same_devices_and_is_conformant_with_and_without_faults

# The Node host: the same components under jco on Node (packages pinned by
# hosts/node/package-lock.json), its unit tests, then the end-to-end tests
# that judge it against connector-host and the probe.
npm ci --prefix hosts/node --no-audit --no-fund --loglevel=error
node --test hosts/node/test/
cargo test -p connector-e2e --test e2e -- --ignored e2e::node::

# The operator console in a real browser: Debian's Chromium (installed here
# when missing) driven by playwright-core (pinned by tests/browser/package-lock.json).
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
  as_root=""
  if [ "$(id -u)" != 0 ]; then as_root="sudo"; fi
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium \
    || { $as_root apt-get update -q \
      && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }
fi
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
cargo test -p connector-e2e --test e2e -- --ignored e2e::browser::
