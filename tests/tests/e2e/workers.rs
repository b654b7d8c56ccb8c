//! Workers sharing syncs through PostgreSQL: `connector-host worker`
//! processes against the emulator and a database of the throw-away cluster
//! `tests/run-all.sh` starts, killed, paused and rate-limited, judged by
//! what the database holds against the emulator's records.
//!
//! Ignored by a plain `cargo test` (they need the cluster);
//! `tests/run-all.sh` runs them with `--ignored`.

use connector_e2e::postgres::{DatabaseGate, TestDatabase};
use connector_e2e::{expected_records, json_lines, ConfigSpec, Fixture, KillOnDrop};
use rand::Rng as _;
use servicenow_emulator::{Fault, FaultRule, RateRule};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use connector_e2e::postgres::DATABASE_PASSWORD_VAR as PASSWORD_VAR;
const STREAMS: [&str; 3] = ["business_applications", "devices", "network_adapters"];
/// Longest a test waits for a worker to finish its work.
const DEADLINE: Duration = Duration::from_secs(180);

/// The deployment's directory of connection files: `count` connections
/// (`conn-1`…) of the emulator, stored in `db`, with `sync` lines.
fn deployment(f: &Fixture, db: &TestDatabase, count: usize, sync: &[&str]) -> PathBuf {
    deployment_at(f, &db.url, count, sync)
}

/// [`deployment`] with the database at `url`.
fn deployment_at(f: &Fixture, url: &str, count: usize, sync: &[&str]) -> PathBuf {
    let dir = f.dir.path().join("deployment");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 1..=count {
        let mut lines: Vec<String> = sync.iter().map(|l| l.to_string()).collect();
        lines.push("retry_base_ms = 10".into());
        lines.push("retry_max_ms = 50".into());
        f.config(&ConfigSpec {
            file: format!("deployment/conn-{i}.toml"),
            database: Some(format!(
                "name = \"conn-{i}\"\ndatabase = \"{url}?sslmode=disable\"\ndatabase_password_env = \"{PASSWORD_VAR}\"",
            )),
            sync: lines,
            ..ConfigSpec::default()
        });
    }
    dir
}

/// A worker process over `dir`, `--once`, its output kept in files.
/// Starts `worker --once` as `id`, with `more` arguments; its output goes
/// to files ([`output_of`]).
fn spawn_worker(
    f: &Fixture,
    env: &HashMap<String, String>,
    dir: &Path,
    id: &str,
    more: &[&str],
) -> KillOnDrop {
    spawn_worker_with(f, env, dir, id, &[&["--once"], more].concat())
}

