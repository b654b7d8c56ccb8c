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
    let store = location.open()?;
    let connection = connection_name(&config, &p.info, &p.origin(&config)?);
    Ok((p, store, connection))
}
