//! The real `connector-host` process, stopped by real signals: SIGKILL at
//! random points of a large sync, and SIGTERM's clean stop.

use connector_e2e::{expected_records, ConfigSpec, Fixture};
use serde_json::Value;
use servicenow_emulator::data::Rng;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const STREAMS: [&str; 3] = ["devices", "network_adapters", "business_applications"];

/// Longest a sync may take to reach the next kill point (a hang fails the test).
const PATIENCE: Duration = Duration::from_secs(600);

/// Starts `connector-host sync` as a child process.
fn spawn_sync(f: &Fixture, config: &Path) -> Child {
    spawn_sync_with(config, &f.env)
}

/// Starts `connector-host sync` as a child process with `env`.
pub(crate) fn spawn_sync_with(
    config: &Path,
    env: &std::collections::HashMap<String, String>,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_e2e-host"))
        .args(["sync", "--config", config.to_str().unwrap()])
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the host binary starts")
}

/// Waits for the child; panics with its output unless it succeeded.
fn finish(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn remove_database(f: &Fixture) {
    for suffix in ["", "-wal", "-shm"] {
        let path = f.dir.path().join(format!("inventory.db{suffix}"));
        if path.exists() {
            std::fs::remove_file(path).unwrap();
        }
    }
}

/// The emulator's keys of a stream, sorted.
fn sorted_keys(f: &Fixture, stream: &str) -> Vec<String> {
    let mut keys: Vec<String> = expected_records(f.state(), stream)
        .iter()
        .map(|r| r["sysId"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

/// After a kill, each stream holds exactly the source's records up to its
/// committed cursor (all of them once its full read is done): nothing lost
/// before the cursor, nothing beyond it.
fn assert_committed_prefixes(f: &Fixture, truth: &[Vec<String>], kill: usize) {
    let db = rusqlite::Connection::open(f.dir.path().join("inventory.db")).unwrap();
    for (stream, keys) in STREAMS.iter().zip(truth) {
        // A stream whose full read completed in an earlier run is read
        // incrementally by the later ones: it holds everything.
        let state: Option<(Option<String>, bool)> = db
            .query_row(
                "SELECT p.cursor, p.done OR s.read_mode = 'incremental'
                 FROM partitions p JOIN streams s USING (connection, stream) WHERE stream = ?1",
                [stream],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        let stored: Vec<String> = db
            .prepare(
                "SELECT r.key FROM records r JOIN stream_ids s ON s.id = r.stream_id
                 WHERE s.stream = ?1 ORDER BY r.key",
            )
            .unwrap()
            .query_map([stream], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: &[String] = match state {
            Some((_, true)) => keys,
            Some((Some(cursor), false)) => {
                let cursor: serde_json::Value = serde_json::from_str(&cursor).unwrap();
                match cursor["after"].as_str() {
                    Some(after) => &keys[..keys.partition_point(|k| k.as_str() <= after)],
                    None => &[],
                }
            }
            Some((None, false)) | None => &[],
        };
        assert!(
            stored == expected,
            "kill {kill}, {stream}: {} stored, {} expected before the cursor",
            stored.len(),
            expected.len()
        );
    }
}

/// `PRAGMA integrity_check` and the number of stored records.
fn inspect(f: &Fixture) -> (String, i64) {
    let db = rusqlite::Connection::open(f.dir.path().join("inventory.db")).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    let records: i64 = db
        .query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))
        .unwrap();
    (integrity, records)
}

#[test]
fn sigkill_at_20_random_points_then_resume_ends_with_the_emulators_data_and_few_extra_requests() {
    let f = Fixture::start(100_000);
    // Concurrency 3 = one page in flight per stream; 250-row pages.
    let config = f.config(&ConfigSpec {
        sync: vec![
            "page_size = 250".into(),
            "partitions = 1".into(),
            "concurrency = 3".into(),
        ],
        ..Default::default()
    });
    // The yardstick: one uninterrupted sync of the same data.
    finish(spawn_sync(&f, &config));
    let uninterrupted = f.state().request_count();
    assert!(uninterrupted > 1000, "{uninterrupted} requests");
    remove_database(&f);

    let truth: Vec<Vec<String>> = STREAMS.iter().map(|s| sorted_keys(&f, s)).collect();
    let mut rng = Rng::new(2026);
    let mut kills = 0;
    let series_start = f.state().request_count();
    loop {
        let started_at = f.state().request_count();
        let mut child = spawn_sync(&f, &config);
        if kills == 20 {
            finish(child);
            break;
        }
        // Kill once this run has had a random number of requests answered:
        // on average a fortieth of the sync, so all 20 kills land inside it.
        let point = started_at + 1 + rng.below((uninterrupted / 20) as u64) as usize;
        let reached = f.state().wait_for_requests(point, PATIENCE);
        assert!(
            reached >= point,
            "run {kills} stalled at {reached} of {point} requests"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sync finished before kill {kills}"
        );
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success());
        kills += 1;
        let (integrity, _) = inspect(&f);
        assert_eq!(integrity, "ok", "after kill {kills}");
        assert_committed_prefixes(&f, &truth, kills);
    }
    let total = f.state().request_count() - series_start;
    // Each killed run is marked interrupted by the run after it.
    let statuses = statuses_of_the_last_runs(&f, &config, 25);
    assert_eq!(statuses.len(), 21, "{statuses:?}");
    assert_eq!(statuses[0], "complete");
    assert!(
        statuses[1..].iter().all(|s| *s == "interrupted"),
        "{statuses:?}"
    );
    // Every record once, exactly as the emulator has it.
    stores_the_emulators_records(&f, &config);
    // A kill loses the pages in flight (one per stream, and whatever the
    // process sent before the signal landed); the whole series stays within
    // 110% of the uninterrupted sync.
    let extra = total.saturating_sub(uninterrupted);
    assert!(
        total * 100 <= uninterrupted * 110,
        "{total} requests against {uninterrupted} uninterrupted"
    );
    eprintln!("20 kills: {total} requests against {uninterrupted} uninterrupted ({extra} extra)");
}

/// An emulator of 6,000 devices answering each request after 5 ms, and a
/// configuration that reads them 100 rows a page, one partition a stream:
/// a sync of a few seconds, 2 to 3 pages in flight at any time.
fn a_long_sync() -> (Fixture, std::path::PathBuf) {
    let f = Fixture::start_with(6_000, |c| c.latency = Duration::from_millis(5));
    let config = f.config(&ConfigSpec {
        sync: vec!["page_size = 100".into(), "partitions = 1".into()],
        ..Default::default()
    });
    (f, config)
}

/// A stop is a temporary failure: exit code 75 (EX_TEMPFAIL), and a report
/// that says so.
fn ended_as_stopped(child: Child) {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("incomplete: stopped by a signal"),
        "{stdout}\n{stderr}"
    );
}

/// Every stream's export is exactly the emulator's records (each once).
fn stores_the_emulators_records(f: &Fixture, config: &Path) {
    for stream in STREAMS {
        let got = f.export(config, stream, false);
        let want = expected_records(f.state(), stream);
        assert_eq!(got.len(), want.len(), "{stream}: record count");
        assert!(got == want, "{stream}: records differ");
    }
}

/// The statuses of the connection's last `count` runs, newest first
/// (`status --json`).
fn statuses_of_the_last_runs(f: &Fixture, config: &Path, count: usize) -> Vec<String> {
    let count = count.to_string();
    let args = [
        "status",
        "--config",
        config.to_str().unwrap(),
        "--runs",
        &count,
        "--json",
    ];
    let status: Value = serde_json::from_str(&f.cli(&args).ok()).unwrap();
    status["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sigterm_finishes_the_pages_in_flight_and_the_next_sync_resumes() {
    let (f, config) = a_long_sync();
    // The yardstick: one uninterrupted sync of the same data.
    finish(spawn_sync(&f, &config));
    let uninterrupted = f.state().request_count();
    remove_database(&f);

    let child = spawn_sync(&f, &config);
    assert!(f.state().wait_for_requests(uninterrupted + 10, PATIENCE) >= uninterrupted + 10);
    connector_e2e::sigterm(&child);
    ended_as_stopped(child);
    let requests_at_stop = f.state().request_count();
    let (_, stored) = inspect(&f);
    assert!(stored > 0);

    // The next sync resumes after the committed pages: it completes and reads
    // only what the first did not.
    let out = finish(spawn_sync(&f, &config));
    assert!(out.contains("(resumed)"), "{out}");
    let first = requests_at_stop - uninterrupted;
    let resumed = f.state().request_count() - requests_at_stop;
    // Nothing the first run committed is read again, and the pages it had in
    // flight were committed, not lost. Only a stream the first run completed
    // is read again, incrementally: its changed rows and its deletion audit.
    assert!(resumed < uninterrupted - 5, "{resumed} requests to resume");
    assert!(
        first + resumed <= uninterrupted + 2 * STREAMS.len(),
        "{first} + {resumed} requests against {uninterrupted} uninterrupted"
    );
    stores_the_emulators_records(&f, &config);
}

#[test]
fn sigterm_while_another_process_holds_the_write_lock_stops_and_the_next_sync_completes() {
    // A `sqlite3` shell with a write transaction open, or another host's
    // long write: every write of the sync waits for the lock. SQLite's own
    // busy handler slept through the stop's cancel until its 30 s were up,
    // then as long again for each write after it (the run's end among them).
    let (f, config) = a_long_sync();
    let mut child = spawn_sync(&f, &config);
    // Every stream planned and being read.
    let tables = [
        "cmdb_ci_computer",
        "cmdb_ci_network_adapter",
        "cmdb_ci_business_app",
    ];
    let mut answered = 0;
    while !tables.iter().all(|table| {
        let requests = f.state().requests();
        requests.iter().any(|r| r.path.contains(table))
    }) {
        let next = f.state().wait_for_requests(answered + 1, PATIENCE);
        assert!(
            next > answered,
            "the sync stopped before reading every stream"
        );
        answered = next;
    }
    let holder = rusqlite::Connection::open(f.dir.path().join("inventory.db")).unwrap();
    holder.busy_timeout(PATIENCE).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    connector_e2e::sigterm(&child);
    // A deadline for the test, not a measurement: a commit that waited for
    // the lock through the cancel held the stop for 30 s.
    let stopped = connector_e2e::exit_within(&mut child, Duration::from_secs(25));
    assert!(
        stopped.is_some(),
        "the stop waited for the other process's write lock"
    );
    ended_as_stopped(child);
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    let (integrity, _) = inspect(&f);
    assert_eq!(integrity, "ok");

    let out = finish(spawn_sync(&f, &config));
    assert!(out.contains("(resumed)"), "{out}");
    stores_the_emulators_records(&f, &config);
}

#[test]
fn debug_logs_carry_no_secret() {
    use base64::Engine as _;
    let f = Fixture::start(40);
    let config = f.default_config();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("svc_exposure:{}", f.password));
    let run = |env: &std::collections::HashMap<String, String>| {
        Command::new(env!("CARGO_BIN_EXE_e2e-host"))
            .args(["sync", "--config", config.to_str().unwrap()])
            .envs(env)
            .env("CONNECTOR_HOST_LOG", "debug")
            .stdin(Stdio::null())
            .output()
            .expect("the host binary runs")
    };
    let good = run(&f.env);
    let mut wrong = f.env.clone();
    wrong.insert(
        connector_e2e::PASSWORD_VAR.into(),
        "wr0ng-s3cret-value".into(),
    );
    let refused = run(&wrong);
    assert!(good.status.success() && !refused.status.success());
    for out in [&good, &refused] {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The control: debug logging is on and shows the requests.
        assert!(
            text.contains("DEBUG") && text.contains("/api/now/table/"),
            "{text}"
        );
        for secret in [f.password.as_str(), basic.as_str(), "wr0ng-s3cret-value"] {
            assert!(!text.contains(secret), "`{secret}` leaked into the output");
        }
    }
}

#[test]
fn sigint_ends_a_command_that_has_no_clean_stop_at_once() {
    let f = Fixture::start(1);
    // A server that accepts the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // With SIGINT caught, `check` would end only when this time-out expires,
    // exiting 1. It is long enough that a loaded machine's delay between the
    // accept below and the signal cannot reach it (5 s once did, in CI).
    let config = f.config(&ConfigSpec {
        instance: Some(format!("http://{}", silent.local_addr().unwrap())),
        limits: vec!["request_timeout_seconds = 60".into()],
        ..Default::default()
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_e2e-host"))
        .args(["check", "--config", config.to_str().unwrap()])
        .envs(&f.env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the host binary starts");
    // `check` is waiting for the answer once its request's connection is accepted.
    let _connection = silent.accept().unwrap();
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(2), "{status}");
}

/// Runs the host binary with `args`, the fixture's environment and `log` as
/// `CONNECTOR_HOST_LOG` (none: the default level); stdout and stderr piped.
fn run_host(f: &Fixture, args: &[&str], log: Option<&str>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_e2e-host"));
    command.args(args).envs(&f.env).stdin(Stdio::null());
    match log {
        Some(level) => command.env("CONNECTOR_HOST_LOG", level),
        None => command.env_remove("CONNECTOR_HOST_LOG"),
    };
    command.output().expect("the host binary runs")
}

#[test]
fn failed_connections_leave_stderr_to_the_error_paragraph() {
    use servicenow_emulator::{Fault, FaultRule};
    let f = Fixture::start_tls(40);
    let config = f.tls_config();
    let config = config.to_str().unwrap();
    // A connection dropped in the middle of a body, over TLS (no
    // `close_notify`): retried, and reported in the run report only. Each
    // request on a connection of its own, so that the break reaches the
    // component (`close_connections`).
    f.state()
        .close_connections
        .store(true, std::sync::atomic::Ordering::Relaxed);
    f.state()
        .inject(FaultRule::next(Fault::ConnectionReset, 1).on_path("cmdb_ci_computer"));
    let sync = run_host(&f, &["sync", "--config", config], None);
    let stdout = String::from_utf8_lossy(&sync.stdout);
    assert!(sync.status.success(), "{stdout}");
    assert_eq!(f.state().pending_faults(), 0, "the fault was served");
    assert_eq!(String::from_utf8_lossy(&sync.stderr), "", "sync's stderr");
    // An instance that refuses connections: one paragraph, nothing before it.
    let refused = f.config(&ConfigSpec {
        file: "refused.toml".into(),
        instance: Some("http://127.0.0.1:1".into()),
        ..Default::default()
    });
    let check = run_host(&f, &["check", "--config", refused.to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("Could not connect to `127.0.0.1:1`"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // With debug logging asked for, the dropped connection is logged with
    // the code the component got, and stderr, not a terminal, gets no
    // colour codes.
    f.state()
        .inject(FaultRule::next(Fault::ConnectionReset, 1).on_path("cmdb_ci_computer"));
    let logged = run_host(&f, &["sync", "--full", "--config", config], Some("debug"));
    let log = String::from_utf8_lossy(&logged.stderr);
    assert!(logged.status.success(), "{log}");
    assert!(
        log.contains("the connection failed during a response")
            && log.contains("HttpResponseIncomplete"),
        "{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is not a terminal"
    );
}

#[test]
fn a_second_sync_of_a_connection_refuses_while_the_first_runs_and_sends_nothing() {
    let f = Fixture::start(200);
    let config = f.default_config();
    a_second_sync_refuses_while_the_first_runs(&f, &config, &f.env);
}

/// Starts a sync of `config` whose first requests the emulator holds, and
/// checks that a second sync of the same connection meanwhile exits 75 and
/// sends nothing; then that, once the first ended, the next one runs.
pub(crate) fn a_second_sync_refuses_while_the_first_runs(
    f: &Fixture,
    config: &Path,
    env: &std::collections::HashMap<String, String>,
) {
    use servicenow_emulator::{Fault, FaultRule};
    // The first sync's first request waits in the emulator. It is the only
    // one in flight: the others wait until a first answer shows the
    // credential accepted. (Holding three, one per stream, held retries of
    // that request until the component's 120 s first-byte time-outs had
    // used the three up: 240 s.)
    f.state().inject(FaultRule::next(Fault::Held, 1));
    let first = spawn_sync_with(config, env);
    let started = std::time::Instant::now();
    while f.state().pending_faults() > 0 {
        assert!(started.elapsed() < PATIENCE, "the first sync never asked");
        std::thread::sleep(Duration::from_millis(20));
    }
    let requests = f.state().requests().len();
    let sync = |args: &[&str]| f.cli_with_env(args, env);
    let (code, message) = sync(&["sync", "--config", config.to_str().unwrap()]).err();
    assert_eq!(code, 75, "{message}");
    assert!(
        message.contains("another sync of") && message.contains("did nothing"),
        "{message}"
    );
    assert_eq!(
        f.state().requests().len(),
        requests,
        "the second sync sent nothing"
    );
    f.state().release_held();
    finish(first);
    // Once the first ended, the next sync runs.
    sync(&["sync", "--config", config.to_str().unwrap()]).ok();
    for stream in STREAMS {
        let exported =
            connector_e2e::json_lines(&sync(&connector_e2e::export_args(config, stream, &[])).ok());
        assert_eq!(exported, expected_records(f.state(), stream), "{stream}");
    }
}

#[test]
fn export_to_a_reader_that_closes_stdout_early_is_one_line_and_exit_1() {
    let f = Fixture::start(700);
    let config = f.default_config();
    f.sync(&config).ok();
    let child = Command::new(env!("CARGO_BIN_EXE_e2e-host"))
        .args(["export", "--config", config.to_str().unwrap()])
        .args(["--stream", "devices"])
        .envs(&f.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the host binary starts");
    // The 700 devices (about 330 KB) do not fit in the pipe.
    connector_e2e::assert_stdout_closed_early_is_one_line(child);
}

#[test]
fn export_to_a_full_disk_is_exit_1_saying_so_not_a_configuration_problem() {
    let f = Fixture::start(50);
    let config = f.default_config();
    f.sync(&config).ok();
    // Linux's /dev/full refuses every write with ENOSPC, as a full disk does.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = Command::new(env!("CARGO_BIN_EXE_e2e-host"))
        .args(["export", "--config", config.to_str().unwrap()])
        .args(["--stream", "devices"])
        .envs(&f.env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .output()
        .expect("the host binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: writing the records to stdout failed (No space left on device"),
        "{stderr}"
    );
}
