//! Shared fixtures of the end-to-end tests: an emulator with a private
//! integration user, configuration files in a temporary directory, the CLI
//! run in-process (exactly the code `connector-host` runs), and an
//! independent oracle of the records the emulator's data should produce.

use connector_host::cli::{run, Cli, Failure};
use serde_json::{Map, Value};
use servicenow_emulator::{DataSpec, Emulator, EmulatorConfig, State, User};
use std::collections::HashMap;
use std::path::PathBuf;

pub mod inventory;
pub mod netbox;
pub mod postgres;

/// The test-only probe component (see `tests/components/probe`).
pub static PROBE_COMPONENT: &[u8] = include_bytes!(env!("PROBE_COMPONENT_PATH"));

/// Name of the environment variable the configurations read the password from.
pub const PASSWORD_VAR: &str = "TEST_SERVICENOW_PASSWORD";

/// An emulator, a temporary directory and the integration user's secret.
pub struct Fixture {
    /// The running emulator.
    pub emulator: Emulator,
    /// Working directory (configs, databases).
    pub dir: tempfile::TempDir,
    /// The password of `svc_exposure`.
    pub password: String,
    /// The environment the CLI sees.
    pub env: HashMap<String, String>,
}

/// What a configuration file should say.
#[derive(Debug, Clone)]
pub struct ConfigSpec {
    /// File name inside the fixture directory.
    pub file: String,
    /// Lines under `[settings]` besides `instance`.
    pub settings: Vec<String>,
    /// Lines under `[sync]` (`partitions = 1` is added unless they set it).
    pub sync: Vec<String>,
    /// The whole `[auth]` section (None: none).
    pub auth: Option<String>,
    /// `plugin = ...` path.
    pub plugin: Option<PathBuf>,
    /// Override of the `instance` setting.
    pub instance: Option<String>,
    /// Lines under `[limits]`.
    pub limits: Vec<String>,
    /// Lines under `[network]`.
    pub network: Vec<String>,
    /// The top-level `database…` lines (None: `database = "inventory.db"`).
    pub database: Option<String>,
}

impl Default for ConfigSpec {
    fn default() -> Self {
        ConfigSpec {
            file: "servicenow.toml".into(),
            settings: vec![],
            // Fast back-off keeps fault tests short; Retry-After is still honoured exactly.
            sync: vec!["retry_base_ms = 10".into(), "retry_max_ms = 50".into()],
            auth: Some(format!(
                "method = \"basic\"\nusername = \"svc_exposure\"\npassword_env = \"{PASSWORD_VAR}\""
            )),
            plugin: None,
            instance: None,
            limits: vec![],
            network: vec![],
            database: None,
        }
    }
}

/// Outcome of a CLI run.
#[derive(Debug)]
pub struct CliRun {
    /// What it wrote to stdout.
    pub stdout: String,
    /// The error (with exit code) if it failed.
    pub error: Option<(u8, String)>,
}

/// Runs the CLI in-process (exactly the code `connector-host` runs) with
/// the environment `env`.
pub fn run_cli(args: &[&str], env: &HashMap<String, String>) -> CliRun {
    let mut argv = vec!["connector-host"];
    argv.extend_from_slice(args);
    let cli = <Cli as clap::Parser>::try_parse_from(argv).expect("valid arguments");
    let mut out = Vec::new();
    let result = run(cli, env, &mut out);
    let stdout = String::from_utf8(out).expect("UTF-8 output");
    CliRun {
        stdout,
        error: result.err().map(|e| {
            let code = e.downcast_ref::<Failure>().map_or(1, |f| f.exit_code);
            (code, format!("{e:#}"))
        }),
    }
}

/// Parses JSON lines (an export's output).
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("export lines are JSON"))
        .collect()
}

impl CliRun {
    /// Stdout, panicking with the error if the run failed.
    pub fn ok(self) -> String {
        if let Some((code, message)) = self.error {
            panic!(
                "the command failed with exit code {code}: {message}\nstdout: {}",
                self.stdout
            );
        }
        self.stdout
    }
    /// The report of `conformance --json`, panicking unless the run
    /// succeeded and every check passed.
    pub fn conformant(self) -> Value {
        let report: Value =
            serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout));
        assert!(self.error.is_none(), "{report:#}");
        for check in report["checks"].as_array().expect("a list of checks") {
            assert_eq!(check["status"], "pass", "{check:#}");
        }
        report
    }

    /// The error message, panicking if the run succeeded.
    pub fn err(self) -> (u8, String) {
        self.error
            .unwrap_or_else(|| panic!("the command succeeded unexpectedly: {}", self.stdout))
    }
}

