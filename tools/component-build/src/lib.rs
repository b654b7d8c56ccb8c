//! Used from build scripts to build a workspace crate as a `wasm32-wasip2`
//! WebAssembly component.
//!
//! Runs `cargo build --release --target wasm32-wasip2 -p CRATE` into a target
//! directory of its own (a nested cargo must not share the outer build's
//! lock). The bytes depend only on the sources and the toolchain: paths are
//! relative to the workspace or remapped (the Cargo home to `/cargo`). On
//! machines where rustup does not install listed targets by itself
//! (`RUSTUP_AUTO_INSTALL=0`), a missing target is installed first with
//! `rustup target add wasm32-wasip2`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The WebAssembly target components are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Builds workspace crate `package` and returns the path of the component
/// copied into `OUT_DIR` as `{artifact}.wasm`. `watch` lists paths (relative
/// to the workspace root) whose changes should rebuild it.
pub fn build(package: &str, artifact: &str, watch: &[&str]) -> PathBuf {
    build_with_features(package, artifact, &[], watch)
}

/// [`build`] with cargo `features` enabled; the copy in `OUT_DIR` is named
/// `{artifact}-{features joined by -}.wasm` when there are any.
pub fn build_with_features(
    package: &str,
    artifact: &str,
    features: &[&str],
    watch: &[&str],
) -> PathBuf {
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("called from a build script"));
    let workspace = workspace_root();
    for path in watch.iter().chain(&["Cargo.lock", "wit"]) {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    ensure_target_installed();
    // <target>/<profile>/build/<pkg>-<hash>/out → <target>/wasm-component
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm-component"))
        .unwrap_or_else(|| out_dir.join("wasm-component"));
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--release", "--target", TARGET, "-p", package])
        .args(if features.is_empty() {
            Vec::new()
        } else {
            vec!["--features".to_string(), features.join(",")]
        })
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags are for the host platform, not for wasm.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        // Under `cargo clippy` the outer build's rustc wrapper is clippy-driver:
        // the component must be compiled by rustc alone, or its bytes depend on
        // which command last built the host.
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER")
        // Reproducible bytes: workspace paths are already relative; the
        // registry's sources are named from the Cargo home, which differs
        // between users and machines.
        .env("CARGO_ENCODED_RUSTFLAGS", remap_cargo_home())
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the {package} component: {e}"));
    if !status.success() {
        panic!("building {package} for {TARGET} failed (see the output above)");
    }
    let built = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{artifact}.wasm"));
    let name = std::iter::once(artifact)
        .chain(features.iter().copied())
        .collect::<Vec<_>>()
        .join("-");
    let embedded = out_dir.join(format!("{name}.wasm"));
    std::fs::copy(&built, &embedded)
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
    embedded
}

/// `--remap-path-prefix` of the Cargo home to `/cargo`, so panic locations
/// in dependencies do not carry the builder's home directory.
fn remap_cargo_home() -> String {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    match home {
        Some(home) => format!("--remap-path-prefix={}=/cargo", home.display()),
        None => String::new(),
    }
}

/// The workspace root: the nearest ancestor of the crate with a `[workspace]` manifest.
fn workspace_root() -> PathBuf {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("called from a build script"));
    manifest_dir
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]"))
        })
        .unwrap_or(&manifest_dir)
        .to_path_buf()
}

fn rustc_sysroot() -> Option<PathBuf> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn ensure_target_installed() {
    let installed = |sysroot: &Path| {
        sysroot
            .join("lib/rustlib")
            .join(TARGET)
            .join("lib")
            .is_dir()
    };
    let sysroot = rustc_sysroot().unwrap_or_else(|| {
        panic!("cannot run rustc to find its sysroot; is the Rust toolchain installed?")
    });
    if installed(&sysroot) {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup (needed to build WebAssembly components)");
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
