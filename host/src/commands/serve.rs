//! `serve`: the operator console over every connection configured in a
//! directory (one TOML file per connection), until SIGINT or SIGTERM.
//!
//! The console itself (pages, sessions, metrics) is `connector-console`;
//! this module gives it a [`Backend`] that reads each connection's
//! database, and owns the listener and the sign-in token.

use crate::connection::{connection_name, prepare, ComponentRef};
use crate::failure::config_failure;
use anyhow::{Context as _, Result};
use connector_console::auth::SignInToken;
use connector_console::{
    Backend, ConnectionDetail, ConnectionView, Console, HealthState, HealthView, LastSync,
    PartitionRunView, RunView, StreamRunView, StreamView,
};
use connector_engine::store::{HealthState as StoredState, Store, StoredRun};
use connector_engine::sync::RunReport;
use connector_sandbox::config::Config;
use connector_sandbox::secrets::Environment;
use connector_sandbox::stop::StopSignal;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What `serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The directory of connection files.
    pub config_dir: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The environment variable holding the sign-in token (default: a random one).
    pub token_env: Option<String>,
}

/// Serves the console until `stop` is triggered.
pub async fn serve(
    options: &ServeOptions,
    env: &dyn Environment,
    stop: Arc<StopSignal>,
    out: &mut dyn Write,
) -> Result<()> {
    if !options.listen.ip().is_loopback() {
        return Err(config_failure(format!(
            "--listen {} is not a loopback address; the console serves only 127.0.0.1 or ::1 for now (it has no TLS yet); put a TLS-terminating proxy in front of a loopback address",
            options.listen
        )));
    }
    let token = sign_in_token(options.token_env.as_deref(), env)?;
    let connections = load_connections(&options.config_dir).await?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let addr = listener.local_addr()?;
    writeln!(out, "listening on http://{addr}")?;
    writeln!(
        out,
        "sign in: http://{addr}/signin?token={}",
        token.expose()
    )?;
    out.flush()?;
    let backend = Arc::new(StoredConnections { connections });
    Console::new(backend, token, false)
        .serve(listener, async move { stop.triggered().await })
        .await
        .context("the console stopped")?;
    Ok(())
}

/// The sign-in token: from `--token-env VAR`, or random.
fn sign_in_token(token_env: Option<&str>, env: &dyn Environment) -> Result<SignInToken> {
    let Some(var) = token_env else {
        return Ok(SignInToken::random());
    };
    let value = env.var(var).ok_or_else(|| {
        config_failure(format!(
            "--token-env names {var}, which is not set; export it, or leave --token-env out for a random token"
        ))
    })?;
    SignInToken::chosen(value).map_err(|e| config_failure(format!("{var}: {e}")))
}

/// One configured connection as `serve` found it at start.
#[derive(Debug, Clone)]
struct Configured {
    /// The file's stem: the connection's identifier in URLs.
    id: String,
    name: String,
    connector: String,
    endpoint: String,
    database: Option<PathBuf>,
    problem: Option<String>,
}

/// Every `*.toml` in `dir`, in name order: loaded, its component described.
/// A file that does not load becomes a connection with its problem.
async fn load_connections(dir: &Path) -> Result<Vec<Configured>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        config_failure(format!(
            "cannot read the configuration directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut connections = Vec::with_capacity(files.len());
    for file in files {
        let id = file
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        connections.push(match configured(&file, id.clone()).await {
            Ok(c) => c,
            Err(e) => Configured {
                name: id.clone(),
                id,
                connector: String::new(),
                endpoint: String::new(),
                database: None,
                problem: Some(format!("{}: {e:#}", file.display())),
            },
        });
    }
    Ok(connections)
}

async fn configured(file: &Path, id: String) -> Result<Configured> {
    let config = Config::load(file)?;
    let prepared = prepare(ComponentRef::of(&config)).await?;
    let origin = prepared.origin(&config)?;
    Ok(Configured {
        id,
        name: connection_name(&config, &prepared.info, &origin),
        connector: prepared.info.name.clone(),
        endpoint: origin.to_string(),
        database: Some(config.database),
        problem: None,
    })
}

/// The console's backend: the connections found at start, read from their
/// databases at each request.
struct StoredConnections {
    connections: Vec<Configured>,
}

impl Backend for StoredConnections {
    fn connections(&self) -> Result<Vec<ConnectionView>> {
        self.connections.iter().map(view).collect()
    }

    fn connection(&self, id: &str) -> Result<Option<ConnectionDetail>> {
        let Some(c) = self.connections.iter().find(|c| c.id == id) else {
            return Ok(None);
        };
        let runs = match open_store(c)? {
            Some(store) => store.recent_runs(&c.name, RUNS_SHOWN)?,
            None => Vec::new(),
        };
        Ok(Some(ConnectionDetail {
            connection: view(c)?,
            runs: runs.iter().map(run_view).collect(),
        }))
    }
}

/// Runs a connection's page lists.
const RUNS_SHOWN: u32 = 10;

/// The connection's database, when it exists (not before its first sync).
fn open_store(c: &Configured) -> Result<Option<Store>> {
    let Some(database) = c.database.as_deref().filter(|d| d.exists()) else {
        return Ok(None);
    };
    Store::open(database)
        .map(Some)
        .with_context(|| format!("cannot open the database {}", database.display()))
}

/// A stored run with its completeness report, per stream and partition.
fn run_view(run: &StoredRun) -> RunView {
    let report: Option<RunReport> = run
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    RunView {
        started_at: run.started_at.clone(),
        finished_at: run.finished_at.clone(),
        status: run.status.clone(),
        streams: report
            .into_iter()
            .flat_map(|r| r.streams)
            .map(|s| StreamRunView {
                stream: s.stream,
                mode: s.mode,
                verdict: s.verdict,
                partitions: s
                    .partitions
                    .into_iter()
                    .map(|p| PartitionRunView {
                        index: p.index,
                        records: p.records,
                        pages: p.pages,
                        retries: p.retries.into_iter().map(|r| r.reason).collect(),
                        hidden_by_acl: p.hidden_by_acl,
                        complete: p.complete,
                        error: p.error,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// What the database says of `c` (nothing before its first sync).
fn view(c: &Configured) -> Result<ConnectionView> {
    let mut view = ConnectionView {
        id: c.id.clone(),
        name: c.name.clone(),
        connector: c.connector.clone(),
        endpoint: c.endpoint.clone(),
        health: None,
        last_sync: None,
        streams: Vec::new(),
        problem: c.problem.clone(),
    };
    let Some(store) = open_store(c)? else {
        return Ok(view);
    };
    view.health = store.health(&c.name)?.map(|(h, since)| HealthView {
        state: match h.state {
            StoredState::Connected => HealthState::Connected,
            StoredState::TemporaryFailure => HealthState::TemporaryFailure,
            StoredState::Failed => HealthState::Failed,
        },
        message: h.message,
        since,
    });
    let last = store
        .recent_runs(&c.name, 5)?
        .into_iter()
        .find(|run| run.finished_at.is_some() && run.report.is_some());
    let report: Option<RunReport> = last
        .as_ref()
        .and_then(|run| serde_json::from_str(run.report.as_deref()?).ok());
    if let (Some(run), Some(report)) = (&last, &report) {
        let finished_at = run.finished_at.clone().unwrap_or_default();
        view.last_sync = Some(LastSync {
            finished_unix: humantime::parse_rfc3339(&finished_at)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64),
            finished_at,
            seconds: report.seconds,
            requests: report.requests,
        });
    }
    view.streams = store
        .counts(&c.name)?
        .into_iter()
        .map(|(stream, live, _)| stream_view(stream, live, report.as_ref()))
        .collect();
    Ok(view)
}

/// A stream's records and what its last sync met (retries by reason, rows
/// hidden by ACLs).
fn stream_view(stream: String, records: u64, report: Option<&RunReport>) -> StreamView {
    let partitions = report
        .into_iter()
        .flat_map(|r| &r.streams)
        .filter(|s| s.stream == stream)
        .flat_map(|s| &s.partitions);
    let mut retries: Vec<(String, u64)> = Vec::new();
    let mut hidden_by_acl = 0;
    for p in partitions {
        hidden_by_acl += p.hidden_by_acl.unwrap_or(0);
        for r in &p.retries {
            match retries.iter_mut().find(|(reason, _)| *reason == r.reason) {
                Some((_, n)) => *n += 1,
                None => retries.push((r.reason.clone(), 1)),
            }
        }
    }
    StreamView {
        stream,
        records,
        retries,
        hidden_by_acl,
    }
}
