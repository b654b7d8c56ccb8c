//! `serve`: the operator console over every connection configured in a
//! directory (one TOML file per connection), until SIGINT or SIGTERM.
//!
//! The console itself (pages, sessions, metrics) is `connector-console`;
//! `backend` gives it a `Backend` that reads each connection's database,
//! `keeper` keeps each connection in sync (`run --every`'s loop, woken by
//! "Sync now"); this module owns the listener and the sign-in token.

mod backend;
mod browse;
mod connect;
mod keeper;
mod stores;

use crate::commands::schedule::parse_every;
use crate::connection::{connection_name, prepare, ComponentRef};
use crate::database::StoreLocation;
use crate::failure::config_failure;
use anyhow::{Context as _, Result};
use backend::StoredConnections;
use connector_console::auth::SignInToken;
use connector_console::tls::{self, TlsListener};
use connector_console::Console;
use connector_sandbox::config::Config;
use connector_sandbox::secrets::Environment;
use connector_sandbox::stop::StopSignal;
use keeper::{Keeper, Keepers, Stored};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What `serve` was asked to do: the command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeOptions {
    /// Directory of connection files (one TOML file per connection).
    #[arg(long)]
    pub config_dir: PathBuf,
    /// Address to listen on; any other than loopback needs `--tls-cert` and `--tls-key`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Environment variable holding the sign-in token (default: a random token).
    #[arg(long)]
    pub token_env: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with `--tls-key`).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key, readable by its owner only.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Time between syncs of a connection whose file sets no `[schedule] every`.
    #[arg(long, default_value = "6h", value_parser = parse_every)]
    pub every: Duration,
}

/// Serves the console until `stop` is triggered.
pub async fn serve(
    options: &ServeOptions,
    env: &dyn Environment,
    stop: Arc<StopSignal>,
    out: &mut dyn Write,
) -> Result<()> {
    let tls = tls_config(options)?;
    let token = sign_in_token(options.token_env.as_deref(), env)?;
    let connections = load_connections(&options.config_dir, options.every, env).await?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    writeln!(out, "listening on {scheme}://{addr}")?;
    writeln!(
        out,
        "sign in: {scheme}://{addr}/signin?token={}",
        token.expose()
    )?;
    out.flush()?;
    let (start, started) = tokio::sync::mpsc::unbounded_channel();
    let keepers = Arc::new(Keepers::new(start));
    for c in &connections {
        if let Some(keeper) = keeper_of(c) {
            keepers.add(keeper);
        }
    }
    let backend = Arc::new(StoredConnections {
        connections: std::sync::RwLock::new(connections),
        keepers: keepers.clone(),
        offered: offered_forms().await?,
        config_dir: options.config_dir.clone(),
        every: options.every,
        stores: Default::default(),
    });
    let console_stop = stop.clone();
    let shutdown = async move { console_stop.triggered().await };
    let console = Console::new(backend, token, tls.is_some());
    let console = async move {
        match tls {
            Some(config) => {
                console
                    .serve(TlsListener::new(listener, config)?, shutdown)
                    .await
            }
            None => console.serve(listener, shutdown).await,
        }
    };
    let keeping = keep_all(started, env, &stop, &keepers);
    let (served, _) = tokio::join!(console, keeping);
    served.context("the console stopped")?;
    Ok(())
}

/// Runs every schedule `started` hands over, until `stop`; then stops
/// them all and waits for their syncs to put their pages away.
async fn keep_all(
    mut started: tokio::sync::mpsc::UnboundedReceiver<Arc<Keeper>>,
    env: &dyn Environment,
    stop: &StopSignal,
    keepers: &Keepers,
) {
    use futures_util::stream::{FuturesUnordered, StreamExt as _};
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            Some(keeper) = started.recv() => {
                running.push(async move { keeper.keep(env).await });
            }
            Some(()) = running.next(), if !running.is_empty() => {}
            _ = stop.triggered() => break,
        }
    }
    keepers.stop_all();
    while running.next().await.is_some() {}
}

/// The schedule of `c`, when it can run.
fn keeper_of(c: &Configured) -> Option<Arc<Keeper>> {
    let stored = Stored {
        connection: c.name.clone(),
        database: c.database.clone()?,
    };
    Some(Arc::new(Keeper::new(
        c.id.clone(),
        c.file.clone(),
        stored,
        c.every?,
    )))
}

/// The Connect forms of the bundled connectors, from their `info`.
async fn offered_forms() -> Result<Vec<connector_console::ConnectorForm>> {
    let mut forms = Vec::new();
    for (name, _) in crate::bundled::BUNDLED {
        let prepared = prepare(ComponentRef::Bundled(name)).await?;
        forms.push(connect::form_of(name, &prepared.info));
    }
    Ok(forms)
}

/// HTTPS's configuration when `--tls-cert` and `--tls-key` are given;
/// refused without them for an address other than loopback, where the
/// sign-in link and the session cookie would cross the network in clear.
fn tls_config(options: &ServeOptions) -> Result<Option<Arc<tls::ServerConfig>>> {
    let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) else {
        if !options.listen.ip().is_loopback() {
            return Err(config_failure(format!(
                "--listen {} is not a loopback address: serving the console to the network needs HTTPS; add --tls-cert CERT.pem --tls-key KEY.pem, or listen on 127.0.0.1",
                options.listen
            )));
        }
        return Ok(None);
    };
    connector_sandbox::secrets::check_owner_only("console's TLS key", key)
        .map_err(config_failure)?;
    tls::server_config(cert, key)
        .map(Some)
        .map_err(config_failure)
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
    /// The configuration file.
    file: PathBuf,
    /// Time between its syncs (none when it cannot run).
    every: Option<Duration>,
    /// Its component's streams (none when it cannot run).
    streams: Vec<connector_sandbox::runtime::StreamInfo>,
    name: String,
    connector: String,
    endpoint: String,
    database: Option<StoreLocation>,
    problem: Option<String>,
}

/// Every `*.toml` in `dir`, in name order: loaded, its component described.
/// A file that does not load becomes a connection with its problem.
async fn load_connections(
    dir: &Path,
    every: Duration,
    env: &dyn Environment,
) -> Result<Vec<Configured>> {
    let files = crate::commands::connection_files(dir)?;
    let mut connections = Vec::with_capacity(files.len());
    for file in files {
        let id = file
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        connections.push(match configured(&file, id.clone(), every, env).await {
            Ok(c) => c,
            Err(e) => Configured {
                name: id.clone(),
                id,
                file: file.clone(),
                every: None,
                streams: Vec::new(),
                connector: String::new(),
                endpoint: String::new(),
                database: None,
                problem: Some(format!("{}: {e:#}", file.display())),
            },
        });
    }
    Ok(connections)
}

async fn configured(
    file: &Path,
    id: String,
    default_every: Duration,
    env: &dyn Environment,
) -> Result<Configured> {
    let config = Config::load(file)?;
    let every = match &config.schedule.every {
        Some(text) => {
            parse_every(text).map_err(|e| config_failure(format!("[schedule] every: {e}")))?
        }
        None => default_every,
    };
    let prepared = prepare(ComponentRef::of(&config)).await?;
    let origin = prepared.origin(&config)?;
    Ok(Configured {
        id,
        file: file.to_path_buf(),
        every: Some(every),
        streams: prepared.info.streams.clone(),
        name: connection_name(&config, &prepared.info, &origin),
        connector: prepared.info.name.clone(),
        endpoint: origin.to_string(),
        database: Some(StoreLocation::of(&config.database, env)?),
        problem: None,
    })
}