impl Fixture {
    /// Starts an emulator with `devices` devices (seed 7).
    pub fn start(devices: usize) -> Fixture {
        Fixture::start_with(devices, |_| {})
    }

    /// Starts an emulator with `devices` devices, after `adjust` changed its configuration.
    pub fn start_with(devices: usize, adjust: impl FnOnce(&mut EmulatorConfig)) -> Fixture {
        let password = "pa$$ w0rd:\"quoted\"".to_string();
        let mut config = EmulatorConfig {
            data: DataSpec { devices, seed: 7 },
            users: vec![
                User::new("svc_exposure", &password, &["cmdb_read"]),
                User::new("no_roles", &password, &[]),
            ],
            ..Default::default()
        };
        adjust(&mut config);
        let emulator = Emulator::start(config).expect("the emulator starts");
        Fixture {
            emulator,
            dir: tempfile::tempdir().expect("a temporary directory"),
            env: HashMap::from([(PASSWORD_VAR.to_string(), password.clone())]),
            password,
        }
    }

    /// Starts an emulator with `devices` devices that serves HTTPS with a CA
    /// of its own, whose certificate goes to [`Fixture::ca_file`].
    pub fn start_tls(devices: usize) -> Fixture {
        let f = Fixture::start_with(devices, |c| c.tls = true);
        let ca = f.emulator.ca_pem().expect("a TLS emulator has a CA");
        std::fs::write(f.ca_file(), ca).expect("the CA file is written");
        f
    }

