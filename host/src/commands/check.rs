//! `check`: reads one row of every stream and reports which are readable.

use crate::connection::{credential, limits, prepare, sender, ComponentRef};
use crate::failure::load_config;
use anyhow::{anyhow, bail, Result};
use connector_sandbox::config::Config;
use connector_sandbox::egress::{EgressCounters, EgressLimits, EgressPolicy};
use connector_sandbox::origin::Origin;
use connector_sandbox::pacing::Pacer;
use connector_sandbox::runtime::CheckReport;
use connector_sandbox::secrets::Environment;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Tests the connection the configuration at `path` describes.
pub async fn check(path: &Path, env: &dyn Environment, out: &mut dyn Write) -> Result<()> {
    let config = load_config(path)?;
    let (origin, connector, report) = check_report(&config, env).await?;
    writeln!(out, "Connection to {origin} ({connector}):")?;
    print_report(&report, out)
}

/// The connector's `check` of the connection `config` describes: the
/// origin it contacted, the component's name, and its report.
pub async fn check_report(
    config: &Config,
    env: &dyn Environment,
) -> Result<(Origin, String, CheckReport)> {
    let p = prepare(ComponentRef::of(config)).await?;
    let origin = p.origin(config)?;
    let sender = sender(config, &origin, env)?;
    let credential = credential(config, &p.info, &origin, &sender, env).await?;
    let egress = EgressPolicy::new(
        origin.clone(),
        sender,
        credential,
        EgressLimits::from(&config.limits),
        Arc::new(EgressCounters::default()),
        Arc::new(Pacer::new(config.sync.requests_per_hour)),
    );
    let mut instance = p
        .runtime
        .instantiate(&p.component, egress, &limits(config))
        .await?;
    let report = instance
        .check(&config.settings)
        .await
        .map_err(|e| anyhow!("the connection test failed: {e}"))?;
    Ok((origin, p.info.name.clone(), report))
}

/// Prints each stream's verdict; an error naming the unreadable ones.
fn print_report(report: &CheckReport, out: &mut dyn Write) -> Result<()> {
    let mut unreadable = Vec::new();
    for s in &report.streams {
        let status = if s.readable {
            "readable"
        } else {
            "NOT READABLE"
        };
        writeln!(out, "  {:<24} {status}", s.stream_name)?;
        if let Some(m) = &s.message {
            writeln!(out, "      {m}")?;
        }
        if !s.readable {
            unreadable.push(format!(
                "{}: {}",
                s.stream_name,
                s.message.clone().unwrap_or_default()
            ));
        }
    }
    if !unreadable.is_empty() {
        bail!("some streams cannot be read: {}", unreadable.join("; "));
    }
    Ok(())
}
