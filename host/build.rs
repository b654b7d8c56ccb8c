//! Builds the bundled ServiceNow connector component and embeds it
//! (`SERVICENOW_COMPONENT_PATH`, read by `include_bytes!` in `bundled.rs`).
//! Set `CONNECTOR_HOST_COMPONENT=/path/to.wasm` to embed a prebuilt
//! component instead (packaging without a wasm toolchain).

fn main() {
    println!("cargo:rerun-if-env-changed=CONNECTOR_HOST_COMPONENT");
    let path = match std::env::var("CONNECTOR_HOST_COMPONENT") {
        Ok(prebuilt) => std::path::PathBuf::from(prebuilt),
        Err(_) => component_build::build(
            "servicenow-connector",
            "servicenow_connector",
            &[
                "plugin/src",
                "plugin/Cargo.toml",
                "sdk/src",
                "sdk/Cargo.toml",
            ],
        ),
    };
    println!(
        "cargo:rustc-env=SERVICENOW_COMPONENT_PATH={}",
        path.display()
    );
}