/// Starts `worker` as `id` with `arguments` (none: it serves until stopped).
fn spawn_worker_with(
    f: &Fixture,
    env: &HashMap<String, String>,
    dir: &Path,
    id: &str,
    arguments: &[&str],
) -> KillOnDrop {
    let log =
        |what: &str| std::fs::File::create(f.dir.path().join(format!("{id}.{what}"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_e2e-host"))
        .args(["worker", "--id", id])
        .args(arguments)
        .arg("--config-dir")
        .arg(dir)
        .env("CONNECTOR_HOST_LOG", "warn")
        .envs(env)
        .stdout(Stdio::from(log("out")))
        .stderr(Stdio::from(log("err")))
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

/// What a worker wrote: (stdout, stderr).
fn output_of(f: &Fixture, id: &str) -> (String, String) {
    let read = |what: &str| {
        std::fs::read_to_string(f.dir.path().join(format!("{id}.{what}"))).unwrap_or_default()
    };
    (read("out"), read("err"))
}

/// Waits (at most [`DEADLINE`]) for `worker` to exit; asserts it exited 0.
fn exits_cleanly(f: &Fixture, worker: &mut KillOnDrop, id: &str) -> String {
    let Some(status) = connector_e2e::exit_within(worker, DEADLINE) else {
        panic!("worker {id} did not finish: {:?}", output_of(f, id));
    };
    let (out, err) = output_of(f, id);
    assert!(status.success(), "worker {id}: {status}\n{out}\n{err}");
    out
}

/// Waits (at most [`DEADLINE`]) until worker `id` wrote `text` on stdout
/// `count` times, asserting meanwhile that it has not exited.
fn wait_for_output(f: &Fixture, worker: &mut KillOnDrop, id: &str, text: &str, count: usize) {
    let started = Instant::now();
    while output_of(f, id).0.matches(text).count() < count {
        assert!(
            worker.try_wait().unwrap().is_none(),
            "worker {id} exited: {:?}",
            output_of(f, id)
        );
        assert!(started.elapsed() < DEADLINE, "{:?}", output_of(f, id));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` (`KILL`, `STOP`, `CONT`) to `worker`.
fn signal(worker: &KillOnDrop, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal}");
}

/// Waits (at most [`DEADLINE`]) until the emulator holds worker `id`'s
/// request (the scripted [`Fault::Held`] was taken).
fn wait_until_held(f: &Fixture, id: &str) {
    let started = Instant::now();
    while f.state().pending_faults() > 0 {
        assert!(started.elapsed() < DEADLINE, "{:?}", output_of(f, id));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most [`DEADLINE`]) until `db` holds `count` devices.
fn wait_for_devices_committed(db: &TestDatabase, count: i64) {
    let mut client = db.client();
    let started = Instant::now();
    loop {
        let stored: i64 = client
            .query_one(
                "SELECT count(*) FROM records r JOIN stream_ids s ON s.id = r.stream_id
                 WHERE s.stream = 'devices'",
                &[],
            )
            .unwrap()
            .get(0);
        if stored >= count {
            return;
        }
        assert!(started.elapsed() < DEADLINE, "{stored} devices committed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts every stream of every connection holds exactly the emulator's
/// records (each once), and that the connection is healthy.
fn holds_exactly_the_source(f: &Fixture, env: &HashMap<String, String>, dir: &Path, count: usize) {
    for i in 1..=count {
        let config = dir.join(format!("conn-{i}.toml"));
        for stream in STREAMS {
            let args = connector_e2e::export_args(&config, stream, &[]);
            let exported = json_lines(&f.cli_with_env(&args, env).ok());
            let expected = expected_records(f.state(), stream);
            assert_eq!(
                exported.len(),
                expected.len(),
                "conn-{i} {stream}: records stored against the source's"
            );
            assert!(
                exported == expected,
                "conn-{i} {stream}: the records differ"
            );
        }
        let status = f
            .cli_with_env(&["status", "--config", config.to_str().unwrap()], env)
            .ok();
        assert!(
            status.starts_with(&format!("conn-{i}: connected")),
            "{status}"
        );
    }
}

/// Asserts each connection's last run reports as many records written as
/// its streams hold: the parts of workers killed mid-run included, and
/// no page counted twice.
fn reports_every_stored_record_once(
    f: &Fixture,
    env: &HashMap<String, String>,
    dir: &Path,
    count: usize,
) {
    let stored: usize = STREAMS
        .iter()
        .map(|stream| expected_records(f.state(), stream).len())
        .sum();
    for i in 1..=count {
        let config = dir.join(format!("conn-{i}.toml"));
        let args = ["status", "--config", config.to_str().unwrap(), "--json"];
        let status: serde_json::Value =
            serde_json::from_str(&f.cli_with_env(&args, env).ok()).unwrap();
        let streams = status["runs"][0]["report"]["streams"].as_array().unwrap();
        let reported: u64 = streams
            .iter()
            .flat_map(|s| s["partitions"].as_array().unwrap())
            .map(|p| p["records"].as_u64().unwrap())
            .sum();
        assert_eq!(
            reported, stored as u64,
            "conn-{i}: records the run reports against the records stored"
        );
    }
}

/// Waits (at most [`DEADLINE`]) until a backend of `application` waits on a
/// lock: its commit is open, blocked in the middle.
pub(crate) fn wait_until_blocked_in_a_commit(db: &TestDatabase, application: &str) {
    wait_for_sessions(
        db,
        Sessions {
            application,
            only_waiting_on_a_lock: true,
        },
        DEADLINE,
        |count| count > 0,
        &format!("{application} never reached a commit"),
    );
}

/// Which of `db`'s backends [`wait_for_sessions`] counts.
pub(crate) struct Sessions<'a> {
    /// Their `application_name`.
    pub application: &'a str,
    /// Only those waiting on a lock (`wait_event_type = 'Lock'`).
    pub only_waiting_on_a_lock: bool,
}

/// Looks every 20 ms at how many of `db`'s backends `which` names until
/// `done` holds of that count; fails with `never` after `deadline`.
pub(crate) fn wait_for_sessions(
    db: &TestDatabase,
    which: Sessions<'_>,
    deadline: Duration,
    done: impl Fn(i64) -> bool,
    never: &str,
) {
    let mut client = db.client();
    let started = Instant::now();
    loop {
        let count: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = $1
                   AND (NOT $2 OR wait_event_type = 'Lock')",
                &[&which.application, &which.only_waiting_on_a_lock],
            )
            .unwrap()
            .get(0);
        if done(count) {
            return;
        }
        assert!(started.elapsed() < deadline, "{never}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn three_workers_lose_one_mid_sync_and_one_mid_commit_and_every_record_is_stored_once() {
    const CONNECTIONS: usize = 6;
    let f = Fixture::start(1200);
    let sync = ["page_size = 100", "partitions = 2", "lease_seconds = 2"];
    // An uninterrupted run of the same deployment, by one worker: the
    // requests it takes.
    let baseline_db = TestDatabase::create();
    let env = baseline_db.environment(&f);
    let dir = deployment(&f, &baseline_db, CONNECTIONS, &sync);
    let mut alone = spawn_worker(&f, &env, &dir, "alone", &[]);
    exits_cleanly(&f, &mut alone, "alone");
    let uninterrupted = f.state().request_count();
    std::fs::remove_dir_all(&dir).unwrap();

    let db = TestDatabase::create();
    let env = db.environment(&f);
    let dir = deployment(&f, &db, CONNECTIONS, &sync);
    let mut rng = rand::rng();
    let workers: Vec<KillOnDrop> = ["a", "b", "c"]
        .iter()
        .map(|id| spawn_worker(&f, &env, &dir, id, &["--slots", "2"]))
        .collect();
    let [a, b, mut c] = <[KillOnDrop; 3]>::try_from(workers).unwrap();
    // A dies in the middle of the sync, after a random share of its requests.
    let kill_a = uninterrupted + rng.random_range(uninterrupted / 8..uninterrupted / 4);
    f.state().wait_for_requests(kill_a, DEADLINE);
    signal(&a, "KILL");
    // B dies in the middle of a commit: every commit waits for the test's
    // lock on the records, and B is killed once one of its own is blocked
    // inside its transaction (after a random share of the requests).
    let kill_b = kill_a + rng.random_range(uninterrupted / 8..uninterrupted / 4);
    f.state().wait_for_requests(kill_b, DEADLINE);
    db.with_records_locked(|| {
        wait_until_blocked_in_a_commit(&db, "connector-host worker b");
        signal(&b, "KILL");
    });
    // C takes over the partitions A and B held once their leases expire,
    // and ends every run.
    let out = exits_cleanly(&f, &mut c, "c");
    assert!(out.contains("ended: complete"), "{out}");
    holds_exactly_the_source(&f, &env, &dir, CONNECTIONS);
    reports_every_stored_record_once(&f, &env, &dir, CONNECTIONS);
    let interrupted = f.state().request_count() - uninterrupted;
    eprintln!("requests: {interrupted} with two workers killed, {uninterrupted} uninterrupted");
    assert!(
        interrupted as f64 <= 1.3 * uninterrupted as f64,
        "{interrupted} requests with two workers killed, {uninterrupted} uninterrupted"
    );
}

/// Worker A reading a deployment of one connection (300 devices, pages
/// of 50, one partition, leases of 2 s), its third page of devices held
/// in the emulator until released; with the emulator, the database, the
/// workers' environment and the deployment's directory.
fn worker_a_held_at_its_third_page() -> (
    Fixture,
    TestDatabase,
    HashMap<String, String>,
    PathBuf,
    KillOnDrop,
) {
    let f = Fixture::start(300);
    let db = TestDatabase::create();
    let env = db.environment(&f);
    let sync = ["page_size = 50", "partitions = 1", "lease_seconds = 2"];
    let dir = deployment(&f, &db, 1, &sync);
    f.state().inject(
        FaultRule::next(Fault::Held, 1)
            .on_path("cmdb_ci_computer")
            .after(2),
    );
    let a = spawn_worker(&f, &env, &dir, "a", &["--slots", "1"]);
    wait_until_held(&f, "a");
    (f, db, env, dir, a)
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_worker_paused_past_its_lease_cannot_commit_afterwards() {
    let (f, db, env, dir, mut a) = worker_a_held_at_its_third_page();
    // A asks for its third page while its second commits: A is paused
    // once that commit is done, outside a page's transaction (inside one,
    // see `a_worker_frozen_inside_a_commit_loses_its_partition_once_its_lease_ends`).
    wait_for_devices_committed(&db, 100);
    // Paused with the request in flight, A cannot renew its lease; B takes
    // the partition over from A's last committed page and ends the run.
    signal(&a, "STOP");
    let mut b = spawn_worker(&f, &env, &dir, "b", &[]);
    exits_cleanly(&f, &mut b, "b");
    holds_exactly_the_source(&f, &env, &dir, 1);
    let before = expected_records(f.state(), "devices");
    // The source changes; A's held page will carry the change.
    f.state().with_db_mut(|db| {
        let table = db.tables.get_mut("cmdb_ci_computer").unwrap();
        let ids: Vec<String> = table.rows().iter().map(|r| r.key().to_string()).collect();
        for id in ids {
            assert!(table.set(&id, "name", &format!("late-{id}")));
        }
    });
    f.state().release_held();
    signal(&a, "CONT");
    let (_, err) = (exits_cleanly(&f, &mut a, "a"), output_of(&f, "a").1);
    assert!(
        err.contains("nothing of the page was written")
            || err.contains("no page of it is written any more"),
        "{err}"
    );
    let config = dir.join("conn-1.toml");
    let args = connector_e2e::export_args(&config, "devices", &[]);
    let stored = json_lines(&f.cli_with_env(&args, &env).ok());
    assert!(
        stored == before,
        "a page of the paused worker was written after it lost its lease"
    );
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_worker_frozen_inside_a_commit_loses_its_partition_once_its_lease_ends() {
    let (f, db, env, dir, mut a) = worker_a_held_at_its_third_page();
    // A's next commit waits for the test's lock on the records; A is
    // frozen there, then the lock goes: A's session sits idle inside the
    // page's transaction, holding the partition's row locked.
    db.with_records_locked(|| {
        f.state().release_held();
        wait_until_blocked_in_a_commit(&db, "connector-host worker a");
        signal(&a, "STOP");
    });
    // No claim takes a locked row; once A's lease is over, the server ends
    // A's idle transaction and B takes the partition over.
    let mut b = spawn_worker(&f, &env, &dir, "b", &[]);
    let Some(status) = connector_e2e::exit_within(&mut b, DEADLINE) else {
        panic!(
            "worker b did not finish: the frozen worker kept its partition locked ({:?})",
            output_of(&f, "b")
        );
    };
    assert!(
        status.success(),
        "worker b: {status} {:?}",
        output_of(&f, "b")
    );
    holds_exactly_the_source(&f, &env, &dir, 1);
    reports_every_stored_record_once(&f, &env, &dir, 1);
    // A wakes to a session that is gone; it writes nothing more.
    signal(&a, "CONT");
    exits_cleanly(&f, &mut a, "a");
    let err = output_of(&f, "a").1;
    assert!(
        err.contains("nothing of the page was written")
            || err.contains("no page of it is written any more"),
        "{err}"
    );
    holds_exactly_the_source(&f, &env, &dir, 1);
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn two_workers_on_a_rate_limited_connection_stay_within_its_window() {
    let f = Fixture::start(600);
    f.state().add_rate_rule(RateRule {
        sys_id: "rate-rule-1".into(),
        user: Some("svc_exposure".into()),
        limit: 8,
    });
    f.state().set_rate_window(Duration::from_secs(2));
    let db = TestDatabase::create();
    let env = db.environment(&f);
    let sync = ["page_size = 100", "partitions = 2", "lease_seconds = 5"];
    let dir = deployment(&f, &db, 1, &sync);
    let mut workers = [
        spawn_worker(&f, &env, &dir, "a", &["--slots", "2"]),
        spawn_worker(&f, &env, &dir, "b", &["--slots", "2"]),
    ];
    for (worker, id) in workers.iter_mut().zip(["a", "b"]) {
        exits_cleanly(&f, worker, id);
    }
    holds_exactly_the_source(&f, &env, &dir, 1);
    let requests = f.state().requests();
    let refused = requests.iter().filter(|r| r.status == 429).count();
    assert_eq!(
        refused,
        0,
        "the source refused {refused} of {} requests: the workers spent its window twice",
        requests.len()
    );
    // Both workers did read the connection.
    let (a, b) = (output_of(&f, "a").0, output_of(&f, "b").0);
    assert!(
        a.contains("partition(s)") && b.contains("partition(s)"),
        "{a}\n{b}"
    );
    assert!(
        !a.contains("read 0 partition(s)") && !b.contains("read 0 partition(s)"),
        "{a}\n{b}"
    );
}

#[test]
fn a_worker_refuses_an_empty_directory_and_a_sqlite_connection() {
    let f = Fixture::start(5);
    let dir = f.dir.path().join("deployment");
    std::fs::create_dir_all(&dir).unwrap();
    let args = ["worker", "--once", "--config-dir", dir.to_str().unwrap()];
    let (code, message) = f.cli(&args).err();
    assert_eq!(code, 2, "{message}");
    assert!(message.contains("holds no connection file"), "{message}");
    f.config(&ConfigSpec {
        file: "deployment/local.toml".into(),
        ..ConfigSpec::default()
    });
    let (code, message) = f.cli(&args).err();
    assert_eq!(code, 2, "{message}");
    assert!(
        message.contains("local.toml")
            && message.contains("workers share their work through PostgreSQL")
            && message.contains("postgresql://"),
        "{message}"
    );
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn sigterm_gives_the_leases_up_at_once_and_a_broken_file_does_not_stop_the_others() {
    let f = Fixture::start(300);
    let db = TestDatabase::create();
    let env = db.environment(&f);
    let sync = ["page_size = 50", "partitions = 1", "lease_seconds = 600"];
    let dir = deployment(&f, &db, 1, &sync);
    f.config(&ConfigSpec {
        file: "deployment/local.toml".into(),
        ..ConfigSpec::default()
    });
    f.state().inject(
        FaultRule::next(Fault::Held, 1)
            .on_path("cmdb_ci_computer")
            .after(1),
    );
    let mut a = spawn_worker(&f, &env, &dir, "a", &["--slots", "1"]);
    wait_until_held(&f, "a");
    // Stopped with a page in flight: A commits it, gives its lease up and
    // exits; B need not wait the ten minutes of the lease.
    signal(&a, "TERM");
    f.state().release_held();
    let out = exits_cleanly(&f, &mut a, "a");
    assert!(
        out.contains("not serving") && out.contains("local.toml") && out.contains("PostgreSQL"),
        "{out}"
    );
    let held: i64 = db
        .client()
        .query_one(
            "SELECT COUNT(*) FROM partitions WHERE lease_token IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(held, 0, "worker a kept a lease after SIGTERM");
    // The run A started goes on: `sync`, which takes no leases, waits its turn.
    let config = dir.join("conn-1.toml");
    let (code, message) = f
        .cli_with_env(&["sync", "--config", config.to_str().unwrap()], &env)
        .err();
    assert_eq!(code, 75, "{message}");
    assert!(
        message.contains("workers are running a sync of conn-1"),
        "{message}"
    );
    let mut b = spawn_worker(&f, &env, &dir, "b", &[]);
    let out = exits_cleanly(&f, &mut b, "b");
    assert!(out.contains("ended: complete"), "{out}");
    holds_exactly_the_source(&f, &env, &dir, 1);
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn sigterm_stops_a_worker_waiting_for_the_next_run() {
    let f = Fixture::start(50);
    let db = TestDatabase::create();
    let env = db.environment(&f);
    let dir = deployment(&f, &db, 1, &[]);
    let mut debug = env.clone();
    debug.insert("CONNECTOR_HOST_LOG".into(), "debug".into());
    let mut a = spawn_worker_with(&f, &debug, &dir, "a", &[]);
    // Its run ended and the next is six hours away: the worker waits, and
    // looks for work again each time the wait ends. Once it has looked
    // twice since the run ended, it is waiting idle (but for the moments
    // of a look, which the stop could also meet).
    let looks_since_the_run = || {
        let (out, err) = output_of(&f, "a");
        let looks = |text: &str| text.matches("FROM deployment_runs").count();
        out.contains("ended: complete").then(|| looks(&err))
    };
    let started = Instant::now();
    let ended = loop {
        if let Some(looks) = looks_since_the_run() {
            break looks;
        }
        assert!(started.elapsed() < DEADLINE, "{:?}", output_of(&f, "a"));
        std::thread::sleep(Duration::from_millis(20));
    };
    while looks_since_the_run().unwrap_or_default() < ended + 2 {
        assert!(started.elapsed() < DEADLINE, "{:?}", output_of(&f, "a"));
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&a, "TERM");
    let out = exits_cleanly(&f, &mut a, "a");
    assert!(out.contains("worker a stopped"), "{out}");
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn sigterm_stops_a_worker_whose_commit_waits_on_a_lock() {
    let f = Fixture::start(50);
    let db = TestDatabase::create();
    let env = db.environment(&f);
    let dir = deployment(&f, &db, 1, &[]);
    super::postgres::create_the_schema(&db);
    let out = db.with_records_locked(|| {
        let mut a = spawn_worker_with(&f, &env, &dir, "a", &[]);
        wait_until_blocked_in_a_commit(&db, "connector-host worker a");
        signal(&a, "TERM");
        // The lock is still held: the stop cancels the commit.
        exits_cleanly(&f, &mut a, "a")
    });
    assert!(out.contains("worker a stopped"), "{out}");
}

#[test]
fn sigterm_stops_a_worker_whose_database_never_answers() {
    // A connection pooler whose server is down: the connection is accepted,
    // and nothing comes. The open would give up after 600 s.
    let f = Fixture::start(10);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = f.dir.path().join("silent-deployment");
    std::fs::create_dir(&dir).unwrap();
    f.config(&ConfigSpec {
        file: "silent-deployment/cmdb.toml".into(),
        database: Some(format!(
            "database = \"postgresql://connector@{}/db?sslmode=disable&connect_timeout=300\"",
            silent.local_addr().unwrap()
        )),
        ..ConfigSpec::default()
    });
    let mut env = f.env.clone();
    env.insert("PGPASSWORD".into(), "unused".into());
    let mut a = spawn_worker_with(&f, &env, &dir, "a", &[]);
    let _held = silent.accept().unwrap();
    signal(&a, "TERM");
    let out = exits_cleanly(&f, &mut a, "a");
    assert!(!out.contains("waiting to serve"), "{out}");
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_worker_carries_on_after_the_database_ends_its_sessions() {
    // What a restart or a fail-over of the database does to a worker: the
    // server ends every session (FATAL 57P01), and the worker's next
    // statement finds its connection closed.
    let f = Fixture::start(50);
    let db = TestDatabase::create();
    let env = db.environment(&f);
    let dir = deployment(&f, &db, 1, &[]);
    let mut a = spawn_worker_with(&f, &env, &dir, "a", &["--every", "1s"]);
    wait_for_output(&f, &mut a, "a", "ended: complete", 1);
    let ended = db.end_sessions_of("connector-host worker a");
    assert!(ended >= 1, "no session of the worker to end");
    // A run that started after the sessions ended completes.
    let before = output_of(&f, "a").0.matches("ended: complete").count();
    wait_for_output(&f, &mut a, "a", "ended: complete", before + 2);
    signal(&a, "TERM");
    let out = exits_cleanly(&f, &mut a, "a");
    assert!(out.contains("worker a stopped"), "{out}");
    holds_exactly_the_source(&f, &env, &dir, 1);
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_worker_started_before_its_database_waits_for_it() {
    // A deployment whose workers start with the database (a compose file,
    // a pod): the server is not accepting connections yet.
    let f = Fixture::start(50);
    let db = TestDatabase::create();
    let gate = DatabaseGate::closed_before(&db);
    let env = db.environment(&f);
    let dir = deployment_at(&f, &gate.url(&db), 1, &[]);
    // `--once` has no later: it exits 75, for cron to run it again.
    let mut once = spawn_worker(&f, &env, &dir, "once", &[]);
    let status = once.wait().unwrap();
    assert_eq!(status.code(), Some(75), "{:?}", output_of(&f, "once"));
    // A serving worker waits, and serves once the server answers.
    let mut a = spawn_worker_with(&f, &env, &dir, "a", &["--every", "1s"]);
    wait_for_output(
        &f,
        &mut a,
        "a",
        "waiting to serve: cannot open the database",
        1,
    );
    gate.open();
    wait_for_output(&f, &mut a, "a", "ended: complete", 1);
    signal(&a, "TERM");
    let out = exits_cleanly(&f, &mut a, "a");
    assert!(out.contains("worker a serves 1 connection(s)"), "{out}");
    holds_exactly_the_source(&f, &env, &dir, 1);
}
