#!/usr/bin/env bash
# Checks that the bundled components build reproducibly: two clones of HEAD, at
# different paths and with different Cargo homes, the second as if under
# `cargo clippy` (whose rustc wrapper a build script inherits), must give the
# same bytes for the ServiceNow and the NetBox component. Builds them as the
# host's build script does (tools/component-build), offline, from the local
# registry.
# About 5 minutes on 2 cores; not part of tests/run-all.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo_home=${CARGO_HOME:-$HOME/.cargo}
# A second Cargo home whose registry is the same files under another path.
mkdir -p "$work/other-cargo-home"
ln -s "$cargo_home/registry" "$work/other-cargo-home/registry"

build() { # clone-dir cargo-home [rustc-workspace-wrapper] → "<sha256> <component>" lines
    local clone=$1 home=$2 wrapper=${3:-}
    for pair in servicenow-connector:servicenow_connector netbox-connector:netbox_connector; do
        local built
        built=$(cd "$clone" && env CARGO_HOME="$home" CARGO_NET_OFFLINE=true \
            ${wrapper:+"RUSTC_WORKSPACE_WRAPPER=$wrapper"} \
            cargo run -q -p component-build --bin build-component -- \
            "${pair%%:*}" "${pair##*:}" "$clone/target/reproducible/x/y/out" | tail -1)
        echo "$(sha256sum "$built" | cut -d' ' -f1) ${pair##*:}"
    done
}

git clone -q . "$work/one"
git clone -q . "$work/two/at/another/path"
first=$(build "$work/one" "$cargo_home")
clippy_driver="$(dirname "$(rustup which rustc)")/clippy-driver"
second=$(build "$work/two/at/another/path" "$work/other-cargo-home" "$clippy_driver")
echo "$first"
if [ "$first" != "$second" ]; then
    echo "NOT reproducible: the second build gave" >&2
    echo "$second" >&2
    exit 1
fi
echo "reproducible: two clones at different paths, with different Cargo homes, one as under clippy, gave the same bytes"
