//! The benchmark harness: whole processes against the emulator, measured
//! with `/usr/bin/time -v`, repeated, reported as medians.
//!
//! For each device count and added latency it runs, against one emulator
//! (HTTPS with its own CA, started in this process):
//! - `connector-host sync --full` (the wasm component in the host), the
//!   storage floor from what it stored, and `native-sync` (the same
//!   connector crate compiled natively, same store), one run of each in
//!   turn (`measure_in_turns`);
//! - optionally pysnc, ServiceNow's Python SDK, reading the same three
//!   tables with its defaults and tuned;
//! - at 0 ms, an incremental sync after 1% of the devices changed, then
//!   `connector-host status` on the database it left (what the console
//!   counts on each page).
//!
//! Then the cold start of `connector-host info` with and without the
//! compiled-component cache. Prints a table and writes it as JSON.
//! See BENCHMARKS.md for the command and the latest results.

mod postgres;
mod round_two;
mod workers;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;
use servicenow_emulator::data::Rng;
use servicenow_emulator::{DataSpec, Emulator, EmulatorConfig, Mutation, MutationKind, User};
use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Benchmarks the connector against the emulator (see BENCHMARKS.md)")]
struct Args {
    /// Device counts (each has ~2 adapters and 1 business app per 40 devices).
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    devices: Vec<usize>,
    /// Added latency per request, in milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "0,50")]
    latency_ms: Vec<u64>,
    /// Runs per measurement (the table shows medians).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Device counts at which to run pysnc too (it is slow: keep it small).
    #[arg(long, value_delimiter = ',', default_value = "100000")]
    pysnc_devices: Vec<usize>,
    /// Runs per pysnc measurement (default: `--runs`); with its defaults at
    /// 50 ms one run takes minutes.
    #[arg(long)]
    pysnc_runs: Option<usize>,
    /// pysnc's configurations to run (`defaults`, `tuned`).
    #[arg(long, value_delimiter = ',', default_value = "defaults,tuned", value_parser = ["defaults", "tuned"])]
    pysnc_modes: Vec<String>,
    /// Runs only the pysnc rows of `--pysnc-devices` (no host, floor,
    /// native build, incremental, WAN or cold start), e.g. pysnc tuned at 1M
    /// once with `--pysnc-modes tuned`.
    #[arg(long)]
    pysnc_only: bool,
    /// Stops a pysnc run after this many seconds, failing the harness with
    /// what it printed (none: no limit).
    #[arg(long)]
    pysnc_timeout_s: Option<u64>,
    /// The Python interpreter with pysnc installed.
    #[arg(long, default_value = "target/python-venv/bin/python")]
    python: PathBuf,
    /// Directory holding the release `connector-host` and `native-sync`.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench/results.json")]
    out: PathBuf,
    /// Also sync into this PostgreSQL database (emptied before each run;
    /// password in `BENCH_POSTGRES_PASSWORD`), at 0 ms latency.
    #[arg(long)]
    postgres: Option<String>,
    /// With `--postgres`: instead of the other rows, sync
    /// `--worker-connections` connections one after another with `sync`,
    /// then with this many `worker --once` processes at once (e.g. 1,2,4).
    #[arg(long, value_delimiter = ',', requires = "postgres")]
    workers: Vec<usize>,
    /// Connections of the workers' benchmark (each of `--devices` devices).
    #[arg(long, default_value_t = 20)]
    worker_connections: usize,
    /// At 0 ms, also the full sync with the host on CPU 0 alone and on every
    /// CPU, the emulator pinned to the last CPU (`taskset`).
    #[arg(long)]
    cores: bool,
    /// Device counts of the WAN rows (0: none): ours and pysnc tuned against
    /// an emulator with `--wan-rtt-ms` per request, two round trips per new
    /// connection and `--wan-row-time-us` of server time per row.
    #[arg(long, value_delimiter = ',', default_value = "100000")]
    wan_devices: Vec<usize>,
    /// Round-trip time of the WAN rows, in milliseconds.
    #[arg(long, default_value_t = 80)]
    wan_rtt_ms: u64,
    /// Server time per row of the WAN rows, in microseconds (an assumption:
    /// 200 µs is 5,000 rows a second per request).
    #[arg(long, default_value_t = 200)]
    wan_row_time_us: u64,
}

const USER: &str = "svc_bench";
pub(crate) const PASSWORD: &str = "bench password";

