//! Builds the test-only components: the probe (sandbox tests), the guide's
//! example connector (`e2e::example`, `e2e::conformance`) and the example
//! broken one way per mode (conformance's negative controls).

fn main() {
    let components = [
        (
            "probe-connector",
            "probe_connector",
            "PROBE",
            "tests/components/probe",
        ),
        (
            "example-inventory-connector",
            "example_inventory_connector",
            "EXAMPLE",
            "examples/inventory",
        ),
        (
            "broken-connector",
            "broken_connector",
            "BROKEN",
            "tests/components/broken",
        ),
    ];
    for (package, artifact, variable, dir) in components {
        let src = format!("{dir}/src");
        let manifest = format!("{dir}/Cargo.toml");
        let path = component_build::build(
            package,
            artifact,
            &[
                &src,
                &manifest,
                "examples/inventory/src",
                "sdk/src",
                "sdk/Cargo.toml",
            ],
        );
        println!(
            "cargo:rustc-env={variable}_COMPONENT_PATH={}",
            path.display()
        );
    }
    // The broken component whose `info` itself breaks the contract.
    let bad_info = component_build::build_with_features(
        "broken-connector",
        "broken_connector",
        &["bad-info"],
        &[
            "tests/components/broken/src",
            "examples/inventory/src",
            "sdk/src",
        ],
    );
    println!(
        "cargo:rustc-env=BROKEN_INFO_COMPONENT_PATH={}",
        bad_info.display()
    );
}
