//! The command line: `info`, `component`, `check`, `sync`, `run`, `serve`,
//! `worker`, `status`, `export`, `conformance`, `demo`.
//!
//! [`run`] is the whole CLI as a function of its arguments, an environment
//! (for secrets) and an output stream, so tests drive exactly what users run
//! without touching process-global state. Each command lives in
//! [`crate::commands`].

use crate::commands::{
    check, component, conformance, export, info, schedule, serve, status, worker,
};
use crate::connection::ComponentRef;
use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use connector_engine::export::ExportOptions;
use connector_sandbox::secrets::Environment;
use connector_sandbox::stop::StopSignal;
use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::commands::sync::{sync, write_report, SyncFlags};
pub use crate::failure::{Failure, EXIT_TEMPORARY_FAILURE};

/// Reference host for exposure:connector WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "connector-host", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Describe a connector component: settings, auth methods, streams.
    Info {
        /// A bundled connector to describe: `servicenow` (the default) or `netbox`.
        #[arg(long, conflicts_with = "plugin")]
        connector: Option<String>,
        /// A component file to describe instead.
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Print the description as JSON.
        #[arg(long, conflicts_with = "wit")]
        json: bool,
        /// Print the WIT world the component targets (what it imports and
        /// exports), with every package it names, instead of the description.
        #[arg(long)]
        wit: bool,
    },
    /// Write a bundled connector component to a file: the artifact any
    /// component runtime can run.
    Component {
        /// The bundled connector: `servicenow` or `netbox`.
        #[arg(long, default_value = crate::bundled::DEFAULT_CONNECTOR)]
        connector: String,
        /// Where to write it (replaced if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Test the connection: read one row of every stream and report.
    Check {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Read every stream into the database (incrementally where a complete
    /// read came before, unless --full).
    Sync {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Read everything, and mark records no longer returned as deleted.
        #[arg(long)]
        full: bool,
        /// Print the run report as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Read only this stream (repeatable; default: every stream).
        #[arg(long = "stream", value_name = "NAME")]
        streams: Vec<String>,
    },
    /// Sync periodically until interrupted (SIGINT/SIGTERM finish the page in
    /// flight, then stop).
    Run {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Time between syncs, e.g. `6h`, `30m`.
        #[arg(long, value_parser = schedule::parse_every)]
        every: std::time::Duration,
        /// Stop after this many syncs (default: run until interrupted).
        #[arg(long)]
        max_runs: Option<u32>,
    },
    /// Serve the operator console over every connection configured in a
    /// directory, until SIGINT or SIGTERM. Prints `listening on URL`, then
    /// the sign-in link.
    Serve(serve::ServeOptions),
    /// Be one of a deployment's workers: share the syncs of every
    /// connection in a directory with the other workers, through the
    /// PostgreSQL database the files name, until SIGINT or SIGTERM.
    Worker(worker::WorkerFlags),
    /// Show the connection's health and its last runs.
    Status {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Runs to list.
        #[arg(long, default_value_t = 5)]
        runs: u32,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the stored records of a stream to stdout as JSON lines.
    Export {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Stream to export, e.g. `devices`.
        #[arg(long)]
        stream: String,
        /// Embed referencing records (devices carry `networkAdapters`).
        #[arg(long)]
        nested: bool,
        /// Include records marked deleted, with `deletedAt` and `deletionReason`.
        #[arg(long)]
        include_deleted: bool,
    },
    /// Judge a connector component against the contract, on the configured
    /// source (reads only): exit 0 when no check fails.
    Conformance {
        /// Configuration file (TOML), as for `check` and `sync`.
        #[arg(long)]
        config: PathBuf,
        /// Print `{"checks": [{"name", "status", "detail"}], "passed"}`.
        #[arg(long)]
        json: bool,
    },
    /// Start the bundled emulator, sync from it and print a summary.
    #[cfg(feature = "demo")]
    Demo {
        /// Devices the emulator generates.
        #[arg(long, default_value_t = 2000)]
        devices: usize,
        /// Keep the demo database in this directory (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs the CLI. Secrets are looked up in `env`; results go to `out`.
///
/// As a library call it installs no signal handler: `stop` ends a `sync` or
/// `run --every` (the binary's [`main`] triggers it on SIGINT and SIGTERM).
pub fn run(cli: Cli, env: &dyn Environment, out: &mut dyn Write) -> Result<()> {
    run_until(cli, env, out, Arc::new(StopSignal::default()), false)
}

/// [`run`], stopped by `stop`; with `signals`, SIGINT and SIGTERM trigger it.
fn run_until(
    cli: Cli,
    env: &dyn Environment,
    out: &mut dyn Write,
    stop: Arc<StopSignal>,
    signals: bool,
) -> Result<()> {
    // The store's threads first, at this thread's priority; the runtime's
    // threads a step below them (see `connector_engine::priority`).
    connector_engine::priority::start_store_threads();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(connector_engine::priority::lower_this_thread)
        .build()
        .context("cannot start the async runtime")?;
    // Only the commands that stop cleanly take over SIGINT and SIGTERM; the
    // others keep the default action, which ends the process at once.
    let stops_cleanly = matches!(
        cli.command,
        Command::Sync { .. } | Command::Run { .. } | Command::Serve(_) | Command::Worker(_)
    );
    let done = runtime.block_on(async {
        if signals && stops_cleanly {
            connector_sandbox::stop::on_signals(stop.clone());
        }
        execute(cli.command, env, out, stop).await
    });
    runtime.shutdown_timeout(LEFT_BEHIND_GRACE);
    done
}

/// How long a command that has ended waits for blocking work nobody awaits
/// any more before the process exits. Such work is only a database being
/// opened for a sync or a console page that stopped meanwhile: dropping
/// the runtime waited for it, so `serve` stopped by SIGTERM while a
/// PostgreSQL server never answered exited only when that open gave up
/// (twice its `connect_timeout`). Abandoning it loses nothing: the store's
/// writes run on threads of their own and are awaited, and an open
/// interrupted mid-migration is rolled back, by SQLite's journal or by the
/// server.
const LEFT_BEHIND_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs one command on the async runtime.
async fn execute(
    command: Command,
    env: &dyn Environment,
    out: &mut dyn Write,
    stop: Arc<StopSignal>,
) -> Result<()> {
    match command {
        Command::Info {
            connector,
            plugin,
            wit: true,
            ..
        } => info::wit(
            ComponentRef::choose(connector.as_deref(), plugin.as_deref()),
            out,
        ),
        Command::Info {
            connector,
            plugin,
            json,
            wit: false,
        } => info::info(connector.as_deref(), plugin.as_deref(), json, out).await,
        Command::Check { config } => check::check(&config, env, out).await,
        Command::Sync {
            config,
            json,
            full,
            streams,
        } => {
            let flags = SyncFlags {
                json,
                full,
                streams,
                stop,
                progress: None,
            };
            sync(&config, env, flags, out).await.map(|_| ())
        }
        Command::Export {
            config,
            stream,
            nested,
            include_deleted,
        } => {
            let options = ExportOptions {
                nested,
                include_deleted,
            };
            export::export(&config, env, &stream, options, out).await
        }
        Command::Run {
            config,
            every,
            max_runs,
        } => schedule::run_every(&config, env, every, max_runs, &stop, out).await,
        Command::Status { config, runs, json } => {
            status::status(&config, env, runs, json, out).await
        }
        Command::Serve(options) => serve::serve(&options, env, stop, out).await,
        Command::Worker(flags) => worker::worker(&flags, env, stop, out).await,
        Command::Component {
            connector,
            out: file,
        } => component::write(&connector, &file, out),
        Command::Conformance { config, json } => conformance::run(&config, env, json, out).await,
        #[cfg(feature = "demo")]
        Command::Demo { devices, dir } => crate::demo::run(devices, dir.as_deref(), out).await,
    }
}

/// The whole `connector-host` process: parses the process's arguments, logs
/// to stderr (level from `CONNECTOR_HOST_LOG`, default `warn`; colours only
/// on a terminal, so that a log file or the journal gets plain text), runs the
/// command with the process environment and maps errors to exit codes, the
/// error printed as one line on stderr.
pub fn main() -> std::process::ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONNECTOR_HOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let stop = Arc::new(StopSignal::default());
    match run_until(
        cli,
        &connector_sandbox::secrets::ProcessEnvironment,
        &mut out,
        stop,
        true,
    ) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let code = e.downcast_ref::<Failure>().map_or(1, |f| f.exit_code);
            // One paragraph: the cause chain joined on one line.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::from(code)
        }
    }
}
