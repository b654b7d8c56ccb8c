//! Where a connection's records are kept, resolved from its configuration:
//! the SQLite file, or the PostgreSQL database with the password taken from
//! the environment (`database_password_env`, else `PGPASSWORD`; and
//! `PGAPPNAME`, how the server lists the client, as libpq reads it). The
//! password lives in memory only: never in the file, the URL, a message or
//! the database.

use crate::failure::{config_failure, Failure, EXIT_TEMPORARY_FAILURE};
use anyhow::{Context as _, Result};
use connector_engine::store::{OpenError, PostgresTarget, Store};
use connector_sandbox::config::DatabaseConfig;
use connector_sandbox::secrets::Environment;
use connector_sandbox::stop::StopSignal;
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
    ///
    /// A PostgreSQL server out of reach for now is a [`Failure`] with exit
    /// 75, which passes by itself ([`OpenError::is_temporary`]); a login it
    /// refuses is one with exit 2, which needs the configuration changed.
    pub fn open(&self) -> Result<Store> {
        match self {
            StoreLocation::Sqlite(path) => Store::open(path)
                .with_context(|| format!("cannot open the database {}", path.display())),
            StoreLocation::Postgres(target) => {
                Store::open_postgres(target).map_err(|e| postgres_open_failure(&target.url, e))
            }
        }
    }

    /// [`StoreLocation::open`] on a blocking thread. Opening may wait for
    /// the server (up to twice the connect time-out): it then holds that
    /// thread, not one of the async runtime's workers, which serve the
    /// console and run the other connections' syncs.
    pub async fn open_off_runtime(&self) -> Result<Store> {
        let location = self.clone();
        tokio::task::spawn_blocking(move || location.open())
            .await
            .map_err(|e| anyhow::anyhow!("opening the database stopped: {e}"))?
    }

    /// [`StoreLocation::open_off_runtime`], given up once `stop` is
    /// triggered: a sync or worker stopped while its PostgreSQL server never
    /// answers stops at once (exit 75), not when the open gives up (twice
    /// the connect time-out). The open goes on, abandoned, on its thread.
    pub async fn open_unless_stopped(&self, stop: &StopSignal) -> Result<Store> {
        tokio::select! {
            opened = self.open_off_runtime() => opened,
            _ = stop.triggered() => Err(Failure {
                exit_code: EXIT_TEMPORARY_FAILURE,
                message: format!(
                    "stopped while the database {} was being opened; nothing was read or written",
                    self.describe()
                ),
            }
            .into()),
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

/// Why the PostgreSQL database at `url` could not be opened, with the exit
/// status it deserves and what to do.
fn postgres_open_failure(url: &str, e: OpenError) -> anyhow::Error {
    match e {
        e if e.is_temporary() => Failure {
            exit_code: EXIT_TEMPORARY_FAILURE,
            message: format!(
                "cannot open the database {url}: {e}. Nothing was read or written. The server may be down, restarting or out of connection slots: the next sync tries again; if this lasts, check that PostgreSQL runs and accepts connections at the host and port of `database`"
            ),
        }
        .into(),
        OpenError::Connect(why) => config_failure(format!(
            "cannot open the database {url}: the PostgreSQL server refused the connection: {why}. Check the user and database in `database`, the password in PGPASSWORD (or the variable `database_password_env` names), the server's pg_hba.conf, and `sslmode` and `database_ca_file`"
        )),
        e => anyhow::Error::new(e).context(format!("cannot open the database {url}")),
    }
}
