//! Builds the bundled ServiceNow connector component and embeds it.
//!
//! Runs `cargo build -p servicenow-connector --target wasm32-wasip2 --release`
//! into a target directory of its own (a nested cargo must not share the outer
//! build's lock) and exposes the result as `SERVICENOW_COMPONENT_PATH` for
//! `include_bytes!`. On machines where rustup does not install listed targets
//! by itself (`RUSTUP_AUTO_INSTALL=0`), the missing target is installed with
//! `rustup target add wasm32-wasip2` first.
//!
//! Set `CONNECTOR_HOST_COMPONENT=/path/to.wasm` to embed a prebuilt component
//! instead (for packaging without a wasm toolchain).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir.parent().expect("host/ sits in the workspace");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-env-changed=CONNECTOR_HOST_COMPONENT");
    for path in ["plugin/src", "plugin/Cargo.toml", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }

    let embedded = out_dir.join("servicenow_connector.wasm");
    if let Ok(prebuilt) = env::var("CONNECTOR_HOST_COMPONENT") {
        std::fs::copy(&prebuilt, &embedded)
            .unwrap_or_else(|e| panic!("cannot copy CONNECTOR_HOST_COMPONENT={prebuilt}: {e}"));
    } else {
        ensure_target_installed();
        let built = build_component(workspace, &out_dir);
        std::fs::copy(&built, &embedded)
            .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
    }
    println!("cargo:rustc-env=SERVICENOW_COMPONENT_PATH={}", embedded.display());
}

fn rustc_sysroot() -> Option<PathBuf> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).args(["--print", "sysroot"]).output().ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn ensure_target_installed() {
    let installed = |sysroot: &Path| sysroot.join("lib/rustlib").join(TARGET).join("lib").is_dir();
    let Some(sysroot) = rustc_sysroot() else {
        panic!("cannot run rustc to find its sysroot; is the Rust toolchain installed?");
    };
    if installed(&sysroot) {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup (needed for the bundled connector component)");
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        cmd.args(["--toolchain", &toolchain]);
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("the {TARGET} target is missing and rustup could not be run ({e}); install it with `rustup target add {TARGET}`")
    });
    if !status.success() || !installed(&sysroot) {
        panic!("`rustup target add {TARGET}` failed; install the target by hand and build again");
    }
}

fn build_component(workspace: &Path, out_dir: &Path) -> PathBuf {
    // <target>/<profile>/build/<pkg>-<hash>/out → <target>/<profile>/../wasm-component
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm-component"))
        .unwrap_or_else(|| out_dir.join("wasm-component"));
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", TARGET, "-p", "servicenow-connector"])
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags are for the host, not for the component.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    if env::var("CARGO_NET_OFFLINE").is_ok() || env::args().any(|a| a == "--offline") {
        cmd.arg("--offline");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the connector component: {e}"));
    if !status.success() {
        panic!("building the servicenow-connector component for {TARGET} failed (see the output above)");
    }
    target_dir
        .join(TARGET)
        .join("release")
        .join("servicenow_connector.wasm")
}