/// One whole-process measurement.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    wall_s: f64,
    /// User + system.
    cpu_s: f64,
    /// The kernel's part of `cpu_s`: on a virtual machine it includes what
    /// the hypervisor takes to back memory the guest touches for the first
    /// time (BENCHMARKS.md, "Run P").
    system_s: f64,
    max_rss_mib: f64,
}

/// How to measure one row: `prepare` a run (not timed), then time the
/// command `command` builds; `records` counts what the run read (from its
/// stdout or the database) and may correct the sample from the command's
/// own report of its work.
struct Measurement<'a> {
    what: String,
    prepare: Box<dyn FnMut() -> Result<()> + 'a>,
    command: Box<dyn Fn() -> Command + 'a>,
    records: Box<RecordsRead<'a>>,
}

/// What a run read, from its stdout and its sample ([`Measurement`]).
type RecordsRead<'a> = dyn Fn(&str, &mut Sample) -> Result<u64> + 'a;

/// A measured configuration: medians of its samples.
#[derive(Debug, Clone, Serialize)]
struct Row {
    what: String,
    devices: usize,
    latency_ms: u64,
    runs: usize,
    wall_s: f64,
    cpu_s: f64,
    system_s: f64,
    max_rss_mib: f64,
    records: u64,
    requests: u64,
    records_per_s: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `cmd` under `/usr/bin/time -v`; fails with its stderr unless it succeeded.
fn timed(cmd: &mut Command) -> Result<(Sample, String)> {
    let report = tempfile_path("time");
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-v")
        .arg("-o")
        .arg(&report)
        .arg(&program)
        .args(&args);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    let started = std::time::Instant::now();
    let out = wrapped
        .output()
        .with_context(|| format!("running {program:?}"))?;
    // `time` reports wall time in hundredths of a second: measure it here.
    let wall = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{program:?} failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&report)?;
    let _ = std::fs::remove_file(&report);
    let field = |name: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(str::trim)
    };
    let seconds = |name: &str| -> f64 { field(name).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    let rss_kib: f64 = field("Maximum resident set size (kbytes):")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Ok((
        Sample {
            wall_s: wall,
            cpu_s: seconds("User time (seconds):") + seconds("System time (seconds):"),
            system_s: seconds("System time (seconds):"),
            max_rss_mib: rss_kib / 1024.0,
        },
        stdout,
    ))
}

/// Removes the SQLite database `database` and its WAL files, if there.
fn remove_sqlite_files(database: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", database.display());
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {path}"))
            }
            _ => {}
        }
    }
    Ok(())
}

fn tempfile_path(tag: &str) -> PathBuf {
    let n: u64 = Rng::new(std::process::id() as u64 ^ now_nanos()).next_u64();
    std::env::temp_dir().join(format!("bench-{tag}-{n:x}"))
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Everything one emulator configuration needs.
struct Bench<'a> {
    args: &'a Args,
    emulator: Emulator,
    dir: PathBuf,
    devices: usize,
    latency_ms: u64,
    /// Put before each row's name (the WAN rows').
    label: String,
}

/// What the emulator adds to look like a distant instance (none by default).
#[derive(Default)]
struct Wan {
    handshake: Duration,
    row_time: Duration,
    label: String,
}

/// The WAN rows at `devices` devices: ours and pysnc tuned.
fn wan_rows(args: &Args, devices: usize) -> Result<Vec<Row>> {
    let rtt = args.wan_rtt_ms;
    let wan = Wan {
        // TCP's handshake, then TLS 1.3's: a round trip each.
        handshake: Duration::from_millis(2 * rtt),
        row_time: Duration::from_micros(args.wan_row_time_us),
        label: format!("WAN ({rtt} ms RTT, TLS, {} µs/row): ", args.wan_row_time_us),
    };
    let bench = Bench::start(args, devices, rtt, wan)?;
    let mut rows = vec![bench.host_full()?];
    if args.python.exists() {
        rows.push(bench.pysnc("tuned")?);
    } else {
        eprintln!("{} is missing: no pysnc WAN row", args.python.display());
    }
    Ok(rows)
}

