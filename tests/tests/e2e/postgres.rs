//! PostgreSQL as the store: `sync`, `status` and `export` against a
//! database of the throw-away cluster `tests/run-all.sh` starts, judged
//! against the same commands on SQLite and against the emulator.
//!
//! Ignored by a plain `cargo test` (they need the cluster);
//! `tests/run-all.sh` runs them with `--ignored`.

use connector_e2e::postgres::{DatabaseGate, TestDatabase};
use connector_e2e::{ConfigSpec, Fixture};
use connector_engine::store::deployment::RunStream;
use connector_engine::store::{PostgresTarget, Store, StreamRequest};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use connector_e2e::postgres::DATABASE_PASSWORD_VAR as PASSWORD_VAR;

/// A configuration whose records go to `db`, its password in [`PASSWORD_VAR`].
fn postgres_config(f: &Fixture, db: &TestDatabase) -> std::path::PathBuf {
    postgres_config_at(f, "postgres.toml", &db.url)
}

/// The configuration `file` whose records go to the database at `url`,
/// its password in [`PASSWORD_VAR`].
fn postgres_config_at(f: &Fixture, file: &str, url: &str) -> std::path::PathBuf {
    f.config(&ConfigSpec {
        file: file.into(),
        database: Some(format!(
            "database = \"{url}?sslmode=disable\"\ndatabase_password_env = \"{PASSWORD_VAR}\""
        )),
        ..ConfigSpec::default()
    })
}

