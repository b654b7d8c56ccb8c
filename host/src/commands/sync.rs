//! `sync`: reads every stream into the database and prints the run report.

use crate::connection::{connection_name, credential, limits, prepare, sender, ComponentRef};
use crate::database::StoreLocation;
use crate::failure::{load_config, Failure, EXIT_TEMPORARY_FAILURE};
use anyhow::Result;
use connector_engine::progress::{Bars, LogLines, Progress};
use connector_engine::store::{HealthState, Store, StoreError};
use connector_engine::sync::{
    given_up_after_a_stop, RunReport, SyncInProgress, SyncJob, SyncOptions,
};
use connector_sandbox::config::SyncConfig;
use connector_sandbox::egress::EgressLimits;
use connector_sandbox::secrets::Environment;
use connector_sandbox::stop::StopSignal;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Options of the `sync` command.
#[derive(Clone, Default)]
pub struct SyncFlags {
    /// Print the report as JSON.
    pub json: bool,
    /// Force full reads.
    pub full: bool,
    /// Read only these streams (all when empty).
    pub streams: Vec<String>,
    /// Triggered to stop after the pages in flight (a signal arrived).
    pub stop: Arc<StopSignal>,
    /// Where progress goes (default: bars on a terminal, else log lines).
    pub progress: Option<Arc<dyn Progress>>,
}

impl std::fmt::Debug for SyncFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncFlags")
            .field("json", &self.json)
            .field("full", &self.full)
            .field("streams", &self.streams)
            .field("progress", &self.progress.is_some())
            .finish_non_exhaustive()
    }
}

/// A sync ready to run: the job and the database it writes into.
pub struct PreparedSync {
    /// Everything the engine needs.
    pub job: SyncJob,
    /// The open database.
    pub store: Store,
    /// Where the database is (for the report).
    pub database: String,
}

/// Runs `sync` for a configuration; returns the report.
pub async fn sync(
    path: &Path,
    env: &dyn Environment,
    flags: SyncFlags,
    out: &mut dyn Write,
) -> Result<RunReport> {
    let prepared = prepare_sync(path, env, &flags).await?;
    refuse_beside_workers(&prepared)?;
    let store = Arc::new(Mutex::new(prepared.store));
    let report = connector_engine::sync::run(&prepared.job, store)
        .await
        .map_err(|e| temporary_is_75(e, &flags.stop))?;
    if flags.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write_report(&report, &prepared.database, out)?;
    }
    if !report.complete() {
        return Err(incomplete(&report).into());
    }
    Ok(report)
}

/// Another sync of the connection holding its lock, or a database
/// unavailable for now once the run has started (its end could not be
/// recorded, a stream could not be planned: the server went away or gave
/// up a statement), is a failure that passes by itself: exit 75, and
/// `run` and the console try again sooner. So is a stop that cut short a
/// wait for the database (another process's write lock on a SQLite file).
/// A failed page is the report's to tell ([`incomplete`]); this is what is
/// left when there is no report.
fn temporary_is_75(e: anyhow::Error, stop: &StopSignal) -> anyhow::Error {
    if given_up_after_a_stop(stop, &e) {
        return Failure {
            exit_code: EXIT_TEMPORARY_FAILURE,
            message: format!(
                "the sync was stopped while it waited for the database ({e:#}); the pages written before are kept, and the next sync resumes after them"
            ),
        }
        .into();
    }
    if let Some(database) = e
        .downcast_ref::<StoreError>()
        .filter(|database| database.is_temporary())
    {
        return Failure {
            exit_code: EXIT_TEMPORARY_FAILURE,
            message: format!(
                "the sync did not complete: the database is unavailable for now ({database}); the pages written before are kept, and the next sync resumes after them"
            ),
        }
        .into();
    }
    match e.downcast::<SyncInProgress>() {
        Ok(busy) => Failure {
            exit_code: EXIT_TEMPORARY_FAILURE,
            message: busy.to_string(),
        }
        .into(),
        Err(e) => e,
    }
}

