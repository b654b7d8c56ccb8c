//! `status`: the connection's health, record counts and last runs.

use crate::commands::open_synced;
use anyhow::Result;
use connector_engine::store::lease::HeldLease;
use connector_engine::store::{Health, StoredRun};
use connector_engine::sync::RunReport;
use connector_sandbox::secrets::Environment;
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// Prints the status of the connection the configuration at `path` names.
pub async fn status(
    path: &Path,
    env: &dyn Environment,
    runs: u32,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let (_, store, connection) = open_synced(path, env).await?;
    let seen = Status {
        connection: &connection,
        health: store.health(&connection)?,
        counts: store.counts(&connection)?,
        runs: store.recent_runs(&connection, runs)?,
        leases: store.leases(&connection)?,
    };
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&seen.to_json())?)?;
        return Ok(());
    }
    seen.write_health(out)?;
    seen.write_counts(out)?;
    seen.write_leases(out)?;
    seen.write_runs(out)?;
    Ok(())
}

/// What the database says of one connection.
struct Status<'a> {
    connection: &'a str,
    /// The health and since when.
    health: Option<(Health, String)>,
    /// (stream, live records, deleted records).
    counts: Vec<(String, u64, u64)>,
    /// Newest first.
    runs: Vec<StoredRun>,
    /// Who holds which partition (PostgreSQL, while workers read).
    leases: Vec<HeldLease>,
}

impl Status<'_> {
    fn to_json(&self) -> StatusJson<'_> {
        StatusJson {
            connection: self.connection,
            health: self.health.as_ref().map(|(h, since)| HealthJson {
                state: h.state.name(),
                error_kind: h.error_kind.as_deref(),
                message: h.message.as_deref(),
                since,
            }),
            records: self
                .counts
                .iter()
                .map(|(stream, live, deleted)| RecordsJson {
                    stream,
                    live: *live,
                    deleted: *deleted,
                })
                .collect(),
            runs: self
                .runs
                .iter()
                .map(|run| RunJson {
                    id: run.id,
                    started_at: &run.started_at,
                    finished_at: run.finished_at.as_deref(),
                    status: &run.status,
                    report: run
                        .report
                        .as_deref()
                        .and_then(|r| serde_json::from_str(r).ok()),
                })
                .collect(),
            leases: self
                .leases
                .iter()
                .map(|l| LeaseJson {
                    stream: &l.stream,
                    partition: l.partition,
                    holder: &l.holder,
                    since: &l.since,
                    until: &l.until,
                })
                .collect(),
        }
    }

    fn write_leases(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.leases.is_empty() {
            return Ok(());
        }
        writeln!(out, "\nLeases:")?;
        for l in &self.leases {
            writeln!(
                out,
                "  {:<24} partition {:<3} held by {} since {} (until {})",
                l.stream, l.partition, l.holder, l.since, l.until
            )?;
        }
        Ok(())
    }

    fn write_health(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let connection = self.connection;
        let Some((h, since)) = &self.health else {
            return writeln!(out, "{connection}: never synced");
        };
        writeln!(out, "{connection}: {} (since {since})", h.state.name())?;
        if let Some(m) = &h.message {
            let kind = h
                .error_kind
                .as_deref()
                .map(|k| format!("[{k}] "))
                .unwrap_or_default();
            writeln!(out, "  {kind}{m}")?;
        }
        Ok(())
    }

    fn write_counts(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.counts.is_empty() {
            return Ok(());
        }
        writeln!(out, "\nRecords:")?;
        for (stream, live, deleted) in &self.counts {
            writeln!(out, "  {stream:<24} {live:>9} live {deleted:>9} deleted")?;
        }
        Ok(())
    }

    fn write_runs(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.runs.is_empty() {
            return Ok(());
        }
        writeln!(out, "\nLast runs:")?;
        for run in &self.runs {
            let summary = run
                .report
                .as_deref()
                .and_then(|r| serde_json::from_str::<RunReport>(r).ok())
                .map(|r| {
                    format!(
                        "{} records, {} requests",
                        r.streams.iter().map(|s| s.records()).sum::<u64>(),
                        r.requests
                    )
                })
                .unwrap_or_default();
            writeln!(
                out,
                "  #{:<5} {} → {}  {:<10} {summary}",
                run.id,
                run.started_at,
                run.finished_at
                    .as_deref()
                    .unwrap_or(match run.status.as_str() {
                        "running" => "(running or killed)",
                        _ => "(no end recorded)",
                    }),
                run.status
            )?;
        }
        Ok(())
    }
}

/// `status --json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusJson<'a> {
    connection: &'a str,
    /// None before the first sync.
    health: Option<HealthJson<'a>>,
    records: Vec<RecordsJson<'a>>,
    /// Newest first.
    runs: Vec<RunJson<'a>>,
    /// Live leases (PostgreSQL, while workers read).
    leases: Vec<LeaseJson<'a>>,
}

/// A live lease.
#[derive(Serialize)]
struct LeaseJson<'a> {
    stream: &'a str,
    partition: u32,
    holder: &'a str,
    since: &'a str,
    until: &'a str,
}

/// The connection's health.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthJson<'a> {
    state: &'a str,
    error_kind: Option<&'a str>,
    message: Option<&'a str>,
    since: &'a str,
}

/// A stream's stored records.
#[derive(Serialize)]
struct RecordsJson<'a> {
    stream: &'a str,
    live: u64,
    deleted: u64,
}

/// One run.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RunJson<'a> {
    id: i64,
    started_at: &'a str,
    finished_at: Option<&'a str>,
    status: &'a str,
    /// The run report as `sync --json` printed it.
    report: Option<serde_json::Value>,
}
