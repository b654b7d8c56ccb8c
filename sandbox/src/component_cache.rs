//! The on-disk cache of compiled components.
//!
//! Compiling a component takes about a second; loading its precompiled form
//! takes milliseconds. But a cache entry is native code that wasmtime maps
//! and runs without verifying it, so the host uses an entry only when no one
//! else could have written it: the directory and the file belong to the user
//! running the host, neither is writable by group or others, and the entry is
//! a regular file (not a link). Anything else is ignored (with a warning) and
//! the component is compiled in memory.

use std::path::{Path, PathBuf};

/// Where compiled components are kept: `CONNECTOR_HOST_CACHE_DIR` (empty:
/// no cache), else `$XDG_CACHE_HOME/connector-host`, else
/// `~/.cache/connector-host`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CONNECTOR_HOST_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("connector-host"))
}

/// Why an entry cannot be trusted, if it cannot.
pub fn distrust(entry: &Path) -> Option<String> {
    let dir = entry.parent()?;
    distrust_path("directory", dir).or_else(|| distrust_path("file", entry))
}

/// Why the cache directory or file at `path` cannot be trusted, if it cannot.
fn distrust_path(what: &str, path: &Path) -> Option<String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            return Some(format!(
                "cannot inspect the cache {what} {}: {e}",
                path.display()
            ))
        }
    };
    let kind_ok = if what == "file" {
        meta.file_type().is_file()
    } else {
        meta.file_type().is_dir()
    };
    if !kind_ok {
        return Some(format!("{} is not a regular {what}", path.display()));
    }
    not_private(&meta).map(|why| format!("the cache {what} {} {why}", path.display()))
}

/// Why metadata shows something others could have written, if it does.
#[cfg(unix)]
fn not_private(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Some(format!(
            "belongs to uid {}, not to this user ({me})",
            meta.uid()
        ));
    }
    let mode = meta.mode();
    (mode & 0o022 != 0).then(|| format!("is writable by group or others (mode {:o})", mode & 0o777))
}

#[cfg(not(unix))]
fn not_private(_: &std::fs::Metadata) -> Option<String> {
    None
}

/// Writes an entry into a private directory (created mode 0700), atomically.
/// Nothing is written where the directory cannot be made private.
pub fn write(entry: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = entry.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if let Some(why) = distrust_path("directory", dir) {
        return Err(std::io::Error::other(why));
    }
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, entry)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn only_private_regular_files_are_trusted() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o700);
        let entry = dir.path().join("a.cwasm");
        write(&entry, b"compiled").unwrap();
        assert_eq!(distrust(&entry), None);
        chmod(&entry, 0o666);
        assert!(distrust(&entry)
            .unwrap()
            .contains("writable by group or others"));
        chmod(&entry, 0o600);
        chmod(dir.path(), 0o777);
        assert!(distrust(&entry).unwrap().contains("cache directory"));
        chmod(dir.path(), 0o700);
        let link = dir.path().join("b.cwasm");
        std::os::unix::fs::symlink(&entry, &link).unwrap();
        assert!(distrust(&link).unwrap().contains("not a regular file"));
        assert!(distrust(&dir.path().join("missing.cwasm")).is_some());
    }
}
