//! Builds the test-only probe component for the sandbox tests.

fn main() {
    let path = component_build::build(
        "probe-connector",
        "probe_connector",
        &[
            "tests/components/probe/src",
            "tests/components/probe/Cargo.toml",
            "sdk/src",
            "sdk/Cargo.toml",
        ],
    );
    println!("cargo:rustc-env=PROBE_COMPONENT_PATH={}", path.display());
}