/// Refuses to sync a connection whose run workers are reading (on
/// PostgreSQL): `sync` takes no leases, and the two would read the same
/// partitions at once. Exit 75: it can run once the workers' run ended.
fn refuse_beside_workers(prepared: &PreparedSync) -> Result<()> {
    let connection = prepared.job.connection.clone();
    match prepared.store.runs_in_progress(std::slice::from_ref(&connection)) {
        Ok(running) if !running.is_empty() => Err(Failure {
            exit_code: EXIT_TEMPORARY_FAILURE,
            message: format!(
                "workers are running a sync of {connection} (`connector-host worker`); `sync` takes no leases and would read the same partitions: let the workers run it, or stop them and try again once their run ended"
            ),
        }
        .into()),
        Ok(_) | Err(StoreError::NeedsPostgres(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Loads the configuration and the component, opens the database and
/// obtains the credential; a credential that fails is recorded as the
/// connection's health before the error is returned.
pub async fn prepare_sync(
    path: &Path,
    env: &dyn Environment,
    flags: &SyncFlags,
) -> Result<PreparedSync> {
    let config = load_config(path)?;
    let mut p = prepare(ComponentRef::of(&config)).await?;
    choose_streams(&mut p.info, &flags.streams)?;
    let origin = p.origin(&config)?;
    let sender = sender(&config, &origin, env)?;
    let location = StoreLocation::of(&config.database, env)?;
    let mut store = location.open_unless_stopped(&flags.stop).await?;
    let connection = connection_name(&config, &p.info, &origin);
    let credential = match credential(&config, &p.info, &origin, &sender, env).await {
        Ok(c) => c,
        Err(e) => {
            let _ = store.set_health(&connection, &e.health());
            return Err(e.into());
        }
    };
    let job = SyncJob {
        runtime: p.runtime,
        component: p.component.clone(),
        info: p.info.clone(),
        settings: config.settings.clone(),
        origin,
        sender,
        credential,
        limits: limits(&config),
        egress_limits: EgressLimits::from(&config.limits),
        connection,
        progress: match &flags.progress {
            Some(progress) => progress.clone(),
            None if std::io::IsTerminal::is_terminal(&std::io::stderr()) => {
                Arc::new(Bars::default())
            }
            None => Arc::new(LogLines::default()),
        },
        options: sync_options(&config.sync, flags),
    };
    Ok(PreparedSync {
        job,
        store,
        database: location.describe(),
    })
}

/// Keeps only the `wanted` streams of `info` (all when none is named); a
/// name the component does not have is a configuration error listing them.
fn choose_streams(
    info: &mut connector_sandbox::runtime::ConnectorInfo,
    wanted: &[String],
) -> Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    if let Some(unknown) = wanted
        .iter()
        .find(|w| !info.streams.iter().any(|s| &s.name == *w))
    {
        let names: Vec<&str> = info.streams.iter().map(|s| s.name.as_str()).collect();
        return Err(crate::failure::config_failure(format!(
            "the connector has no stream `{unknown}`; its streams are: {}",
            names.join(", ")
        )));
    }
    info.streams.retain(|s| wanted.contains(&s.name));
    Ok(())
}

/// The engine's options from `[sync]` and the command's flags.
fn sync_options(sync: &SyncConfig, flags: &SyncFlags) -> SyncOptions {
    SyncOptions {
        page_size: sync.page_size,
        partitions: sync.partitions,
        concurrency: sync.concurrency,
        max_attempts: sync.max_attempts,
        retry_base: Duration::from_millis(sync.retry_base_ms),
        retry_max: Duration::from_millis(sync.retry_max_ms),
        max_retry_after: Duration::from_secs(sync.max_retry_after_seconds),
        force_full: flags.full,
        stop: flags.stop.clone(),
        requests_per_hour: sync.requests_per_hour,
    }
}

/// The failure of an incomplete sync: exit 75 when the next run may complete
/// it by itself (schedulers tell "try again later" from "needs a fix"), else 1.
fn incomplete(report: &RunReport) -> Failure {
    // Streams that failed for one reason (a rejected credential stops them
    // all) are named together, the reason once.
    let mut reasons: Vec<(Vec<&str>, &str)> = Vec::new();
    for s in report.streams.iter().filter(|s| !s.complete()) {
        let why = s.verdict.trim_start_matches("incomplete: ");
        match reasons.iter_mut().find(|(_, reason)| *reason == why) {
            Some((streams, _)) => streams.push(&s.stream),
            None => reasons.push((vec![&s.stream], why)),
        }
    }
    let failed: Vec<String> = reasons
        .iter()
        .map(|(streams, why)| format!("{}: {why}", streams.join(", ")))
        .collect();
    let exit_code = match report.health().state {
        HealthState::TemporaryFailure => EXIT_TEMPORARY_FAILURE,
        _ => 1,
    };
    Failure {
        exit_code,
        message: format!(
            "the sync did not complete; committed pages are kept and the next sync resumes after them. {}",
            failed.join(" | ")
        ),
    }
}

/// A run's duration for people: milliseconds below a second (a short sync
/// is not "0.0 s"), else seconds with one decimal.
pub fn elapsed_text(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{} ms", (seconds * 1000.0).round() as u64)
    } else {
        format!("{seconds:.1} s")
    }
}

/// Prints a run report as a table.
pub fn write_report(
    report: &RunReport,
    database: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Synced {} into {} in {} ({} requests, {:.1} MB received)",
        report.connection,
        database,
        elapsed_text(report.seconds),
        report.requests,
        report.bytes as f64 / 1e6
    )?;
    writeln!(
        out,
        "{:<24} {:>11} {:>9} {:>13} {:>7} {:>8} {:>8}  verdict",
        "stream", "read", "records", "server total", "pages", "retries", "deleted"
    )?;
    for s in &report.streams {
        writeln!(
            out,
            "{:<24} {:>11} {:>9} {:>13} {:>7} {:>8} {:>8}  {}{}",
            s.stream,
            s.mode,
            s.records(),
            s.server_total().map_or("-".into(), |t| t.to_string()),
            s.pages(),
            s.retries(),
            s.deleted,
            s.verdict,
            if s.resumed { " (resumed)" } else { "" }
        )?;
    }
    for s in report.streams.iter().filter(|s| s.deleted > 0) {
        writeln!(
            out,
            "{}: {} deleted at the source, {} aged out of the retention window, {} no longer returned (hidden by an ACL, or deleted without an audit the user can read)",
            s.stream, s.deleted_at_source, s.aged_out, s.not_returned
        )?;
    }
    let mut warnings: Vec<&str> = Vec::new();
    for w in report
        .streams
        .iter()
        .flat_map(|s| &s.partitions)
        .flat_map(|p| &p.warnings)
    {
        if !warnings.contains(&w.as_str()) {
            warnings.push(w);
        }
    }
    for w in warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_that_cut_a_wait_for_the_database_short_exits_75_and_says_so() {
        use rusqlite::ffi;
        let busy = || {
            let locked = rusqlite::Error::SqliteFailure(
                ffi::Error::new(ffi::SQLITE_BUSY),
                Some("database is locked".into()),
            );
            anyhow::Error::new(StoreError::from(locked))
        };
        let stop = StopSignal::default();
        let e = temporary_is_75(busy(), &stop);
        assert!(
            e.downcast_ref::<Failure>().is_none(),
            "not stopped: SQLite's own error, exit 1: {e:#}"
        );
        stop.trigger();
        let e = temporary_is_75(busy(), &stop);
        let failure = e
            .downcast_ref::<Failure>()
            .expect("an exit code of its own");
        assert_eq!(failure.exit_code, EXIT_TEMPORARY_FAILURE, "{e:#}");
        assert!(
            failure
                .message
                .starts_with("the sync was stopped while it waited for the database"),
            "{e:#}"
        );
    }

    #[test]
    fn short_runs_are_told_in_milliseconds() {
        assert_eq!(elapsed_text(0.0), "0 ms");
        assert_eq!(elapsed_text(0.0424), "42 ms");
        assert_eq!(elapsed_text(0.9994), "999 ms");
        assert_eq!(elapsed_text(1.0), "1.0 s");
        assert_eq!(elapsed_text(61.26), "61.3 s");
    }
}
