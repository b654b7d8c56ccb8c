//! `connector-host conformance`: judges any connector component against the
//! contract, on the configured source.
//!
//! Like `check` it only reads; unlike `check` it judges the connector. Each
//! check reports pass, fail or skip with its reason:
//!
//! | Check | What it proves |
//! |---|---|
//! | `info` | semver version; schemas compile (draft 2020-12); key, updated and reference fields exist; keys are scalars; references name streams; exactly one endpoint setting |
//! | `missing-settings` | a missing required setting fails with `invalid-settings` before any request |
//! | `wrong-credentials` | a deliberately wrong secret fails with `unauthenticated` |
//! | `check-report` | `check` returns one entry per stream, in `info` order |
//! | `records` | every record of a full read is valid against its schema, with a unique key |
//! | `paging` | cursors end within a bound; pages respect `page-size`; partitions are disjoint and together give the records of one partition |
//! | `resume` | resuming from an intermediate cursor yields exactly the remaining records |
//! | `repeatable` | two full reads give the same records |
//! | `incremental` | from a full read's watermark, only records changed since; from a future watermark none, and still a watermark |
//! | `error-mapping` | injected 429 (with and without `Retry-After`), 503, truncated body and reset mid-body map to the right `connector-error`, never a trap, never records |
//! | `egress` | the connector set no forbidden header and contacted nothing but its endpoint |
//!
//! [`run`] runs them all; the harness ([`harness`]) instantiates the
//! component as `sync` does, with fresh counters per instance.

mod checks_info;
mod checks_read;
mod checks_source;
pub mod harness;

use serde::Serialize;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The connector did what the contract says.
    Pass,
    /// It did not; `detail` says what happened.
    Fail,
    /// The check could not apply (e.g. no credentials configured).
    Skip,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name, e.g. `paging`.
    pub name: &'static str,
    /// Pass, fail or skip.
    pub status: Status,
    /// What was seen (why it failed, or why it was skipped).
    pub detail: String,
}

impl Check {
    /// A passed check.
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Pass,
            detail: detail.into(),
        }
    }

    /// A failed check.
    pub fn fail(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
        }
    }

    /// A skipped check.
    pub fn skip(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Skip,
            detail: detail.into(),
        }
    }

    /// `pass` with `detail` when `problems` is empty, else `fail` listing them.
    pub fn from_problems(
        name: &'static str,
        problems: Vec<String>,
        detail: impl Into<String>,
    ) -> Check {
        if problems.is_empty() {
            Check::pass(name, detail)
        } else {
            Check::fail(name, problems.join("; "))
        }
    }
}

/// Every check's result (`--json` prints this).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// In the order they ran.
    pub checks: Vec<Check>,
    /// Whether no check failed.
    pub passed: bool,
}

/// Runs every check on the harness's connector and source.
pub async fn run(h: &harness::Harness) -> Report {
    let mut checks = vec![
        checks_info::info(&h.info),
        checks_source::missing_settings(h).await,
        checks_source::wrong_credentials(h).await,
        checks_source::check_report(h).await,
    ];
    checks.extend(checks_read::reads(h).await);
    checks.push(checks_source::error_mapping(h).await);
    checks.push(checks_source::egress(h));
    let passed = checks.iter().all(|c| c.status != Status::Fail);
    Report { checks, passed }
}

/// The report when the source cannot be reached at all (no usable
/// endpoint): the `info` check, and every other check skipped with `why`.
pub fn info_only(info: &connector_sandbox::runtime::ConnectorInfo, why: &str) -> Report {
    let mut checks = vec![checks_info::info(info)];
    for name in [
        "missing-settings",
        "wrong-credentials",
        "check-report",
        "records",
        "paging",
        "resume",
        "repeatable",
        "incremental",
        "error-mapping",
        "egress",
    ] {
        checks.push(Check::skip(name, why));
    }
    let passed = checks.iter().all(|c| c.status != Status::Fail);
    Report { checks, passed }
}

/// The report as a table for a terminal.
pub fn write_text(report: &Report, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    for c in &report.checks {
        let status = match c.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        writeln!(out, "{status}  {:<18} {}", c.name, c.detail)?;
    }
    let failed = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .count();
    writeln!(
        out,
        "{} ({} checks passed, {failed} failed, {} skipped)",
        if report.passed {
            "conformant"
        } else {
            "NOT conformant"
        },
        report
            .checks
            .iter()
            .filter(|c| c.status == Status::Pass)
            .count(),
        report
            .checks
            .iter()
            .filter(|c| c.status == Status::Skip)
            .count(),
    )
}
