//! The connector components this host ships with, chosen by name with
//! `connector = "..."` in a configuration (ServiceNow when it names neither a
//! `connector` nor a `plugin`). The host knows them only by name and bytes.

/// The bundled ServiceNow CMDB component's bytes (built by `build.rs`, or
/// the prebuilt file `CONNECTOR_HOST_COMPONENT` named at build time).
pub static BUNDLED_COMPONENT: &[u8] = include_bytes!(env!("SERVICENOW_COMPONENT_PATH"));

/// The bundled NetBox component's bytes (or the prebuilt file
/// `CONNECTOR_HOST_NETBOX_COMPONENT`).
pub static NETBOX_COMPONENT: &[u8] = include_bytes!(env!("NETBOX_COMPONENT_PATH"));

/// The bundled connector used when a configuration names none.
pub const DEFAULT_CONNECTOR: &str = "servicenow";

/// Every bundled connector, by the name `connector = "..."` takes.
pub const BUNDLED: [(&str, &[u8]); 2] = [
    (DEFAULT_CONNECTOR, BUNDLED_COMPONENT),
    ("netbox", NETBOX_COMPONENT),
];

/// The bundled component called `name`, or a message listing the names.
pub fn bundled(name: &str) -> Result<&'static [u8], String> {
    BUNDLED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
        .ok_or_else(|| {
            let names: Vec<String> = BUNDLED.iter().map(|(n, _)| format!("`{n}`")).collect();
            format!(
                "there is no bundled connector `{name}`: the bundled ones are {}; load any other component with `plugin = \"PATH\"`",
                names.join(" and ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::{bundled, BUNDLED_COMPONENT};

    #[test]
    fn bundled_connectors_are_found_by_name_and_others_named() {
        assert_eq!(
            bundled("servicenow").unwrap().len(),
            BUNDLED_COMPONENT.len()
        );
        assert!(!bundled("netbox").unwrap().is_empty());
        let e = bundled("jira").unwrap_err();
        assert!(
            e.contains("`servicenow` and `netbox`") && e.contains("plugin"),
            "{e}"
        );
    }
    use connector_sandbox::runtime::Runtime;

    #[cfg(unix)]
    #[test]
    fn a_compiled_component_planted_where_others_can_write_is_not_run() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let runtime = Runtime::with_cache_dir(Some(dir.path().to_path_buf())).unwrap();
        // Valid native code of another program, under the bundled component's name.
        let planted = runtime
            .engine()
            .precompile_component(b"(component)")
            .unwrap();
        let entry = runtime.cache_entry_of(BUNDLED_COMPONENT).unwrap();
        std::fs::write(&entry, planted).unwrap();
        // Loading the bundled component compiles it afresh: it exports the contract.
        runtime
            .load(BUNDLED_COMPONENT)
            .expect("the planted entry was not used");
    }
}