fn export(
    f: &Fixture,
    env: &std::collections::HashMap<String, String>,
    config: &Path,
    stream: &str,
    nested: bool,
) -> String {
    let nested: &[&str] = if nested { &["--nested"] } else { &[] };
    f.cli_with_env(&connector_e2e::export_args(config, stream, nested), env)
        .ok()
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn sync_status_and_export_on_postgresql_match_sqlite_and_the_source() {
    let f = Fixture::start(2500);
    let db = TestDatabase::create();
    let sqlite = f.default_config();
    let postgres = postgres_config(&f, &db);
    let env = db.environment(&f);
    f.sync(&sqlite).ok();
    let synced = f
        .cli_with_env(&["sync", "--config", postgres.to_str().unwrap()], &env)
        .ok();
    assert!(synced.contains(&db.url), "{synced}");
    // Again: an incremental read, as on SQLite.
    let again = f
        .cli_with_env(&["sync", "--config", postgres.to_str().unwrap()], &env)
        .ok();
    assert!(again.contains("incremental"), "{again}");
    for stream in ["devices", "network_adapters", "business_applications"] {
        let on_postgres = export(&f, &env, &postgres, stream, false);
        assert_eq!(
            on_postgres,
            export(&f, &env, &sqlite, stream, false),
            "{stream}"
        );
        let expected = connector_e2e::expected_records(f.state(), stream);
        assert_eq!(on_postgres.lines().count(), expected.len(), "{stream}");
    }
    // The nested export (devices with their adapters), byte for byte.
    let nested = export(&f, &env, &postgres, "devices", true);
    assert!(
        nested.contains("\"networkAdapters\":[{"),
        "{}",
        &nested[..500.min(nested.len())]
    );
    assert_eq!(nested, export(&f, &env, &sqlite, "devices", true));
    let status = f
        .cli_with_env(&["status", "--config", postgres.to_str().unwrap()], &env)
        .ok();
    assert!(status.contains("connected"), "{status}");
    assert!(!status.contains("Leases:"), "{status}");
    a_workers_lease_shows_in_status(&f, &db, &env, &postgres);
    the_password_is_nowhere_in_the_database(&db, &f.password);
}

/// A worker's lease on a partition of a new read shows in `status`.
fn a_workers_lease_shows_in_status(
    f: &Fixture,
    db: &TestDatabase,
    env: &std::collections::HashMap<String, String>,
    postgres: &Path,
) {
    let target = PostgresTarget {
        url: format!("{}?sslmode=disable", db.url),
        password: Some(db.password.clone()),
        ca_file: None,
        application_name: None,
    };
    let mut store = Store::open_postgres(&target).unwrap();
    let connection = format!("servicenow-cmdb@127.0.0.1:{}", f.emulator.addr().port());
    let request = StreamRequest {
        partitions: 2,
        incremental_partitions: 2,
        force_full: true,
        supports_incremental: true,
    };
    let streams = [RunStream {
        name: "devices".into(),
        request,
    }];
    store.start_due_run(&connection, &streams).unwrap().unwrap();
    let lease = store
        .claim_partition("worker-7", Duration::from_secs(600), &[connection])
        .unwrap()
        .expect("a partition to claim");
    let status = f
        .cli_with_env(&["status", "--config", postgres.to_str().unwrap()], env)
        .ok();
    let line = format!("partition {:<3} held by worker-7 since ", lease.partition);
    assert!(
        status.contains("Leases:") && status.contains(&line),
        "{status}"
    );
}

/// No table of the database holds `password`.
fn the_password_is_nowhere_in_the_database(db: &TestDatabase, password: &str) {
    let mut client = db.client();
    for table in [
        "records",
        "streams",
        "partitions",
        "health",
        "health_history",
        "runs",
    ] {
        let leaks: i64 = client
            .query_one(
                &format!("SELECT COUNT(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'"),
                &[&password],
            )
            .unwrap()
            .get(0);
        assert_eq!(leaks, 0, "{table}");
    }
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_wrong_database_password_or_a_missing_variable_says_what_to_fix() {
    let f = Fixture::start(5);
    let db = TestDatabase::create();
    let postgres = postgres_config(&f, &db);
    let args = ["sync", "--config", postgres.to_str().unwrap()];
    let (code, message) = f.cli(&args).err();
    assert_eq!(code, 2, "{message}");
    assert!(
        message.contains(PASSWORD_VAR) && message.contains("not set"),
        "{message}"
    );
    let mut env = f.env.clone();
    env.insert(PASSWORD_VAR.into(), "Not-The-Database-Password".into());
    let (code, message) = f.cli_with_env(&args, &env).err();
    assert_eq!(code, 2, "a refused login is the configuration's: {message}");
    assert!(
        message.contains("password authentication failed") && message.contains("PGPASSWORD"),
        "{message}"
    );
    assert!(!message.contains("Not-The-Database-Password"), "{message}");
    // The control: the right password syncs.
    env.insert(PASSWORD_VAR.into(), db.password.clone());
    f.cli_with_env(&args, &env).ok();
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_database_out_of_reach_exits_75_and_nothing_is_read_or_written() {
    let f = Fixture::start(5);
    let db = TestDatabase::create();
    let gate = DatabaseGate::closed_before(&db);
    let config = postgres_config_at(&f, "gated.toml", &gate.url(&db));
    let env = db.environment(&f);
    let config = config.to_str().unwrap();
    for command in ["sync", "status"] {
        let (code, message) = f.cli_with_env(&[command, "--config", config], &env).err();
        assert_eq!(
            code, 75,
            "{command}: a server out of reach passes by itself: {message}"
        );
        assert!(
            message.contains("cannot reach the PostgreSQL server")
                && message.contains("the next sync tries again"),
            "{command}: {message}"
        );
    }
    assert!(gate.refused() >= 2, "the commands never tried the gate");
    assert_eq!(f.state().request_count(), 0, "the source was read");
    let tables: i64 = db
        .client()
        .query_one(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "something was written");
    // The control: the same file syncs once the server answers.
    gate.open();
    f.cli_with_env(&["sync", "--config", config], &env).ok();
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn the_console_shows_and_searches_a_connection_stored_in_postgresql() {
    use super::console::{
        finds_a_device_by_an_adapters_ip, get, signed_in, spawn_serve_with, wait_for_page,
    };
    let f = Fixture::start(300);
    let db = TestDatabase::create();
    std::fs::create_dir(f.dir.path().join("connections")).unwrap();
    postgres_config_at(&f, "connections/cmdb.toml", &db.url);
    let (mut child, listening, sign_in) = spawn_serve_with(
        &f,
        &f.dir.path().join("connections"),
        &[],
        &[(PASSWORD_VAR, db.password.as_str())],
    );
    let base = listening.strip_prefix("listening on ").unwrap().to_string();
    let cookie = signed_in(&sign_in);
    // Its first sync ends, and the page reads what PostgreSQL holds.
    let page = wait_for_page(&format!("{base}/connections/cmdb"), &cookie, "Next sync ");
    assert!(page.contains("Connected"), "{page}");
    assert!(page.contains(">300<"), "{page}");
    // The record browser finds a device by an adapter's IP there too.
    finds_a_device_by_an_adapters_ip(&f, &base, &cookie, "cmdb");
    // The database ends the console's sessions (a restart, a fail-over):
    // the page that meets it fails, and the next connects again.
    assert!(
        db.end_sessions_of("connector-host") >= 1,
        "no session of the console to end"
    );
    let url = format!("{base}/connections/cmdb");
    let (first, _, _) = get(&url, Some(&cookie));
    let (status, _, page) = get(&url, Some(&cookie));
    assert_eq!(status, 200, "after a {first}: {page}");
    assert!(page.contains(">300<"), "{page}");
    connector_e2e::sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn the_next_page_is_asked_for_while_a_page_is_being_committed() {
    let f = Fixture::start(300);
    let db = TestDatabase::create();
    let config = f.config(&ConfigSpec {
        file: "pipelined.toml".into(),
        database: Some(format!(
            "database = \"{}?sslmode=disable\"\ndatabase_password_env = \"{PASSWORD_VAR}\"",
            db.url
        )),
        sync: vec!["page_size = 50".into(), "partitions = 1".into()],
        ..ConfigSpec::default()
    });
    let env = db.environment(&f);
    // The schema exists; then every commit waits for the test's lock.
    create_the_schema(&db);
    let sync = db.with_records_locked(|| {
        let sync = {
            let (config, env) = (config.clone(), env.clone());
            std::thread::spawn(move || {
                let args = [
                    "sync",
                    "--stream",
                    "devices",
                    "--config",
                    config.to_str().unwrap(),
                ];
                connector_e2e::run_cli(&args, &env).ok()
            })
        };
        // The first page's commit is blocked; the second page is asked for
        // all the same.
        super::workers::wait_until_blocked_in_a_commit(&db, "connector-host");
        let seen = f.state().wait_for_requests(2, Duration::from_secs(60));
        assert_eq!(
            seen, 2,
            "the next page was not asked for while the first one was being committed"
        );
        sync
    });
    let report = sync.join().unwrap();
    assert!(report.contains("complete"), "{report}");
    let stored = export(&f, &env, &config, "devices", false);
    let expected = connector_e2e::expected_records(f.state(), "devices");
    assert_eq!(connector_e2e::json_lines(&stored), expected);
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_second_sync_of_a_postgresql_connection_refuses_while_the_first_runs() {
    let f = Fixture::start(200);
    let db = TestDatabase::create();
    let config = postgres_config(&f, &db);
    let env = db.environment(&f);
    super::process::a_second_sync_refuses_while_the_first_runs(&f, &config, &env);
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_sync_whose_database_went_away_mid_commit_exits_75_and_the_next_completes() {
    let f = Fixture::start(300);
    let db = TestDatabase::create();
    let config = postgres_config(&f, &db);
    let env = db.environment(&f);
    let mut ended = 0;
    let out = while_a_commit_waits_on_a_lock(&db, &config, &env, |_| {
        ended = db.end_sessions_of("connector-host");
    });
    assert!(
        ended >= 2,
        "ended {ended}: the sync's store and lock sessions"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("the database went away"), "{stderr}");
    the_next_sync_stores_every_record_once(&f, &env, &config);
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_sync_whose_database_stays_out_of_reach_after_a_failed_commit_exits_75() {
    let f = Fixture::start(300);
    let db = TestDatabase::create();
    let gate = DatabaseGate::closed_before(&db);
    gate.open();
    let config = postgres_config_at(&f, "gated.toml", &gate.url(&db));
    let env = db.environment(&f);
    // As a network gone between host and server: a commit fails, and the
    // run's end cannot be recorded either, since the server cannot be
    // reached again.
    let out = while_a_commit_waits_on_a_lock(&db, &config, &env, |_| {
        gate.close();
        db.end_sessions_of("connector-host");
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("the database is unavailable for now"),
        "{stderr}"
    );
    assert!(
        gate.refused() > 0,
        "the sync tried to reach the database again"
    );
    gate.open();
    the_next_sync_stores_every_record_once(&f, &env, &config);
}

/// A sync of `config` into `db` whose commit waits on a lock of the
/// test's: `during` acts on the sync once the commit is blocked, then the
/// lock goes, and the sync's output once it exits.
fn while_a_commit_waits_on_a_lock(
    db: &TestDatabase,
    config: &Path,
    env: &std::collections::HashMap<String, String>,
    during: impl FnOnce(&mut std::process::Child),
) -> std::process::Output {
    create_the_schema(db);
    let sync = db.with_records_locked(|| {
        let mut sync = super::process::spawn_sync_with(config, env);
        super::workers::wait_until_blocked_in_a_commit(db, "connector-host");
        during(&mut sync);
        sync
    });
    sync.wait_with_output().unwrap()
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_sync_stopped_while_its_commit_waits_on_a_lock_stops_without_the_lock_and_the_next_completes() {
    let f = Fixture::start(300);
    let db = TestDatabase::create();
    let config = postgres_config(&f, &db);
    let env = db.environment(&f);
    let out = while_a_commit_waits_on_a_lock(&db, &config, &env, |sync| {
        connector_e2e::sigterm(sync);
        // A deadline for the test: the commit's statement, left alone,
        // waits as long as the lock (10 min at most).
        let stopped = connector_e2e::exit_within(sync, Duration::from_secs(60));
        assert!(stopped.is_some(), "the stop waited for the lock");
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("stopped by a signal"), "{stderr}");
    the_next_sync_stores_every_record_once(&f, &env, &config);
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_sync_killed_while_its_commit_waits_on_a_lock_leaves_no_session_behind() {
    let f = Fixture::start(300);
    let db = TestDatabase::create();
    let config = postgres_config(&f, &db);
    let env = db.environment(&f);
    let out = while_a_commit_waits_on_a_lock(&db, &config, &env, |sync| {
        // As the OOM killer, or a pod's grace running out, ends a host.
        sync.kill().unwrap();
        sync.wait().unwrap();
        // While the lock is still held: the server notices the host is gone
        // from the session whose commit waits, not only from the idle ones.
        super::workers::wait_for_sessions(
            &db,
            super::workers::Sessions {
                application: "connector-host",
                only_waiting_on_a_lock: false,
            },
            Duration::from_secs(60),
            |count| count == 0,
            "the killed sync's commit stayed on the server, waiting on the lock",
        );
    });
    assert_eq!(out.status.signal(), Some(9), "killed");
    the_next_sync_stores_every_record_once(&f, &env, &config);
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_sync_whose_commit_waits_on_a_lock_past_statement_timeout_exits_75_and_the_next_completes() {
    let f = Fixture::start(300);
    let db = TestDatabase::create();
    let config = postgres_config(&f, &db);
    let env = db.environment(&f);
    create_the_schema(&db);
    // The administrator's limit, which the host keeps, and a lock on the
    // records held past it (a VACUUM FULL, a transaction left open).
    let (_, name) = db.url.rsplit_once('/').unwrap();
    db.client()
        .batch_execute(&format!(
            "ALTER DATABASE {name} SET statement_timeout = '1s'"
        ))
        .unwrap();
    let sync = db.with_records_locked(|| {
        let mut sync = super::process::spawn_sync_with(&config, &env);
        // A deadline for the test: a commit left unbounded waits for the lock.
        let ended = connector_e2e::exit_within(&mut sync, Duration::from_secs(60));
        assert!(
            ended.is_some(),
            "the sync waited on the lock past the database's statement_timeout"
        );
        sync
    });
    let out = sync.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("57014"), "{stderr}");
    assert!(stderr.contains("pg_locks"), "says where to look: {stderr}");
    the_next_sync_stores_every_record_once(&f, &env, &config);
}

/// Opens the test database as a store, which creates the schema.
pub(crate) fn create_the_schema(db: &TestDatabase) {
    drop(
        Store::open_postgres(&PostgresTarget {
            url: format!("{}?sslmode=disable", db.url),
            password: Some(db.password.clone()),
            ca_file: None,
            application_name: None,
        })
        .unwrap(),
    );
}

/// After a sync that failed: the next completes, with every record of the
/// source once.
fn the_next_sync_stores_every_record_once(
    f: &Fixture,
    env: &std::collections::HashMap<String, String>,
    config: &Path,
) {
    f.cli_with_env(&["sync", "--config", config.to_str().unwrap()], env)
        .ok();
    for stream in ["devices", "network_adapters", "business_applications"] {
        let stored = export(f, env, config, stream, false);
        let expected = connector_e2e::expected_records(f.state(), stream);
        assert_eq!(stored.lines().count(), expected.len(), "{stream}");
    }
}