impl Drop for Bench<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl<'a> Bench<'a> {
    /// Starts an emulator of `devices` devices (HTTPS with its own CA) with
    /// `latency_ms` per request and what `wan` adds.
    fn start(args: &'a Args, devices: usize, latency_ms: u64, wan: Wan) -> Result<Bench<'a>> {
        eprintln!(
            "starting the emulator: {devices} devices, {latency_ms} ms latency{}",
            if wan.label.is_empty() { "" } else { ", WAN" }
        );
        let emulator = Emulator::start(EmulatorConfig {
            data: DataSpec { devices, seed: 1 },
            users: vec![User::new(USER, PASSWORD, &["cmdb_read"])],
            latency: Duration::from_millis(latency_ms),
            handshake: wan.handshake,
            row_time: wan.row_time,
            tls: true,
            mutations_per_second: 0.0,
            ..Default::default()
        })?;
        let dir = tempfile_path("run");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("ca.pem"), emulator.ca_pem().unwrap_or_default())?;
        Ok(Bench {
            args,
            emulator,
            dir,
            devices,
            latency_ms,
            label: wan.label,
        })
    }
}

impl Bench<'_> {
    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn database(&self) -> PathBuf {
        self.dir.join("bench.db")
    }

    /// Removes the database (and its WAL files) so that a sync starts empty.
    fn remove_database(&self) -> Result<()> {
        remove_sqlite_files(&self.database())
    }

    /// The host's configuration: its defaults, except a watermark lag of 0
    /// so that an incremental sync after a fresh full sync reads only this
    /// round's changes, not also those of the previous round (they happened
    /// within the default 60 s lag; see also [`Bench::host_incremental`]).
    fn config(&self) -> Result<PathBuf> {
        let database = format!("database = {:?}", self.database().display().to_string());
        self.config_into("bench.toml", &database)
    }

    /// The configuration file `file`, its records going where `database` says.
    fn config_into(&self, file: &str, database: &str) -> Result<PathBuf> {
        let path = self.dir.join(file);
        std::fs::write(
            &path,
            format!(
                "{database}\n[settings]\ninstance = {:?}\nwatermark_lag_seconds = \"0\"\n[network]\ntls_ca_file = {:?}\n[auth]\nmethod = \"basic\"\nusername = {USER:?}\npassword_env = \"BENCH_PASSWORD\"\n",
                self.emulator.base_url(),
                self.ca_file().display().to_string(),
            ),
        )?;
        Ok(path)
    }

    fn requests(&self) -> u64 {
        self.emulator.state().request_count() as u64
    }

    fn records(&self) -> Result<u64> {
        let db = rusqlite::Connection::open(self.database())?;
        Ok(db.query_row(
            "SELECT COUNT(*) FROM records WHERE deleted_at IS NULL",
            [],
            |r| r.get(0),
        )?)
    }

    fn row(&self, what: &str, samples: &[Sample], records: u64, requests: u64) -> Row {
        let wall = median(samples.iter().map(|s| s.wall_s).collect());
        Row {
            what: format!("{}{what}", self.label),
            devices: self.devices,
            latency_ms: self.latency_ms,
            runs: samples.len(),
            wall_s: wall,
            cpu_s: median(samples.iter().map(|s| s.cpu_s).collect()),
            system_s: median(samples.iter().map(|s| s.system_s).collect()),
            max_rss_mib: median(samples.iter().map(|s| s.max_rss_mib).collect()),
            records,
            requests,
            records_per_s: if wall > 0.0 {
                records as f64 / wall
            } else {
                0.0
            },
        }
    }

    /// Measures `what` `runs` times: `prepare` (not timed), then the
    /// command `command` builds, timed; `records` counts what it read, from
    /// its stdout or the database. Requests and records are the last run's.
    fn measure<'m>(
        &self,
        what: &str,
        runs: usize,
        prepare: impl FnMut() -> Result<()> + 'm,
        command: impl Fn() -> Command + 'm,
        records: impl Fn(&str) -> Result<u64> + 'm,
    ) -> Result<Row> {
        let measurement = Measurement {
            what: what.to_string(),
            prepare: Box::new(prepare),
            command: Box::new(command),
            records: Box::new(move |stdout, _| records(stdout)),
        };
        self.measure_alone(runs, measurement)
    }

    /// One row, measured `runs` times on its own.
    fn measure_alone(&self, runs: usize, measurement: Measurement<'_>) -> Result<Row> {
        let mut rows = self.measure_in_turns(runs, vec![measurement])?;
        Ok(rows.remove(0))
    }

    /// Measures each of `measurements` `runs` times, taking turns: one run
    /// of each, then the next round. On these virtual machines what the
    /// kernel charges for the first write to a page changes over minutes,
    /// and a row measured in a block of its own took its minutes' cost
    /// alone (BENCHMARKS.md, "Run R"). Requests and records are each
    /// row's last run's.
    fn measure_in_turns(
        &self,
        runs: usize,
        mut measurements: Vec<Measurement<'_>>,
    ) -> Result<Vec<Row>> {
        let mut samples = vec![Vec::new(); measurements.len()];
        let mut last = vec![(0, 0); measurements.len()];
        for _ in 0..runs {
            for (i, m) in measurements.iter_mut().enumerate() {
                (m.prepare)()?;
                let before = self.requests();
                let (mut sample, stdout) = timed(&mut (m.command)())?;
                let requests = self.requests() - before;
                last[i] = ((m.records)(&stdout, &mut sample)?, requests);
                samples[i].push(sample);
            }
        }
        Ok(measurements
            .iter()
            .zip(samples.iter().zip(last))
            .map(|(m, (samples, (read, requests)))| self.row(&m.what, samples, read, requests))
            .collect())
    }

    /// `connector-host sync` (`--full` when `full`) with the bench configuration.
    fn host_sync(&self, config: &Path, full: bool) -> Command {
        let mut cmd = Command::new(self.args.bin_dir.join("connector-host"));
        cmd.arg("sync");
        if full {
            cmd.arg("--full");
        }
        cmd.arg("--config")
            .arg(config)
            .env("BENCH_PASSWORD", PASSWORD);
        cmd
    }

    /// A full sync with the wasm component, from an empty database.
    fn host_full(&self) -> Result<Row> {
        let full = self.host_full_measurement(self.config()?);
        self.measure_alone(self.args.runs, full)
    }

    /// How to measure a full sync with the wasm component, from an empty
    /// database.
    fn host_full_measurement(&self, config: PathBuf) -> Measurement<'_> {
        Measurement {
            what: "wasm component (connector-host sync)".into(),
            prepare: Box::new(|| self.remove_database()),
            command: Box::new(move || self.host_sync(&config, true)),
            records: Box::new(|_, _| self.records()),
        }
    }

    /// How to measure the same sync by the connector compiled natively.
    fn native_full_measurement(&self) -> Measurement<'_> {
        Measurement {
            what: "native build (same crate, ureq)".into(),
            prepare: Box::new(|| self.remove_database()),
            command: Box::new(|| {
                let mut cmd = Command::new(self.args.bin_dir.join("native-sync"));
                cmd.args(["--instance", &self.emulator.base_url(), "--user", USER])
                    .arg("--ca-file")
                    .arg(self.ca_file())
                    .arg("--database")
                    .arg(self.database())
                    .env("NATIVE_SYNC_PASSWORD", PASSWORD);
                cmd
            }),
            records: Box::new(|_, _| self.records()),
        }
    }

    /// The full sync with the component, the storage floor from what that
    /// sync stored, and the native build's full sync, in turns
    /// ([`Bench::measure_in_turns`]).
    fn full_syncs_in_turns(&self) -> Result<Vec<Row>> {
        let measurements = vec![
            self.host_full_measurement(self.config()?),
            self.storage_floor_measurement(),
            self.native_full_measurement(),
        ];
        let rows = self.measure_in_turns(self.args.runs, measurements)?;
        self.remove_floor()?;
        Ok(rows)
    }

    /// An incremental sync after a fresh full sync and 1% of the devices
    /// updated. Each run first puts back the devices the run before it
    /// updated: their time would be the fresh sync's watermark, which is
    /// inclusive, so the incremental sync would read them again (until
    /// 2026-12-07 every run after the first read 2% of the devices,
    /// BENCHMARKS.md, "The incremental row read 2 %").
    fn host_incremental(&self) -> Result<Row> {
        let config = self.config()?;
        let mut rng = Rng::new(42);
        let updates = RefCell::new(Vec::new());
        self.measure(
            "incremental, 1% of devices changed",
            self.args.runs,
            || {
                self.undo(updates.take())?;
                self.remove_database()?;
                timed(&mut self.host_sync(&config, false))?;
                // Updates carry the emulator's clock: at or after the
                // watermark just stored (the configuration's lag is 0).
                let mut updates = updates.borrow_mut();
                for _ in 0..self.devices / 100 {
                    let update = self.emulator.state().mutate(MutationKind::Update, &mut rng);
                    updates.extend(update);
                }
                Ok(())
            },
            || self.host_sync(&config, false),
            |_| {
                self.check_read_just(&updates.borrow())?;
                self.records()
            },
        )
    }

    /// Puts back the devices that `updates` replaced, latest first, so that
    /// each is as it was before its first update.
    fn undo(&self, updates: Vec<Mutation>) -> Result<()> {
        self.emulator.state().with_db_mut(|db| {
            let devices = db
                .tables
                .get_mut("cmdb_ci_computer")
                .context("the emulator has no devices' table")?;
            for row in updates.into_iter().rev().filter_map(|u| u.replaced) {
                devices.put(row);
            }
            Ok(())
        })
    }

    /// Fails unless the last sync read exactly the devices `updates` changed.
    fn check_read_just(&self, updates: &[Mutation]) -> Result<()> {
        let changed: HashSet<&str> = updates.iter().map(|u| u.sys_id.as_str()).collect();
        let db = rusqlite::Connection::open(self.database())?;
        let report: String = db.query_row(
            "SELECT report FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )?;
        let report: serde_json::Value = serde_json::from_str(&report)?;
        let read: u64 = report["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["stream"] == "devices")
            .flat_map(|s| s["partitions"].as_array().into_iter().flatten())
            .filter_map(|p| p["records"].as_u64())
            .sum();
        if read != changed.len() as u64 {
            bail!(
                "the incremental sync read {read} devices where {} changed: \
                 the row would not measure what it says",
                changed.len()
            );
        }
        Ok(())
    }

    /// `connector-host status` on the database the incremental sync left:
    /// the records counted per stream, as each console page counts them.
    fn host_status(&self) -> Result<Row> {
        let config = self.config()?;
        self.measure(
            "status: the records counted per stream",
            self.args.runs.max(5),
            || Ok(()),
            || {
                let mut cmd = Command::new(self.args.bin_dir.join("connector-host"));
                cmd.arg("status").arg("--config").arg(&config);
                cmd
            },
            |_| self.records(),
        )
    }

    /// The rows of this emulator (all but the WAN rows and the cold start).
    fn rows(&self) -> Result<Vec<Row>> {
        let args = self.args;
        let mut measured = Vec::new();
        if !args.pysnc_only {
            measured.extend(self.full_syncs_in_turns()?);
            if args.cores && self.latency_ms == 0 {
                measured.extend(self.host_on_cores()?);
            }
            if let (Some(url), 0) = (&args.postgres, self.latency_ms) {
                measured.push(self.host_full_postgres(url)?);
            }
        }
        if args.pysnc_devices.contains(&self.devices) {
            for mode in &args.pysnc_modes {
                measured.push(self.pysnc(mode)?);
            }
        }
        if self.latency_ms == 0 && !args.pysnc_only {
            measured.push(self.host_incremental()?);
            measured.push(self.host_status()?);
        }
        Ok(measured)
    }

    /// pysnc reading the three tables (`mode`: `defaults` or `tuned`).
    fn pysnc(&self, mode: &str) -> Result<Row> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pysnc_read.py");
        self.measure(
            &format!("pysnc 1.2.1, {mode}"),
            self.args.pysnc_runs.unwrap_or(self.args.runs),
            || Ok(()),
            || {
                let mut cmd = match self.args.pysnc_timeout_s {
                    Some(limit) => {
                        // coreutils' `timeout`: exit 124 when the limit hit.
                        let mut cmd = Command::new("timeout");
                        cmd.arg(limit.to_string()).arg(&self.args.python);
                        cmd
                    }
                    None => Command::new(&self.args.python),
                };
                cmd.arg(&script)
                    .args([&self.emulator.base_url(), USER, mode])
                    .env("PYSNC_PASSWORD", PASSWORD)
                    .env("REQUESTS_CA_BUNDLE", self.ca_file());
                cmd
            },
            |stdout| {
                stdout
                    .trim()
                    .parse()
                    .context("pysnc_read.py prints a row count")
            },
        )
    }
}

