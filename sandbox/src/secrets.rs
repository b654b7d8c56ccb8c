//! Secrets: where they come from and how they are kept out of sight.
//!
//! Secrets are read from environment variables or owner-only files, never
//! from command-line arguments. [`Secret`] never prints its value.

use std::path::Path;

/// A secret value. `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Looks up environment variables. The CLI passes the process environment;
/// tests and the demo pass a map, so no global state is touched.
pub trait Environment: Send + Sync {
    /// The value of a variable, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Reads a secret from the variable `env_name` or the file `file`.
pub fn read_secret(
    what: &str,
    env_name: Option<&str>,
    file: Option<&Path>,
    env: &dyn Environment,
) -> Result<Secret, String> {
    match (env_name, file) {
        (Some(_), Some(_)) => Err(format!(
            "[auth] names both an environment variable and a file for the {what}; keep one"
        )),
        (Some(var), None) => match env.var(var) {
            Some(v) if !v.is_empty() => Ok(Secret::new(v)),
            Some(_) => Err(format!(
                "the environment variable {var} (the {what}) is empty; set it to the {what}"
            )),
            None => Err(format!(
                "the environment variable {var} (the {what}) is not set; export it before running, e.g. `export {var}=...`"
            )),
        },
        (None, Some(path)) => read_secret_file(what, path),
        (None, None) => Err(format!(
            "[auth] does not say where the {what} is: add `{}_env = \"VARIABLE\"` or `{}_file = \"path\"`",
            what.replace(' ', "_"),
            what.replace(' ', "_")
        )),
    }
}

/// Refuses a file that users other than its owner may read or write (on
/// Unix): a secret there is not one.
pub fn check_owner_only(what: &str, path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "the {what} file {} is readable by other users; restrict it with `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }
    Ok(())
}

fn read_secret_file(what: &str, path: &Path) -> Result<Secret, String> {
    check_owner_only(what, path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(format!("the {what} file {} is empty", path.display()));
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
    }

    #[test]
    fn missing_variable_is_named() {
        let env: HashMap<String, String> = HashMap::new();
        let e = read_secret("password", Some("SN_PW"), None, &env).unwrap_err();
        assert!(e.contains("SN_PW") && e.contains("not set"), "{e}");
    }

    #[test]
    #[cfg(unix)]
    fn group_readable_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_secret("password", None, Some(&p), &HashMap::new())
            .unwrap_err()
            .contains("chmod 600"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_secret("password", None, Some(&p), &HashMap::new())
                .unwrap()
                .expose(),
            "s3cret"
        );
    }
}
