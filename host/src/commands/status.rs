//! `status`: the connection's health, record counts and last runs.

use crate::commands::open_synced;
use anyhow::Result;
use connector_engine::sync::RunReport;
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// Prints the status of the connection the configuration at `path` names.
pub async fn status(path: &Path, runs: u32, json: bool, out: &mut dyn Write) -> Result<()> {
    let (_, store, connection) = open_synced(path).await?;
    let health = store.health(&connection)?;
    let recent = store.recent_runs(&connection, runs)?;
    let counts = store.counts(&connection)?;
    if json {
        let report = StatusJson {
            connection: &connection,
            health: health.as_ref().map(|(h, since)| HealthJson {
                state: h.state.name(),
                error_kind: h.error_kind.as_deref(),
                message: h.message.as_deref(),
                since,
            }),
            records: counts
                .iter()
                .map(|(stream, live, deleted)| RecordsJson {
                    stream,
                    live: *live,
                    deleted: *deleted,
                })
                .collect(),
            runs: recent
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
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    match &health {
        Some((h, since)) => {
            writeln!(out, "{connection}: {} (since {since})", h.state.name())?;
            if let Some(m) = &h.message {
                writeln!(
                    out,
                    "  {}{m}",
                    h.error_kind
                        .as_deref()
                        .map(|k| format!("[{k}] "))
                        .unwrap_or_default()
                )?;
            }
        }
        None => writeln!(out, "{connection}: never synced")?,
    }
    if !counts.is_empty() {
        writeln!(out, "\nRecords:")?;
        for (stream, live, deleted) in &counts {
            writeln!(out, "  {stream:<24} {live:>9} live {deleted:>9} deleted")?;
        }
    }
    if !recent.is_empty() {
        writeln!(out, "\nLast runs:")?;
        for run in &recent {
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
                run.finished_at.as_deref().unwrap_or("(running or killed)"),
                run.status
            )?;
        }
    }
    Ok(())
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
