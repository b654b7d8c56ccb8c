//! `status`: the connection's health, record counts and last runs.

use crate::commands::open_synced;
use anyhow::Result;
use connector_engine::sync::RunReport;
use std::io::Write;
use std::path::Path;

/// Prints the status of the connection the configuration at `path` names.
pub async fn status(path: &Path, runs: u32, json: bool, out: &mut dyn Write) -> Result<()> {
    let (_, store, connection) = open_synced(path).await?;
    let health = store.health(&connection)?;
    let recent = store.recent_runs(&connection, runs)?;
    let counts = store.counts(&connection)?;
    if json {
        let value = serde_json::json!({
            "connection": connection,
            "health": health.as_ref().map(|(h, since)| serde_json::json!({
                "state": h.state.name(), "errorKind": h.error_kind, "message": h.message, "since": since,
            })),
            "records": counts.iter().map(|(s, live, deleted)| serde_json::json!({
                "stream": s, "live": live, "deleted": deleted,
            })).collect::<Vec<_>>(),
            "runs": recent.iter().map(|(id, started, finished, status, report)| serde_json::json!({
                "id": id, "startedAt": started, "finishedAt": finished, "status": status,
                "report": report.as_deref().and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok()),
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
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
        for (id, started, finished, status, report) in &recent {
            let summary = report
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
                "  #{id:<5} {started} → {}  {status:<10} {summary}",
                finished.as_deref().unwrap_or("(running or killed)")
            )?;
        }
    }
    Ok(())
}
