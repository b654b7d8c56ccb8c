//! One module per command of the CLI.

pub mod check;
pub mod component;
pub mod conformance;
pub mod export;
pub mod info;
pub mod schedule;
pub mod serve;
pub mod status;
pub mod sync;
pub mod worker;

use crate::connection::{connection_name, prepare, ComponentRef, Prepared};
use crate::database::StoreLocation;
use crate::failure::{config_failure, load_config};
use anyhow::Result;
use connector_engine::store::Store;
use connector_sandbox::secrets::Environment;
use std::path::Path;

/// For commands that read what `sync` stored: the component, the database
/// (which must exist) and the connection's name in it.
pub(crate) async fn open_synced(
    path: &Path,
    env: &dyn Environment,
) -> Result<(Prepared, Store, String)> {
    let config = load_config(path)?;
    let location = StoreLocation::of(&config.database, env)?;
    if !location.exists() {
        return Err(config_failure(format!(
            "the database {} does not exist yet; run `connector-host sync --config {}` first",
            location.describe(),
            path.display()
        )));
    }
    let p = prepare(ComponentRef::of(&config)).await?;
    let store = location.open_off_runtime().await?;
    let connection = connection_name(&config, &p.info, &p.origin(&config)?);
    Ok((p, store, connection))
}

/// The connection files (`*.toml`) of a configuration directory, in name order.
pub(crate) fn connection_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        config_failure(format!(
            "cannot read the configuration directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}
