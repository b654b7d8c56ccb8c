//! Builds the test-only probe component for the sandbox tests, and the
//! guide's example connector.

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
    // The guide's example connector, run by the host in `e2e::example`.
    let example = component_build::build(
        "example-inventory-connector",
        "example_inventory_connector",
        &[
            "examples/inventory/src",
            "examples/inventory/Cargo.toml",
            "sdk/src",
            "sdk/Cargo.toml",
        ],
    );
    println!(
        "cargo:rustc-env=EXAMPLE_COMPONENT_PATH={}",
        example.display()
    );
}
