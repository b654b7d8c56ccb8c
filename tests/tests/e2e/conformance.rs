//! `connector-host conformance` on the bundled ServiceNow component (against
//! the emulator, with and without the source's own faults) and on the
//! guide's example; each check's failure is shown on a component broken in
//! that one way (see `tests/components/broken`).

use connector_e2e::inventory::{
    InventoryServer, BROKEN_COMPONENT, BROKEN_INFO_COMPONENT, EXAMPLE_COMPONENT,
};
use connector_e2e::Fixture;
use serde_json::Value;
use std::collections::HashMap;

/// Runs conformance with `--json`; returns the exit code and the report.
fn conformance(
    f: &Fixture,
    config: &std::path::Path,
    env: &HashMap<String, String>,
) -> (u8, Value) {
    let run = f.cli_with_env(
        &[
            "conformance",
            "--json",
            "--config",
            config.to_str().unwrap(),
        ],
        env,
    );
    let code = run.error.as_ref().map_or(0, |(code, _)| *code);
    let report =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    (code, report)
}

/// The status of every check, by name.
fn statuses(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Runs conformance on the bundled component against an emulator failing
/// `fault_rate` of its requests; asserts every check passes and returns how
/// many requests the emulator received.
fn servicenow_conformance(fault_rate: f64) -> usize {
    let f = Fixture::start(120);
    f.state().set_random_faults(fault_rate, 11);
    let (code, report) = conformance(&f, &f.default_config(), &f.env);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["passed"], true);
    for (name, status) in statuses(&report) {
        assert_eq!(status, "pass", "{name}: {report:#}");
    }
    f.state().requests().len()
}

#[test]
fn the_servicenow_component_is_conformant_with_and_without_faults() {
    let clean = servicenow_conformance(0.0);
    // One request in five: 5xx, HTML pages, bare 429s, cancelled transactions, resets.
    let faulted = servicenow_conformance(0.2);
    // Faults cost retries: a run that needed none saw no fault and proved nothing.
    assert!(
        faulted > clean,
        "{faulted} requests with faults, {clean} without"
    );
}

const TOKEN: &str = "0123456789abcdef";

fn token() -> HashMap<String, String> {
    InventoryServer::env(TOKEN)
}

/// A configuration for `component` reading `server`, with extra settings.
fn inventory_config(
    f: &Fixture,
    server: &InventoryServer,
    component: &[u8],
    settings: &str,
) -> std::path::PathBuf {
    server.config(f.dir.path(), component, settings, "")
}

#[test]
fn the_example_connector_is_conformant() {
    let f = Fixture::start(1);
    let server = InventoryServer::start(30, TOKEN);
    let config = inventory_config(&f, &server, EXAMPLE_COMPONENT, "");
    let (code, report) = conformance(&f, &config, &token());
    assert_eq!(code, 0, "{report:#}");
    let statuses = statuses(&report);
    for (name, status) in &statuses {
        let expected = if name == "incremental" {
            "skip"
        } else {
            "pass"
        };
        assert_eq!(status, expected, "{name}: {report:#}");
    }
}

#[test]
fn every_check_fails_on_the_component_broken_its_way() {
    let f = Fixture::start(1);
    let server = InventoryServer::start(30, TOKEN);
    // The control: unbroken, the same component passes every check.
    let config = inventory_config(&f, &server, BROKEN_COMPONENT, "violation = \"none\"");
    let (code, report) = conformance(&f, &config, &token());
    assert_eq!(code, 0, "{report:#}");
    let config = inventory_config(&f, &server, BROKEN_INFO_COMPONENT, "");
    let (code, report) = conformance(&f, &config, &token());
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        statuses(&report)[0],
        ("info".into(), "fail".into()),
        "{report:#}"
    );
    for (violation, check) in [
        ("missing-settings-internal", "missing-settings"),
        ("unauthenticated-as-bad-response", "wrong-credentials"),
        ("check-order", "check-report"),
        ("invalid-record", "records"),
        ("oversized-page", "paging"),
        ("overlapping-partitions", "paging"),
        ("endless", "paging"),
        ("ignores-cursor", "resume"),
        ("nondeterministic", "repeatable"),
        ("ignores-watermark", "incremental"),
        ("traps-on-429", "error-mapping"),
        ("forbidden-header", "egress"),
        ("other-host", "egress"),
    ] {
        let config = inventory_config(
            &f,
            &server,
            BROKEN_COMPONENT,
            &format!("violation = {violation:?}"),
        );
        let (code, report) = conformance(&f, &config, &token());
        assert_eq!(code, 1, "{violation}: {report:#}");
        let failed: Vec<String> = statuses(&report)
            .into_iter()
            .filter(|(_, status)| status == "fail")
            .map(|(name, _)| name)
            .collect();
        assert!(
            failed.contains(&check.to_string()),
            "{violation} should fail `{check}`, failed {failed:?}: {report:#}"
        );
    }
}