    /// The emulator's CA certificate, written by [`Fixture::start_tls`].
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("emulator-ca.pem")
    }

    /// The default configuration, trusting the emulator's CA.
    pub fn tls_config(&self) -> PathBuf {
        self.config(&ConfigSpec {
            network: vec![format!(
                "tls_ca_file = {:?}",
                self.ca_file().display().to_string()
            )],
            ..Default::default()
        })
    }

    /// The emulator's state (data, faults, ACLs, request log).
    pub fn state(&self) -> &State {
        self.emulator.state()
    }

    /// Writes a configuration file and returns its path.
    pub fn config(&self, spec: &ConfigSpec) -> PathBuf {
        let mut text = spec
            .database
            .clone()
            .unwrap_or_else(|| "database = \"inventory.db\"".into());
        text.push('\n');
        if let Some(p) = &spec.plugin {
            text.push_str(&format!("plugin = {:?}\n", p.display().to_string()));
        }
        let instance = spec
            .instance
            .clone()
            .unwrap_or_else(|| self.emulator.base_url());
        text.push_str(&format!("[settings]\ninstance = {instance:?}\n"));
        for line in &spec.settings {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str("[sync]\n");
        for line in &spec.sync {
            text.push_str(line);
            text.push('\n');
        }
        // One partition unless a test asks for more: request counts and the
        // order of faults are then those of one keyset walk per stream.
        if !spec
            .sync
            .iter()
            .any(|l| l.trim_start().starts_with("partitions"))
        {
            text.push_str("partitions = 1\n");
        }
        for (section, lines) in [("limits", &spec.limits), ("network", &spec.network)] {
            if !lines.is_empty() {
                text.push_str(&format!("[{section}]\n"));
                for line in lines {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        if let Some(auth) = &spec.auth {
            text.push_str("[auth]\n");
            text.push_str(auth);
            text.push('\n');
        }
        let path = self.dir.path().join(&spec.file);
        std::fs::write(&path, text).expect("writing the config");
        path
    }

    /// The default configuration.
    pub fn default_config(&self) -> PathBuf {
        self.config(&ConfigSpec::default())
    }

    /// Runs the CLI in-process with the fixture's environment.
    pub fn cli(&self, args: &[&str]) -> CliRun {
        self.cli_with_env(args, &self.env)
    }

    /// Runs the CLI with another environment.
    pub fn cli_with_env(&self, args: &[&str], env: &HashMap<String, String>) -> CliRun {
        run_cli(args, env)
    }

    /// `sync --config PATH`.
    pub fn sync(&self, config: &std::path::Path) -> CliRun {
        self.cli(&["sync", "--config", config.to_str().unwrap()])
    }

    /// `sync --full --config PATH`.
    pub fn sync_full(&self, config: &std::path::Path) -> CliRun {
        self.cli(&["sync", "--full", "--config", config.to_str().unwrap()])
    }

    /// `export` parsed into JSON values.
    pub fn export(&self, config: &std::path::Path, stream: &str, nested: bool) -> Vec<Value> {
        let nested: &[&str] = if nested { &["--nested"] } else { &[] };
        self.export_with(&export_args(config, stream, nested))
    }

    /// `export --include-deleted` (flat) parsed into JSON values.
    pub fn export_including_deleted(&self, config: &std::path::Path, stream: &str) -> Vec<Value> {
        let config = config.to_str().unwrap();
        self.export_with(&[
            "export",
            "--config",
            config,
            "--stream",
            stream,
            "--include-deleted",
        ])
    }

    fn export_with(&self, args: &[&str]) -> Vec<Value> {
        json_lines(&self.cli(args).ok())
    }
}

/// Record field ← column, and how to convert, for the default mapping.
fn mapping(stream: &str) -> (&'static str, &'static [(&'static str, &'static str)]) {
    match stream {
        "devices" => (
            "cmdb_ci_computer",
            &[
                ("sysId", "sys_id"),
                ("name", "name"),
                ("os", "os"),
                ("osVersion", "os_version"),
                ("osServicePack", "os_service_pack"),
                ("cpuType", "cpu_type"),
                ("category", "category"),
                ("assetTag", "asset_tag"),
                ("virtual", "virtual"),
                ("serviceNowCriticality", "u_criticality"),
                ("usedFor", "used_for"),
                ("lastLoggedOnUser", "u_last_logged_on_user"),
                ("mostFrequentUser", "u_most_frequent_user"),
                ("sysClassName", "sys_class_name"),
                (
                    "uPrimaryBusinessApplication",
                    "u_primary_business_application",
                ),
                ("sysUpdatedOn", "sys_updated_on"),
            ],
        ),
        "network_adapters" => (
            "cmdb_ci_network_adapter",
            &[
                ("sysId", "sys_id"),
                ("name", "name"),
                ("macAddress", "mac_address"),
                ("ipAddress", "ip_address"),
                ("ipDefaultGateway", "ip_default_gateway"),
                ("deviceSysId", "cmdb_ci"),
            ],
        ),
        "business_applications" => (
            "cmdb_ci_business_app",
            &[
                ("sysId", "sys_id"),
                ("number", "number"),
                ("name", "name"),
                ("uCriticality", "u_criticality"),
                ("businessCriticality", "business_criticality"),
            ],
        ),
        other => panic!("no stream {other}"),
    }
}

/// The records `stream` should hold, read from the emulator's current data
/// (rows hidden by ACLs left out). Tests that change the data use this;
/// [`generated_records`] checks it against the generator.
pub fn expected_records(state: &State, stream: &str) -> Vec<Value> {
    let (table, fields) = mapping(stream);
    let hidden = state
        .hidden
        .read()
        .unwrap()
        .get(table)
        .cloned()
        .unwrap_or_default();
    state.with_db(|db| {
        let t = &db.tables[table];
        t.rows()
            .iter()
            .filter(|row| !hidden.contains(row.key()))
            .map(|row| record(fields, |column| t.value(row, column)))
            .collect()
    })
}

/// The records `stream` should hold for freshly generated data, derived
/// from the generator's rows before the emulator stores them (its own column
/// lists, none of `Table`'s storage), in key order: an oracle independent
/// of the emulator's storage and of the server that reads it.
pub fn generated_records(spec: &DataSpec, stream: &str) -> Vec<Value> {
    use servicenow_emulator::data::{self, Related, Row};
    let apps: Vec<Row> = (0..data::app_count(spec.devices))
        .map(|i| data::app_row(spec.seed, i))
        .collect();
    let app_ids: Vec<String> = apps.iter().map(|r| r.key().to_string()).collect();
    let mut related = Related::default();
    let devices: Vec<Row> = (0..spec.devices)
        .map(|i| data::device_rows(spec.seed, i, &app_ids, &mut related))
        .collect();
    let (rows, columns) = match stream {
        "devices" => (devices, data::COMPUTER_COLUMNS),
        "network_adapters" => (related.adapters, data::ADAPTER_COLUMNS),
        "business_applications" => (apps, data::BUSINESS_APP_COLUMNS),
        other => panic!("no stream {other}"),
    };
    let (_, fields) = mapping(stream);
    let mut records: Vec<Value> = rows
        .iter()
        .map(|row| {
            record(fields, |column| {
                columns
                    .iter()
                    .position(|c| *c == column)
                    .map_or("", |i| row.get(i))
            })
        })
        .collect();
    records.sort_by(|a, b| a["sysId"].as_str().cmp(&b["sysId"].as_str()));
    records
}

/// A record from a row: the fields whose columns hold a value, converted as
/// the contract says (booleans; RFC 3339 UTC times).
fn record<'a>(fields: &[(&str, &str)], value: impl Fn(&str) -> &'a str) -> Value {
    let mut m = Map::new();
    for (field, column) in fields {
        let v = value(column);
        if v.is_empty() {
            continue;
        }
        let value = match *field {
            "virtual" => Value::Bool(v == "true"),
            "sysUpdatedOn" => Value::String(format!("{}T{}Z", &v[..10], &v[11..])),
            _ => Value::String(v.to_string()),
        };
        m.insert(field.to_string(), value);
    }
    Value::Object(m)
}

/// An HTTPS proxy on 127.0.0.1 that tunnels `CONNECT host:port` and counts tunnels.
pub struct ConnectProxy {
    addr: std::net::SocketAddr,
    tunnels: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConnectProxy {
    /// Starts the proxy on its own thread.
    pub fn start() -> ConnectProxy {
        ConnectProxy::start_requiring(None)
    }

    /// Starts a proxy that answers `407` to a `CONNECT` without exactly this
    /// `Proxy-Authorization` value.
    pub fn start_requiring(authorization: Option<String>) -> ConnectProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let tunnels = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = tunnels.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let serve = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        let counter = counter.clone();
                        let required = authorization.clone();
                        tokio::spawn(tunnel(client, required, counter));
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = rx => {}
                }
            });
        });
        ConnectProxy {
            addr,
            tunnels,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Tunnels opened so far.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Serves one proxy client: checks `Proxy-Authorization` when `required`,
/// then tunnels `CONNECT host:port` (counted in `tunnels`).
async fn tunnel(
    mut client: tokio::net::TcpStream,
    required: Option<String>,
    tunnels: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        match client.read_u8().await {
            Ok(b) => head.push(b),
            Err(_) => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    if let Some(required) = required {
        let given = head.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(name, _)| name.eq_ignore_ascii_case("proxy-authorization"))
                .map(|(_, value)| value.trim().to_string())
        });
        if given.as_deref() != Some(required.as_str()) {
            let _ = client
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\n\r\n")
                .await;
            return;
        }
    }
    let line = head.lines().next().unwrap_or("");
    let target = line
        .strip_prefix("CONNECT ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or("");
    match tokio::net::TcpStream::connect(target).await {
        Ok(mut upstream) => {
            tunnels.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = client
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        Err(_) => {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        }
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends SIGTERM to `child` (what a service manager does to stop it).
pub fn sigterm(child: &std::process::Child) {
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success(), "kill -TERM failed");
}

/// Reads the first 100 bytes of records from `child` (spawned with its
/// stdout and stderr piped, with more to write than a pipe holds, 64 KiB,
/// so that it is still writing), closes its stdout as `| head` does, and
/// asserts what the operator gets: exit 1 and one line saying so,
/// `connector-host`'s.
pub fn assert_stdout_closed_early_is_one_line(mut child: std::process::Child) {
    use std::io::Read;
    let mut start = [0u8; 100];
    let mut stdout = child.stdout.take().expect("stdout is piped");
    stdout.read_exact(&mut start).expect("100 bytes on stdout");
    drop(stdout);
    let output = child
        .wait_with_output()
        .expect("the child can be waited for");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        start.starts_with(b"{"),
        "{}",
        String::from_utf8_lossy(&start)
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!("error: {}", connector_host::commands::export::READER_GONE)
    );
}

/// `child`'s exit status once it exits, or `None` if it is still running
/// after `deadline` (a deadline for a test's wait, not a measurement).
pub fn exit_within(
    child: &mut std::process::Child,
    deadline: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            return Some(status);
        }
        if started.elapsed() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The arguments of `export --config CONFIG --stream STREAM`, then `extra`.
pub fn export_args<'a>(
    config: &'a std::path::Path,
    stream: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "export",
        "--config",
        config.to_str().expect("a UTF-8 path"),
        "--stream",
        stream,
    ];
    args.extend_from_slice(extra);
    args
}

/// A child process killed (and reaped) when dropped: a test that fails
/// half-way leaves no `serve` or browser behind.
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
