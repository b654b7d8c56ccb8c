//! `export`: the stored records of a stream as JSON lines.

use crate::commands::open_synced;
use crate::failure::config_failure;
use anyhow::Result;
use connector_engine::export::ExportOptions;
use connector_sandbox::secrets::Environment;
use std::io::Write;
use std::path::Path;

/// Writes the stored records of `stream` to `out`.
pub async fn export(
    path: &Path,
    env: &dyn Environment,
    stream: &str,
    options: ExportOptions,
    out: &mut dyn Write,
) -> Result<()> {
    let (p, store, connection) = open_synced(path, env).await?;
    let mut buffered = std::io::BufWriter::new(out);
    connector_engine::export::export(&store, &p.info, &connection, stream, options, &mut buffered)
        .map_err(|e| config_failure(format!("{e:#}")))?;
    buffered.flush()?;
    Ok(())
}
