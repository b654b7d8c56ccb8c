//! `worker`: one of a deployment's workers. Every worker gets the same
//! directory of connection files and its own secrets (environment or
//! owner-only files); they share the syncs through the PostgreSQL database
//! the files name ([`connector_engine::worker`] says how).

use crate::commands::schedule::parse_every;
use crate::commands::sync::{prepare_sync, SyncFlags};
use crate::database::StoreLocation;
use crate::failure::{config_failure, load_config, Failure, EXIT_TEMPORARY_FAILURE};
use anyhow::Result;
use connector_engine::progress::LogLines;
use connector_engine::sync::RunReport;
use connector_engine::worker::{work, Outage, Served, StorePacing, WorkerOptions};
use connector_sandbox::pacing::Pacer;
use connector_sandbox::secrets::Environment;
use connector_sandbox::stop::StopSignal;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Options of the `worker` command: its arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerFlags {
    /// Directory of connection files (the same for every worker).
    #[arg(long)]
    pub config_dir: PathBuf,
    /// The worker's name in leases, reports and `status` (default: the
    /// host's name and the process id).
    #[arg(long)]
    pub id: Option<String>,
    /// Run every connection's due sync, then exit once none is due or
    /// in progress on any worker.
    #[arg(long)]
    pub once: bool,
    /// Partitions read at once.
    #[arg(long, default_value_t = 4)]
    pub slots: usize,
    /// Time between syncs of a connection whose file sets no `[schedule] every`.
    #[arg(long, default_value = "6h", value_parser = parse_every)]
    pub every: Duration,
}

/// Runs a worker until `stop` (or, with `--once`, until the work is done).
pub async fn worker(
    flags: &WorkerFlags,
    env: &dyn Environment,
    stop: Arc<StopSignal>,
    out: &mut dyn Write,
) -> Result<()> {
    let id = flags.id.clone().unwrap_or_else(default_id);
    let env = NamedClient {
        env,
        name: format!("connector-host worker {id}"),
    };
    let Some(served) = serve_all_once_possible(flags, &env, &stop, out).await? else {
        writeln!(out, "worker {id} stopped before it could serve")?;
        return Ok(());
    };
    let names: Vec<&str> = served.iter().map(|s| s.connection()).collect();
    writeln!(
        out,
        "worker {id} serves {} connection(s): {}",
        names.len(),
        names.join(", ")
    )?;
    out.flush()?;
    let options = WorkerOptions {
        id: id.clone(),
        slots: flags.slots.max(1),
        once: flags.once,
        stop,
    };
    let mut on_run_end = |report: &RunReport| {
        let _ = writeln!(out, "{}", run_line(report));
        let _ = out.flush();
    };
    let summary = work(&served, &options, &mut on_run_end).await?;
    writeln!(
        out,
        "worker {id} stopped: started {} run(s), read {} partition(s), ended {} run(s)",
        summary.runs_started, summary.partitions_claimed, summary.runs_ended
    )?;
    Ok(())
}

/// One line for a run's end.
fn run_line(report: &RunReport) -> String {
    let records: u64 = report.streams.iter().map(|s| s.records()).sum();
    let verdict = match report.streams.iter().find(|s| !s.complete()) {
        None => "complete".to_string(),
        Some(s) => format!("{}: {}", s.stream, s.verdict),
    };
    format!(
        "run {} of {} ended: {verdict}; {records} records, {} requests, {:.1} s",
        report.run_id, report.connection, report.requests, report.seconds
    )
}

/// The environment, with `PGAPPNAME` naming the worker unless it is set:
/// `pg_stat_activity` then tells which worker each connection serves.
struct NamedClient<'a> {
    env: &'a dyn Environment,
    name: String,
}

impl Environment for NamedClient<'_> {
    fn var(&self, name: &str) -> Option<String> {
        match self.env.var(name) {
            None if name == "PGAPPNAME" => Some(self.name.clone()),
            value => value,
        }
    }
}