/// `connector-host info` with an empty and with a warm compiled-component cache.
fn cold_start(args: &Args) -> Result<Vec<Row>> {
    let cache = tempfile_path("cache");
    let host = args.bin_dir.join("connector-host");
    let info = |cache: &Path| {
        timed(
            Command::new(&host)
                .arg("info")
                .env("CONNECTOR_HOST_CACHE_DIR", cache),
        )
    };
    let mut uncached = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..args.runs.max(5) {
        let _ = std::fs::remove_dir_all(&cache);
        uncached.push(info(&cache)?.0);
        cached.push(info(&cache)?.0);
    }
    // In this process, with the cache warm: loading the compiled component,
    // then the first and a later instantiation (each with an `info` call).
    info(&cache)?;
    std::env::set_var("CONNECTOR_HOST_CACHE_DIR", &cache);
    let in_process = instantiation_times()?;
    let _ = std::fs::remove_dir_all(&cache);
    let row = |what: &str, samples: &[Sample]| Row {
        what: what.into(),
        devices: 0,
        latency_ms: 0,
        runs: samples.len(),
        wall_s: median(samples.iter().map(|s| s.wall_s).collect()),
        cpu_s: median(samples.iter().map(|s| s.cpu_s).collect()),
        system_s: median(samples.iter().map(|s| s.system_s).collect()),
        max_rss_mib: median(samples.iter().map(|s| s.max_rss_mib).collect()),
        records: 0,
        requests: 0,
        records_per_s: 0.0,
    };
    let mut rows = vec![
        row("cold start: `info`, empty cache (compiles)", &uncached),
        row("cold start: `info`, compiled component cached", &cached),
    ];
    for (what, seconds) in in_process {
        let sample = Sample {
            wall_s: seconds,
            cpu_s: 0.0,
            system_s: 0.0,
            max_rss_mib: 0.0,
        };
        rows.push(row(what, &[sample]));
    }
    Ok(rows)
}

