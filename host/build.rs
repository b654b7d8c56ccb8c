//! Builds the bundled connector components and embeds them
//! (`SERVICENOW_COMPONENT_PATH` and `NETBOX_COMPONENT_PATH`, read by
//! `include_bytes!` in `bundled.rs`). Set `CONNECTOR_HOST_COMPONENT` (the
//! ServiceNow one) and `CONNECTOR_HOST_NETBOX_COMPONENT` to paths of
//! prebuilt components to embed those instead (packaging without a wasm
//! toolchain).

/// A bundled component: the variable naming a prebuilt file, the crate,
/// its artifact, what rebuilds it, and the variable `bundled.rs` reads.
struct Bundled {
    prebuilt_var: &'static str,
    package: &'static str,
    artifact: &'static str,
    sources: &'static [&'static str],
    path_var: &'static str,
}

const BUNDLED: [Bundled; 2] = [
    Bundled {
        prebuilt_var: "CONNECTOR_HOST_COMPONENT",
        package: "servicenow-connector",
        artifact: "servicenow_connector",
        sources: &["plugin/src", "plugin/Cargo.toml"],
        path_var: "SERVICENOW_COMPONENT_PATH",
    },
    Bundled {
        prebuilt_var: "CONNECTOR_HOST_NETBOX_COMPONENT",
        package: "netbox-connector",
        artifact: "netbox_connector",
        sources: &["netbox-connector/src", "netbox-connector/Cargo.toml"],
        path_var: "NETBOX_COMPONENT_PATH",
    },
];

fn main() {
    for b in &BUNDLED {
        println!("cargo:rerun-if-env-changed={}", b.prebuilt_var);
        let path = match std::env::var(b.prebuilt_var) {
            Ok(prebuilt) => std::path::PathBuf::from(prebuilt),
            Err(_) => {
                let mut watch = vec!["sdk/src", "sdk/Cargo.toml"];
                watch.extend_from_slice(b.sources);
                component_build::build(b.package, b.artifact, &watch)
            }
        };
        println!("cargo:rustc-env={}={}", b.path_var, path.display());
    }
}
