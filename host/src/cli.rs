//! The command line: `info`, `check`, `sync`, `export`, `demo`.
//!
//! [`run`] is the whole CLI as a function of its arguments, an environment
//! (for secrets) and an output stream, so tests drive exactly what users run
//! without touching process-global state.

use crate::config::{Config, ConfigError};
use crate::credentials::{ApiKeyFormat, Credential, DeclaredAuth, DeclaredOAuth};
use crate::egress::{EgressCounters, EgressLimits, EgressPolicy};
use crate::export::ExportOptions;
use crate::origin::Origin;
use crate::pacing::Pacer;
use crate::runtime::{
    read_info, AuthMethod, ConnectorInfo, InstanceLimits, LoadedComponent, Oauth2Grant, Runtime,
    BUNDLED_COMPONENT,
};
use crate::secrets::Environment;
use crate::sender::Sender;
use crate::stop::StopSignal;
use crate::store::{Health, HealthState, Store};
use crate::sync::{RunReport, SyncJob, SyncOptions};
use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        /// Component to describe (default: the bundled ServiceNow connector).
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Print the description as JSON.
        #[arg(long)]
        json: bool,
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
    },
    /// Sync periodically until interrupted (SIGINT/SIGTERM finish the page in
    /// flight, then stop).
    Run {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Time between syncs, e.g. `6h`, `30m`.
        #[arg(long, value_parser = parse_every)]
        every: std::time::Duration,
        /// Stop after this many syncs (default: run until interrupted).
        #[arg(long)]
        max_runs: Option<u32>,
    },
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
    Demo {
        /// Devices the emulator generates.
        #[arg(long, default_value_t = 2000)]
        devices: usize,
        /// Keep the demo database in this directory (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Exit status of a sync that stopped for a reason that passes by itself
/// (rate limits, unavailability, a stop signal): `EX_TEMPFAIL` from sysexits.h.
pub const EXIT_TEMPORARY_FAILURE: u8 = 75;

/// A failure with the exit status it deserves.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// 2 for configuration problems, 75 for an incomplete sync that the next
    /// run may complete by itself, 1 for everything else.
    pub exit_code: u8,
    /// One paragraph for the operator.
    pub message: String,
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure {
            exit_code: 2,
            message: e.to_string(),
        }
    }
}

pub(crate) fn config_failure(message: impl Into<String>) -> anyhow::Error {
    Failure {
        exit_code: 2,
        message: message.into(),
    }
    .into()
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Only the commands that stop cleanly take over SIGINT and SIGTERM; the
    // others keep the default action, which ends the process at once.
    let stops_cleanly = matches!(cli.command, Command::Sync { .. } | Command::Run { .. });
    runtime.block_on(async {
        if signals && stops_cleanly {
            crate::stop::on_signals(stop.clone());
        }
        match cli.command {
            Command::Info { plugin, json } => info(plugin.as_deref(), json, out).await,
            Command::Check { config } => check(&config, env, out).await,
            Command::Sync { config, json, full } => {
                sync(&config, env, SyncFlags { json, full, stop }, out)
                    .await
                    .map(|_| ())
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
                export(&config, &stream, options, out).await
            }
            Command::Run {
                config,
                every,
                max_runs,
            } => run_every(&config, env, every, max_runs, &stop, out).await,
            Command::Status { config, runs, json } => status(&config, runs, json, out).await,
            Command::Conformance { config, json } => conformance(&config, env, json, out).await,
            Command::Demo { devices, dir } => crate::demo::run(devices, dir.as_deref(), out).await,
        }
    })
}

/// A component loaded with its `info`.
pub struct Prepared {
    /// The runtime.
    pub runtime: &'static Runtime,
    /// The component.
    pub component: LoadedComponent,
    /// Its description.
    pub info: ConnectorInfo,
}

