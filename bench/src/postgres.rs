//! The full sync into PostgreSQL (`--postgres URL`), beside SQLite's: the
//! same component, emulator and configuration but for `database`.

use crate::{Bench, Row};
use anyhow::{Context as _, Result};

/// The variable holding the PostgreSQL password, for the harness and the host.
pub(crate) const PASSWORD_VAR: &str = "BENCH_POSTGRES_PASSWORD";

impl Bench<'_> {
    /// A full sync with the wasm component into the PostgreSQL database
    /// `url`, emptied before each run.
    pub(crate) fn host_full_postgres(&self, url: &str) -> Result<Row> {
        let database = format!("database = {url:?}\ndatabase_password_env = \"{PASSWORD_VAR}\"");
        let config = self.config_into("bench-postgres.toml", &database)?;
        let password = std::env::var(PASSWORD_VAR)
            .with_context(|| format!("--postgres needs the password in {PASSWORD_VAR}"))?;
        self.measure(
            "wasm component into PostgreSQL",
            self.args.runs,
            || empty(url, &password),
            || {
                let mut cmd = self.host_sync(&config, true);
                cmd.env(PASSWORD_VAR, &password);
                cmd
            },
            |_| live_records(url, &password),
        )
    }
}

fn client(url: &str, password: &str) -> Result<postgres::Client> {
    let mut config: postgres::Config = url.parse().context("--postgres is not a PostgreSQL URL")?;
    config.password(password);
    config
        .connect(postgres::NoTls)
        .context("cannot connect to the --postgres database")
}

/// Drops the store's tables, so that a sync starts empty (and migrates).
pub(crate) fn empty(url: &str, password: &str) -> Result<()> {
    client(url, password)?.batch_execute(
        "DROP TABLE IF EXISTS records, stream_ids, streams, partitions, health, health_history, runs,
            deployment_runs, run_streams, run_partitions, pacing, connector_schema;
         DROP SEQUENCE IF EXISTS lease_tokens;",
    )?;
    Ok(())
}

pub(crate) fn live_records(url: &str, password: &str) -> Result<u64> {
    let row = client(url, password)?
        .query_one("SELECT COUNT(*) FROM records WHERE deleted_at IS NULL", &[])?;
    Ok(row.get::<_, i64>(0) as u64)
}
