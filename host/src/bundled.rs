//! The ServiceNow CMDB connector component this host ships with, used when a
//! configuration names no `plugin`.

/// The bundled component's bytes (built by `build.rs`, or the prebuilt file
/// `CONNECTOR_HOST_COMPONENT` named at build time).
pub static BUNDLED_COMPONENT: &[u8] = include_bytes!(env!("SERVICENOW_COMPONENT_PATH"));

#[cfg(test)]
mod tests {
    use super::BUNDLED_COMPONENT;
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
