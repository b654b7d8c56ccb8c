//! Where a connection's records are kept, resolved from its configuration:
//! the SQLite file, or the PostgreSQL database with the password taken from
//! the environment (`database_password_env`, else `PGPASSWORD`; and
//! `PGAPPNAME`, how the server lists the client, as libpq reads it). The
//! password lives in memory only: never in the file, the URL, a message or
//! the database.

use crate::failure::config_failure;
use anyhow::{Context as _, Result};
use connector_engine::store::{PostgresTarget, Store};
use connector_sandbox::config::DatabaseConfig;
use connector_sandbox::secrets::Environment;
use std::path::PathBuf;

/// A connection's database, ready to open.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, with its password.
    Postgres(PostgresTarget),
}

impl StoreLocation {
    /// The database `config` names, its password read from `env`.
    pub fn of(config: &DatabaseConfig, env: &dyn Environment) -> Result<StoreLocation> {
        Ok(match config {
            DatabaseConfig::Sqlite(path) => StoreLocation::Sqlite(path.clone()),
            DatabaseConfig::Postgres {
                url,
                password_env,
                ca_file,
            } => {
                let password = match password_env {
                    Some(var) => Some(env.var(var).ok_or_else(|| {
                        config_failure(format!(
                            "database_password_env names {var}, which is not set; export it with the database user's password"
                        ))
                    })?),
                    None => env.var("PGPASSWORD"),
                };
                StoreLocation::Postgres(PostgresTarget {
                    url: url.clone(),
                    password,
                    ca_file: ca_file.clone(),
                    // libpq's variable: how the server lists this client.
                    application_name: env.var("PGAPPNAME"),
                })
            }
        })
    }

    /// Opens it (a SQLite file is created when missing; a PostgreSQL schema
    /// is created or migrated).
    pub fn open(&self) -> Result<Store> {
        match self {
            StoreLocation::Sqlite(path) => Store::open(path)
                .with_context(|| format!("cannot open the database {}", path.display())),
            StoreLocation::Postgres(target) => Store::open_postgres(target)
                .with_context(|| format!("cannot open the database {}", target.url)),
        }
    }

    /// Whether anything can be stored there yet: a SQLite file exists only
    /// after the first sync; a PostgreSQL database is always there.
    pub fn exists(&self) -> bool {
        match self {
            StoreLocation::Sqlite(path) => path.exists(),
            StoreLocation::Postgres(_) => true,
        }
    }

    /// What to call it in messages (the URL holds no password).
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => path.display().to_string(),
            StoreLocation::Postgres(target) => target.url.clone(),
        }
    }
}
