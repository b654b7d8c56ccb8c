//! `run --every`: syncs periodically, backing off after failures that pass
//! by themselves.

use crate::commands::sync::{sync, SyncFlags};
use crate::failure::{Failure, EXIT_TEMPORARY_FAILURE};
use anyhow::Result;
use connector_sandbox::secrets::Environment;
use connector_sandbox::stop::StopSignal;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Parses `--every`: a duration such as `6h` or `30m`, at least 1 s.
pub fn parse_every(text: &str) -> std::result::Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration such as 6h or 30m: {e}"))?;
    if d < std::time::Duration::from_secs(1) {
        return Err("the interval must be at least 1s".into());
    }
    Ok(d)
}

/// First wait after a failure that passes by itself; it doubles with each
/// further one, up to the interval.
const FIRST_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// How long `run --every` waits after a sync: the interval after a success
/// or a failure that needs action (it will not pass sooner); 1 min, 2 min,
/// 4 min … (at most the interval) after failures that pass by themselves
/// (exit 75); `None` after a configuration error, which stops the loop.
pub(crate) fn next_sync_delay<T>(
    outcome: &Result<T>,
    temporary_failures: &mut u32,
    every: std::time::Duration,
) -> Option<std::time::Duration> {
    let exit_code = match outcome {
        Ok(_) => 0,
        Err(e) => e.downcast_ref::<Failure>().map_or(1, |f| f.exit_code),
    };
    match exit_code {
        2 => None,
        EXIT_TEMPORARY_FAILURE => {
            let backoff = FIRST_RETRY.saturating_mul(1 << (*temporary_failures).min(16));
            *temporary_failures += 1;
            Some(backoff.min(every))
        }
        _ => {
            *temporary_failures = 0;
            Some(every)
        }
    }
}

/// `run --every`: syncs, waits, syncs again; backs off after temporary failures.
pub async fn run_every(
    path: &Path,
    env: &dyn Environment,
    every: std::time::Duration,
    max_runs: Option<u32>,
    stop: &Arc<StopSignal>,
    out: &mut dyn Write,
) -> Result<()> {
    let mut runs = 0;
    let mut temporary_failures = 0u32;
    loop {
        let flags = SyncFlags {
            stop: stop.clone(),
            ..Default::default()
        };
        let outcome = sync(path, env, flags, out).await;
        runs += 1;
        if let Err(e) = &outcome {
            writeln!(out, "sync failed: {}", format!("{e:#}").replace('\n', " "))?;
        }
        let Some(delay) = next_sync_delay(&outcome, &mut temporary_failures, every) else {
            // A configuration problem will not fix itself.
            return outcome.map(|_| ());
        };
        if stop.is_triggered() || max_runs.is_some_and(|m| runs >= m) {
            writeln!(out, "stopped after {runs} sync(s)")?;
            return Ok(());
        }
        writeln!(out, "next sync in {}", humantime::format_duration(delay))?;
        if stop.sleep(delay).await {
            writeln!(out, "stopped after {runs} sync(s)")?;
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;
    use std::time::Duration;

    fn failure(exit_code: u8) -> Result<()> {
        Err(Failure {
            exit_code,
            message: String::new(),
        }
        .into())
    }

    #[test]
    fn run_every_backs_off_only_after_failures_that_pass_by_themselves() {
        let every = Duration::from_secs(6 * 3600);
        let mut failures = 0;
        let delays: Vec<Option<Duration>> = [75, 75, 75, 1, 75, 0]
            .into_iter()
            .map(|code| {
                let outcome = if code == 0 { Ok(()) } else { failure(code) };
                next_sync_delay(&outcome, &mut failures, every)
            })
            .collect();
        let minutes = |m: u64| Some(Duration::from_secs(60 * m));
        // 1, 2, 4 minutes; a failure that needs action waits the interval
        // and starts the back-off over.
        assert_eq!(
            delays,
            [
                minutes(1),
                minutes(2),
                minutes(4),
                Some(every),
                minutes(1),
                Some(every)
            ]
        );
        assert_eq!(next_sync_delay(&failure(2), &mut failures, every), None);
        let short = Duration::from_secs(90);
        let mut failures = 5;
        assert_eq!(
            next_sync_delay(&failure(75), &mut failures, short),
            Some(short)
        );
        let plain: Result<()> = Err(anyhow!("the database is locked"));
        assert_eq!(next_sync_delay(&plain, &mut failures, every), Some(every));
    }
}
