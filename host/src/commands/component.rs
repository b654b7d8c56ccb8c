//! `component`: writes a bundled connector component to a file, the
//! artifact any component runtime can run.

use crate::bundled::bundled;
use crate::failure::config_failure;
use anyhow::{Context as _, Result};
use std::io::Write;
use std::path::Path;

/// Writes the bundled component `connector` to `out`, replacing the file at
/// once (written beside it, then renamed), so that a reader never sees half
/// of it.
pub fn write(connector: &str, out_path: &Path, out: &mut dyn Write) -> Result<()> {
    let bytes = bundled(connector).map_err(config_failure)?;
    let dir = out_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // An artifact others may read, as a build writes it (not a temporary
    // file's owner-only default).
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut file = builder
        .tempfile_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.as_file().sync_all())
        .with_context(|| format!("cannot write {}", out_path.display()))?;
    file.persist(out_path)
        .with_context(|| format!("cannot write {}", out_path.display()))?;
    writeln!(
        out,
        "Wrote the `{connector}` component ({} bytes) to {}.",
        bytes.len(),
        out_path.display()
    )?;
    Ok(())
}
