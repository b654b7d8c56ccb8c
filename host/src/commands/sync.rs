//! `sync`: reads every stream into the database and prints the run report.

use crate::connection::{connection_name, credential, limits, prepare, sender};
use crate::failure::{load_config, Failure, EXIT_TEMPORARY_FAILURE};
use anyhow::{Context as _, Result};
use connector_engine::progress::{Bars, LogLines};
use connector_engine::store::{Health, HealthState, Store};
use connector_engine::sync::{RunReport, SyncJob, SyncOptions};
use connector_sandbox::egress::EgressLimits;
use connector_sandbox::secrets::Environment;
use connector_sandbox::stop::StopSignal;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Options of the `sync` command.
#[derive(Debug, Clone, Default)]
pub struct SyncFlags {
    /// Print the report as JSON.
    pub json: bool,
    /// Force full reads.
    pub full: bool,
    /// Triggered to stop after the pages in flight (a signal arrived).
    pub stop: Arc<StopSignal>,
}

/// Runs `sync` for a configuration; returns the report.
pub async fn sync(
    path: &Path,
    env: &dyn Environment,
    flags: SyncFlags,
    out: &mut dyn Write,
) -> Result<RunReport> {
    let config = load_config(path)?;
    let p = prepare(config.plugin.as_deref()).await?;
    let origin = p.origin(&config)?;
    let sender = sender(&config, &origin)?;
    let mut store = Store::open(&config.database)
        .with_context(|| format!("cannot open the database {}", config.database.display()))?;
    let connection = connection_name(&config, &p.info, &origin);
    let credential = match credential(&config, &p.info, &origin, &sender, env).await {
        Ok(c) => c,
        Err(e) => {
            let health = Health {
                state: HealthState::Failed,
                error_kind: Some("authentication".into()),
                message: Some(format!("{e:#}")),
            };
            let _ = store.set_health(&connection, &health);
            return Err(e);
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
        progress: if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Arc::new(Bars::default())
        } else {
            Arc::new(LogLines::default())
        },
        options: SyncOptions {
            page_size: config.sync.page_size,
            partitions: config.sync.partitions,
            concurrency: config.sync.concurrency,
            max_attempts: config.sync.max_attempts,
            retry_base: Duration::from_millis(config.sync.retry_base_ms),
            retry_max: Duration::from_millis(config.sync.retry_max_ms),
            max_retry_after: Duration::from_secs(config.sync.max_retry_after_seconds),
            force_full: flags.full,
            stop: flags.stop.clone(),
            requests_per_hour: config.sync.requests_per_hour,
        },
    };
    let report = connector_engine::sync::run(&job, Arc::new(Mutex::new(store))).await?;
    if flags.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write_report(&report, &config.database, out)?;
    }
    if !report.complete() {
        let failed: Vec<String> = report
            .streams
            .iter()
            .filter(|s| !s.complete())
            .map(|s| {
                format!(
                    "{}: {}",
                    s.stream,
                    s.verdict.trim_start_matches("incomplete: ")
                )
            })
            .collect();
        // Schedulers can tell "try again later" (EX_TEMPFAIL) from "needs a fix".
        let exit_code = match report.health().state {
            HealthState::TemporaryFailure => EXIT_TEMPORARY_FAILURE,
            _ => 1,
        };
        return Err(Failure {
            exit_code,
            message: format!(
                "the sync did not complete; committed pages are kept and the next sync resumes after them. {}",
                failed.join(" | ")
            ),
        }
        .into());
    }
    Ok(report)
}

/// Prints a run report as a table.
pub fn write_report(
    report: &RunReport,
    database: &Path,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Synced {} into {} in {:.1} s ({} requests, {:.1} MB received)",
        report.connection,
        database.display(),
        report.seconds,
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