impl Prepared {
    /// The origin the component may contact: the configured value of the
    /// one setting it declares as its endpoint (or that setting's default),
    /// validated.
    pub fn origin(&self, config: &Config) -> Result<Origin> {
        let endpoints: Vec<_> = self.info.settings.iter().filter(|s| s.endpoint).collect();
        let [endpoint] = endpoints.as_slice() else {
            return Err(config_failure(format!(
                "the component `{}` declares {} endpoint settings; a connector must mark exactly one setting as its endpoint (the origin it may contact), so this host cannot tell where it may connect",
                self.info.name,
                endpoints.len()
            )));
        };
        let value = config
            .settings
            .iter()
            .rev()
            .find(|(name, _)| *name == endpoint.name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
            .or(endpoint.default_value.as_deref())
            .ok_or_else(|| {
                config_failure(format!(
                    "[settings] has no `{}`, the connector's endpoint: {} Set it, e.g. {} = \"source.example.com\"",
                    endpoint.name, endpoint.description, endpoint.name
                ))
            })?;
        Origin::parse(&endpoint.name, value).map_err(config_failure)
    }
}

/// Loads the configured (or bundled) component and reads its `info`.
pub async fn prepare(plugin: Option<&Path>) -> Result<Prepared> {
    let runtime = Runtime::shared()?;
    let bytes = match plugin {
        Some(path) => std::fs::read(path).map_err(|e| {
            config_failure(format!("cannot read the plugin {}: {e}", path.display()))
        })?,
        None => BUNDLED_COMPONENT.to_vec(),
    };
    let component = runtime.load(&bytes).map_err(|e| {
        config_failure(format!(
            "cannot load the plugin {}: {e:#}",
            plugin.map_or("(bundled)".into(), |p| p.display().to_string())
        ))
    })?;
    let info = read_info(runtime, &component).await?;
    Ok(Prepared {
        runtime,
        component,
        info,
    })
}

pub(crate) fn load_config(path: &Path) -> Result<Config> {
    Config::load(path).map_err(|e| Failure::from(e).into())
}

/// What the component declared about authentication, in the host's terms.
pub fn declared_auth(info: &ConnectorInfo) -> DeclaredAuth {
    let mut declared = DeclaredAuth::default();
    for m in &info.auth_methods {
        match m {
            AuthMethod::Basic => declared.basic = true,
            AuthMethod::Oauth2(o) => {
                let grants = o
                    .grants
                    .iter()
                    .map(|g| match g {
                        Oauth2Grant::ClientCredentials => "client-credentials",
                        Oauth2Grant::Password => "password",
                        Oauth2Grant::RefreshToken => "refresh-token",
                    })
                    .map(str::to_string)
                    .collect();
                declared.oauth = Some(DeclaredOAuth {
                    token_path: o.token_path.clone(),
                    grants,
                    client_credentials_help: o.client_credentials_help.clone(),
                });
            }
            AuthMethod::ApiKey(k) => declared.api_keys.push(ApiKeyFormat {
                header: k.header_name.clone(),
                value_prefix: k.value_prefix.clone().unwrap_or_default(),
                key_prefix: k.key_prefix.clone(),
            }),
        }
    }
    declared
}

/// Builds the credential and obtains what it needs before the first
/// request (an OAuth token), so misconfigurations stop the run at once.
pub(crate) async fn credential(
    config: &Config,
    info: &ConnectorInfo,
    origin: &Origin,
    sender: &Arc<Sender>,
    env: &dyn Environment,
) -> Result<Credential> {
    let credential = Credential::from_config(
        config.auth.as_ref(),
        &declared_auth(info),
        origin,
        sender.clone(),
        config.limits.request_timeout(),
        env,
    )
    .map_err(config_failure)?;
    credential
        .prepare()
        .await
        .map_err(|e| anyhow!("authentication failed: {e}"))?;
    Ok(credential)
}

/// How the host reaches the endpoint (CA bundle, proxy).
pub(crate) fn sender(config: &Config, origin: &Origin) -> Result<Arc<Sender>> {
    let proxy = config
        .network
        .proxy_authority()
        .map_err(|e| config_failure(e.to_string()))?;
    let sender = Sender::new(origin, config.network.tls_ca_file.as_deref(), proxy)
        .map_err(config_failure)?;
    Ok(Arc::new(sender))
}

/// Name of a connection in the database: `[name]`, else `CONNECTOR@HOST:PORT`.
pub fn connection_name(config: &Config, info: &ConnectorInfo, origin: &Origin) -> String {
    config
        .name
        .clone()
        .unwrap_or_else(|| format!("{}@{}", info.name, origin.authority()))
}

pub(crate) fn limits(config: &Config) -> InstanceLimits {
    InstanceLimits {
        memory_bytes: (config.limits.memory_mib.max(16) << 20) as usize,
        call_timeout: config.limits.call_timeout(),
        cpu_per_call: Duration::from_secs(config.limits.cpu_seconds_per_call.max(1)),
    }
}

async fn info(plugin: Option<&Path>, json: bool, out: &mut dyn Write) -> Result<()> {
    let p = prepare(plugin).await?;
    let i = &p.info;
    if json {
        writeln!(out, "{}", info_json(i))?;
        return Ok(());
    }
    writeln!(out, "{} {}", i.name, i.version)?;
    writeln!(out, "{}", i.description)?;
    writeln!(out, "\nSettings:")?;
    for s in &i.settings {
        let default = s
            .default_value
            .as_deref()
            .map(|d| format!(" (default: {d})"))
            .unwrap_or_default();
        let required = if s.required { " [required]" } else { "" };
        let required = if s.endpoint {
            format!("{required} [endpoint: the one origin it may contact]")
        } else {
            required.to_string()
        };
        writeln!(
            out,
            "  {}{required}{default}\n      {}",
            s.name, s.description
        )?;
    }
    writeln!(out, "\nAuthentication methods:")?;
    for m in &i.auth_methods {
        writeln!(out, "  {}", auth_method_text(m))?;
    }
    writeln!(out, "\nStreams:")?;
    for s in &i.streams {
        let fields = schema_fields(&s.json_schema);
        writeln!(out, "  {} (key {}): {}", s.name, s.key_field, s.description)?;
        writeln!(out, "      fields: {}", fields.join(", "))?;
        for r in &s.references {
            match &r.embed_as {
                Some(name) => writeln!(
                    out,
                    "      {} → {} (embedded there as `{name}`)",
                    r.field, r.target_stream
                )?,
                None => writeln!(out, "      {} → {}", r.field, r.target_stream)?,
            }
        }
    }
    Ok(())
}

fn auth_method_text(m: &AuthMethod) -> String {
    match m {
        AuthMethod::Basic => "basic".into(),
        AuthMethod::Oauth2(o) => format!(
            "oauth2 (token endpoint {}; grants: {})",
            o.token_path,
            o.grants
                .iter()
                .map(|g| format!("{g:?}").to_lowercase())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        AuthMethod::ApiKey(k) => {
            let format = format!(
                "{}: {}<key>",
                k.header_name,
                k.value_prefix.as_deref().unwrap_or("")
            );
            match &k.key_prefix {
                Some(prefix) => format!("api-key ({format}, for keys starting with {prefix})"),
                None => format!("api-key ({format})"),
            }
        }
    }
}

fn schema_fields(schema: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(schema)
        .ok()
        .and_then(|v| {
            v.get("properties")
                .and_then(|p| p.as_object())
                .map(|p| p.keys().cloned().collect())
        })
        .unwrap_or_default()
}

fn info_json(i: &ConnectorInfo) -> serde_json::Value {
    serde_json::json!({
        "name": i.name,
        "version": i.version,
        "description": i.description,
        "settings": i.settings.iter().map(|s| serde_json::json!({
            "name": s.name, "description": s.description, "required": s.required, "default": s.default_value, "endpoint": s.endpoint,
        })).collect::<Vec<_>>(),
        "authMethods": i.auth_methods.iter().map(auth_method_text).collect::<Vec<_>>(),
        "streams": i.streams.iter().map(|s| serde_json::json!({
            "name": s.name,
            "description": s.description,
            "keyField": s.key_field,
            "supportsIncremental": s.supports_incremental,
            "schema": serde_json::from_str::<serde_json::Value>(&s.json_schema).unwrap_or(serde_json::Value::Null),
            "references": s.references.iter().map(|r| serde_json::json!({
                "field": r.field, "targetStream": r.target_stream, "embedAs": r.embed_as,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

async fn check(path: &Path, env: &dyn Environment, out: &mut dyn Write) -> Result<()> {
    let config = load_config(path)?;
    let p = prepare(config.plugin.as_deref()).await?;
    let origin = p.origin(&config)?;
    let sender = sender(&config, &origin)?;
    let credential = credential(&config, &p.info, &origin, &sender, env).await?;
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
        .instantiate(&p.component, egress, &limits(&config))
        .await?;
    let report = instance
        .check(&config.settings)
        .await
        .map_err(|e| anyhow!("the connection test failed: {e}"))?;
    writeln!(out, "Connection to {origin} ({}):", p.info.name)?;
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

/// `conformance`: runs every check and prints the report.
async fn conformance(
    path: &Path,
    env: &dyn Environment,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    use crate::conformance::{harness::Harness, Report};
    let config = load_config(path)?;
    let p = prepare(config.plugin.as_deref()).await?;
    let report: Report = match p.origin(&config) {
        Err(e) => {
            crate::conformance::info_only(&p.info, &format!("the source cannot be reached: {e}"))
        }
        Ok(origin) => {
            let sender = sender(&config, &origin)?;
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
            crate::conformance::run(&harness).await
        }
    };
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::conformance::write_text(&report, out)?;
    }
    if report.passed {
        return Ok(());
    }
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.status == crate::conformance::Status::Fail)
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

/// Options of the `sync` command.
#[derive(Debug, Clone, Default)]
pub struct SyncFlags {
    /// Print the report as JSON.
    pub json: bool,
    /// Force full reads.
    pub full: bool,
    /// Triggered to stop after the pages in flight (a signal arrived).
    pub stop: Arc<StopSignal>,
}

fn parse_every(text: &str) -> std::result::Result<std::time::Duration, String> {
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
fn next_sync_delay<T>(
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
async fn run_every(
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

/// Runs `sync` for a configuration; returns the report.
pub async fn sync(
    path: &Path,
    env: &dyn Environment,
    flags: SyncFlags,
    out: &mut dyn Write,
) -> Result<RunReport> {
    let config = load_config(path)?;
    let p = prepare(config.plugin.as_deref()).await?;
    let origin = p.origin(&config)?;
    let sender = sender(&config, &origin)?;
    let mut store = Store::open(&config.database)
        .with_context(|| format!("cannot open the database {}", config.database.display()))?;
    let connection = connection_name(&config, &p.info, &origin);
    let credential = match credential(&config, &p.info, &origin, &sender, env).await {
        Ok(c) => c,
        Err(e) => {
            let health = Health {
                state: HealthState::Failed,
                error_kind: Some("authentication".into()),
                message: Some(format!("{e:#}")),
            };
            let _ = store.set_health(&connection, &health);
            return Err(e);
        }
    };
    let job = SyncJob {
        runtime: p.runtime,
        component: p.component.clone(),
        info: p.info.clone(),
        settings: config.settings.clone(),
        origin,
        sender,
        credential,
        limits: limits(&config),
        egress_limits: EgressLimits::from(&config.limits),
        connection,
        progress: if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Arc::new(crate::progress::Bars::default())
        } else {
            Arc::new(crate::progress::LogLines::default())
        },
        options: SyncOptions {
            page_size: config.sync.page_size,
            partitions: config.sync.partitions,
            concurrency: config.sync.concurrency,
            max_attempts: config.sync.max_attempts,
            retry_base: Duration::from_millis(config.sync.retry_base_ms),
            retry_max: Duration::from_millis(config.sync.retry_max_ms),
            max_retry_after: Duration::from_secs(config.sync.max_retry_after_seconds),
            force_full: flags.full,
            stop: flags.stop.clone(),
            requests_per_hour: config.sync.requests_per_hour,
        },
    };
    let report = crate::sync::run(&job, Arc::new(Mutex::new(store))).await?;
    if flags.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write_report(&report, &config.database, out)?;
    }
    if !report.complete() {
        let failed: Vec<String> = report
            .streams
            .iter()
            .filter(|s| !s.complete())
            .map(|s| {
                format!(
                    "{}: {}",
                    s.stream,
                    s.verdict.trim_start_matches("incomplete: ")
                )
            })
            .collect();
        // Schedulers can tell "try again later" (EX_TEMPFAIL) from "needs a fix".
        let exit_code = match report.health().state {
            crate::store::HealthState::TemporaryFailure => EXIT_TEMPORARY_FAILURE,
            _ => 1,
        };
        return Err(Failure {
            exit_code,
            message: format!(
                "the sync did not complete; committed pages are kept and the next sync resumes after them. {}",
                failed.join(" | ")
            ),
        }
        .into());
    }
    Ok(report)
}

/// Prints a run report as a table.
pub fn write_report(
    report: &RunReport,
    database: &Path,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Synced {} into {} in {:.1} s ({} requests, {:.1} MB received)",
        report.connection,
        database.display(),
        report.seconds,
        report.requests,
        report.bytes as f64 / 1e6
    )?;
    writeln!(
        out,
        "{:<24} {:>11} {:>9} {:>13} {:>7} {:>8} {:>8}  verdict",
        "stream", "read", "records", "server total", "pages", "retries", "deleted"
    )?;
    for s in &report.streams {
        writeln!(
            out,
            "{:<24} {:>11} {:>9} {:>13} {:>7} {:>8} {:>8}  {}{}",
            s.stream,
            s.mode,
            s.records(),
            s.server_total().map_or("-".into(), |t| t.to_string()),
            s.pages(),
            s.retries(),
            s.deleted,
            s.verdict,
            if s.resumed { " (resumed)" } else { "" }
        )?;
    }
    for s in report.streams.iter().filter(|s| s.deleted > 0) {
        writeln!(
            out,
            "{}: {} deleted at the source, {} aged out of the retention window, {} no longer returned (hidden by an ACL, or deleted without an audit the user can read)",
            s.stream, s.deleted_at_source, s.aged_out, s.not_returned
        )?;
    }
    let mut warnings: Vec<&str> = Vec::new();
    for w in report
        .streams
        .iter()
        .flat_map(|s| &s.partitions)
        .flat_map(|p| &p.warnings)
    {
        if !warnings.contains(&w.as_str()) {
            warnings.push(w);
        }
    }
    for w in warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

/// For commands that read what `sync` stored: the component, the database
/// (which must exist) and the connection's name in it.
async fn open_synced(path: &Path) -> Result<(Prepared, Store, String)> {
    let config = load_config(path)?;
    if !config.database.exists() {
        return Err(config_failure(format!(
            "the database {} does not exist yet; run `connector-host sync --config {}` first",
            config.database.display(),
            path.display()
        )));
    }
    let p = prepare(config.plugin.as_deref()).await?;
    let store = Store::open(&config.database)
        .with_context(|| format!("cannot open the database {}", config.database.display()))?;
    let connection = connection_name(&config, &p.info, &p.origin(&config)?);
    Ok((p, store, connection))
}

async fn status(path: &Path, runs: u32, json: bool, out: &mut dyn Write) -> Result<()> {
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

async fn export(
    path: &Path,
    stream: &str,
    options: ExportOptions,
    out: &mut dyn Write,
) -> Result<()> {
    let (p, store, connection) = open_synced(path).await?;
    let mut buffered = std::io::BufWriter::new(out);
    crate::export::export(&store, &p.info, &connection, stream, options, &mut buffered)
        .map_err(|e| config_failure(format!("{e:#}")))?;
    buffered.flush()?;
    Ok(())
}

/// The whole `connector-host` process: parses the process's arguments, logs
/// to stderr (level from `CONNECTOR_HOST_LOG`, default `warn`), runs the
/// command with the process environment and maps errors to exit codes, the
/// error printed as one line on stderr.
pub fn main() -> std::process::ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
        &crate::secrets::ProcessEnvironment,
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

#[cfg(test)]
mod tests {
    use super::*;

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