/// The host's name and this process's id.
fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// [`serve_all`], waiting out a failure that passes by itself (the
/// database out of reach, as when a worker starts with its database in a
/// deployment, or a token endpoint unavailable for now): it tries again
/// after 1 s, 2 s, 4 s … (at most 30 s), as [`work`] does once running.
/// With `--once` the temporary failure is returned (exit 75). `None`:
/// stopped while waiting.
async fn serve_all_once_possible(
    flags: &WorkerFlags,
    env: &dyn Environment,
    stop: &Arc<StopSignal>,
    out: &mut dyn Write,
) -> Result<Option<Vec<Arc<Served>>>> {
    let mut outage = Outage::default();
    loop {
        match serve_all(&flags.config_dir, flags.every, env, stop, out).await {
            Err(e) if is_temporary(&e) && !flags.once => {
                if stop.is_triggered() {
                    return Ok(None);
                }
                if !outage.is_on() {
                    writeln!(out, "waiting to serve: {e:#}")?;
                    out.flush()?;
                }
                let wait = outage.next_wait();
                tracing::warn!("{e:#}; trying again in {} s", wait.as_secs());
                if stop.sleep(wait).await {
                    return Ok(None);
                }
            }
            result => {
                outage.over();
                return result.map(Some);
            }
        }
    }
}

/// Whether `e` is a failure that passes by itself (exit 75): the database
/// out of reach, a token endpoint unavailable for now.
fn is_temporary(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Failure>()
        .is_some_and(|f| f.exit_code == EXIT_TEMPORARY_FAILURE)
}

/// Every connection file of `dir` that can be served, prepared; each that
/// cannot (it names SQLite, its credential is refused…) is named on `out`
/// and left out, so one broken connection does not stop the others. None
/// servable is a configuration error listing why. A failure that passes by
/// itself is returned as it is, with nothing named: a later attempt may
/// serve every file.
async fn serve_all(
    dir: &Path,
    default_every: Duration,
    env: &dyn Environment,
    stop: &Arc<StopSignal>,
    out: &mut dyn Write,
) -> Result<Vec<Arc<Served>>> {
    let files = connection_files(dir)?;
    let mut prepared = Vec::with_capacity(files.len());
    for file in files {
        match serve_one(&file, default_every, env, stop).await {
            Err(e) if is_temporary(&e) => return Err(e),
            result => prepared.push((file, result)),
        }
    }
    let mut served = Vec::with_capacity(prepared.len());
    let mut problems = Vec::new();
    for (file, result) in prepared {
        match result {
            Ok(s) => served.push(Arc::new(s)),
            Err(e) => {
                let problem = format!(
                    "{}: {}",
                    file.display(),
                    format!("{e:#}").replace('\n', " ")
                );
                writeln!(out, "not serving {problem}")?;
                problems.push(problem);
            }
        }
    }
    if served.is_empty() {
        return Err(config_failure(format!(
            "no connection can be served: {}",
            problems.join(" | ")
        )));
    }
    Ok(served)
}

/// The `*.toml` files of `dir`, in name order; at least one.
fn connection_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let files = super::connection_files(dir)?;
    if files.is_empty() {
        return Err(config_failure(format!(
            "{} holds no connection file (*.toml); give every worker the deployment's connection files",
            dir.display()
        )));
    }
    Ok(files)
}

/// One connection file, prepared: its job and database, its interval, its
/// lease and its rate budget shared through the database.
async fn serve_one(
    file: &Path,
    default_every: Duration,
    env: &dyn Environment,
    stop: &Arc<StopSignal>,
) -> Result<Served> {
    let config = load_config(file)?;
    let location = StoreLocation::of(&config.database, env)?;
    let StoreLocation::Postgres(_) = &location else {
        return Err(config_failure(format!(
            "workers share their work through PostgreSQL, and this file names the SQLite file {}; set database = \"postgresql://USER@HOST:PORT/DB\" (or run it with `sync`, `run` or `serve`)",
            location.describe()
        )));
    };
    let every = match &config.schedule.every {
        Some(text) => {
            parse_every(text).map_err(|e| config_failure(format!("[schedule] every: {e}")))?
        }
        None => default_every,
    };
    let flags = SyncFlags {
        stop: stop.clone(),
        progress: Some(Arc::new(LogLines::default())),
        ..Default::default()
    };
    let prepared = prepare_sync(file, env, &flags).await?;
    let pacing = StorePacing::new(
        location.open_unless_stopped(stop).await?,
        &prepared.job.connection,
    );
    let pacer = Arc::new(Pacer::shared(
        config.sync.requests_per_hour,
        Arc::new(pacing),
    ));
    Ok(Served::new(
        prepared.job,
        prepared.store,
        every,
        Duration::from_secs(config.sync.lease_seconds),
        pacer,
    ))
}