/// Seconds to load the cached component into a fresh engine, and to
/// instantiate it (and call `info`) for the first and the second time.
fn instantiation_times() -> Result<Vec<(&'static str, f64)>> {
    use connector_host::bundled::BUNDLED_COMPONENT;
    use connector_sandbox::runtime::{read_info, Runtime};
    use std::time::Instant;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let runtime = Runtime::shared()?;
    let component = runtime.load(BUNDLED_COMPONENT)?;
    let loaded = started.elapsed().as_secs_f64();
    let started = Instant::now();
    tokio.block_on(read_info(runtime, &component))?;
    let first = started.elapsed().as_secs_f64();
    let started = Instant::now();
    tokio.block_on(read_info(runtime, &component))?;
    let second = started.elapsed().as_secs_f64();
    Ok(vec![
        ("in process: engine + cached component loaded", loaded),
        ("in process: first instantiation + `info` call", first),
        ("in process: next instantiation + `info` call", second),
    ])
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<48} {:>9} {:>7} {:>8} {:>8} {:>8} {:>9} {:>10} {:>9} {:>11}",
        "what",
        "devices",
        "lat ms",
        "wall s",
        "cpu s",
        "sys s",
        "RSS MiB",
        "records",
        "requests",
        "records/s"
    );
    for r in rows {
        println!(
            "{:<48} {:>9} {:>7} {:>8.3} {:>8.2} {:>8.2} {:>9.1} {:>10} {:>9} {:>11.0}",
            r.what,
            r.devices,
            r.latency_ms,
            r.wall_s,
            r.cpu_s,
            r.system_s,
            r.max_rss_mib,
            r.records,
            r.requests,
            r.records_per_s
        );
    }
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            })
        })
        .unwrap_or(0);
    serde_json::json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "memory_gib": (mem_kib as f64 / 1_048_576.0 * 10.0).round() / 10.0,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    for bin in ["connector-host", "native-sync", "store-floor"] {
        let path = args.bin_dir.join(bin);
        if !path.exists() {
            bail!(
                "{} is missing: build it first with `cargo build --release -p connector-host -p bench` (bench/run.sh does)",
                path.display()
            );
        }
    }
    let machine = machine();
    eprintln!("machine: {machine}");
    let mut rows = Vec::new();
    for &devices in &args.devices {
        for &latency_ms in &args.latency_ms {
            let bench = Bench::start(&args, devices, latency_ms, Wan::default())?;
            if let (Some(url), false) = (&args.postgres, args.workers.is_empty()) {
                let measured = bench.workers(url, args.worker_connections)?;
                print_table(&measured);
                rows.extend(measured);
                continue;
            }
            let measured = bench.rows()?;
            print_table(&measured);
            rows.extend(measured);
        }
    }
    if args.workers.is_empty() && !args.pysnc_only {
        for &devices in args.wan_devices.iter().filter(|&&d| d > 0) {
            let measured = wan_rows(&args, devices)?;
            print_table(&measured);
            rows.extend(measured);
        }
        rows.extend(cold_start(&args)?);
    }
    println!();
    print_table(&rows);
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&serde_json::json!({"machine": machine, "rows": rows}))?,
    )?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
