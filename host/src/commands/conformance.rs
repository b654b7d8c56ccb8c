//! `conformance`: judges the configured component against the contract.

use crate::connection::{credential, limits, prepare, sender, ComponentRef};
use crate::failure::{load_config, Failure};
use anyhow::Result;
use connector_conformance::harness::Harness;
use connector_conformance::{Report, Status};
use connector_sandbox::egress::{EgressCounters, EgressLimits};
use connector_sandbox::secrets::Environment;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// `conformance`: runs every check and prints the report.
pub async fn run(
    path: &Path,
    env: &dyn Environment,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let config = load_config(path)?;
    let p = prepare(ComponentRef::of(&config)).await?;
    let report: Report = match p.origin(&config) {
        Err(e) => {
            connector_conformance::info_only(&p.info, &format!("the source cannot be reached: {e}"))
        }
        Ok(origin) => {
            let sender = sender(&config, &origin, env)?;
            let credential = credential(&config, &p.info, &origin, &sender, env).await?;
            let harness = Harness {
                runtime: p.runtime,
                component: p.component.clone(),
                info: p.info.clone(),
                limits: limits(&config),
                egress_limits: EgressLimits::from(&config.limits),
                config,
                origin,
                sender,
                credential,
                totals: Arc::new(EgressCounters::default()),
            };
            connector_conformance::run(&harness).await
        }
    };
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        connector_conformance::write_text(&report, out)?;
    }
    if report.passed {
        return Ok(());
    }
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name)
        .collect();
    Err(Failure {
        exit_code: 1,
        message: format!(
            "the connector is not conformant: failed checks: {}",
            failed.join(", ")
        ),
    }
    .into())
}
