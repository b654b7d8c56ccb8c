//! The server's side of a PostgreSQL session: the host's statement limit
//! and keep-alive probes unless the server, the role, the database or the
//! URL says otherwise; a statement given up as a failure that passes by
//! itself; and migrations never bounded. They need the test cluster, as
//! the store's other PostgreSQL tests do.

use super::schema::MIGRATION_LOCK;
use crate::store::testing::{cluster, postgres, TestStore};
use crate::store::{Health, HealthState, PostgresTarget, Store};
use std::sync::mpsc::channel;
use std::time::Duration;

/// A deadline for a test's wait, not a measurement: a statement left
/// unbounded waits for 10 minutes, or for ever.
const DEADLINE: Duration = Duration::from_secs(60);

/// The test database's name.
fn name_of(db: &TestStore) -> String {
    db.url().rsplit_once('/').unwrap().1.to_string()
}

/// What a new session at `target` shows for each of [`SETTINGS`].
fn settings_at(target: &PostgresTarget) -> Vec<(String, String)> {
    let mut client = target.connect().unwrap();
    SETTINGS
        .iter()
        .map(|name| {
            let shown: String = client
                .query_one(&format!("SHOW {name}"), &[])
                .unwrap()
                .get(0);
            (name.to_string(), shown)
        })
        .collect()
}

/// The settings the host gives a session where nobody else did.
const SETTINGS: [&str; 6] = [
    "statement_timeout",
    "tcp_keepalives_idle",
    "tcp_keepalives_interval",
    "tcp_keepalives_count",
    "tcp_user_timeout",
    "client_connection_check_interval",
];

/// `settings` as [`settings_at`] gives them.
fn shown(settings: [&str; 6]) -> Vec<(String, String)> {
    SETTINGS
        .iter()
        .zip(settings)
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// The test database with `statement_timeout` set on it, as an
/// administrator sets it for every session of the database.
fn with_database_timeout(db: &TestStore, timeout: &str) {
    db.target()
        .connect()
        .unwrap()
        .batch_execute(&format!(
            "ALTER DATABASE {} SET statement_timeout = '{timeout}'",
            name_of(db)
        ))
        .unwrap();
}

fn connected() -> Health {
    Health {
        state: HealthState::Connected,
        error_kind: None,
        message: None,
    }
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn sessions_take_the_hosts_settings_unless_the_url_or_the_database_says() {
    let db = postgres();
    assert_eq!(
        settings_at(&db.target()),
        shown(["10min", "30", "10", "3", "60000", "5s"])
    );
    let theirs = PostgresTarget {
        url: format!(
            "{}?sslmode=disable&options=-c%20statement_timeout%3D0%20-c%20tcp_keepalives_idle%3D600",
            db.url()
        ),
        ..cluster()
    };
    assert_eq!(
        settings_at(&theirs),
        shown(["0", "600", "10", "3", "60000", "5s"])
    );
    with_database_timeout(&db, "42s");
    assert_eq!(settings_at(&db.target())[0].1, "42s");
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_statement_waiting_on_another_sessions_lock_is_given_up_as_temporary() {
    let db = postgres();
    with_database_timeout(&db, "300ms");
    let target = db.target();
    let mut holder = target.connect().unwrap();
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("LOCK TABLE health IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let (done, outcome) = channel();
    let writer = std::thread::spawn(move || {
        let mut store = Store::open_postgres(&target).unwrap();
        done.send(store.set_health("c", &connected()).err())
            .unwrap();
        store
    });
    let e = outcome
        .recv_timeout(DEADLINE)
        .expect("the write waited on the lock past the database's statement_timeout")
        .expect("the write went through while another session held the lock");
    assert!(e.is_temporary(), "{e}");
    assert!(!e.is_connection_lost(), "the session is still there: {e}");
    let said = e.to_string();
    assert!(said.contains("57014"), "{said}");
    assert!(said.contains("pg_locks"), "says where to look: {said}");
    lock.rollback().unwrap();
    // Once the lock is gone, the same session writes.
    let mut store = writer.join().unwrap();
    store.set_health("c", &connected()).unwrap();
    assert_eq!(store.health("c").unwrap().unwrap().0, connected());
}

#[test]
#[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
fn a_migration_waits_for_another_hosts_migration_past_any_statement_timeout() {
    let db = postgres();
    with_database_timeout(&db, "200ms");
    let target = db.target();
    // Another host migrating: it holds the migrations' lock.
    let mut other_host = target.connect().unwrap();
    other_host
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .unwrap();
    let (done, outcome) = channel();
    let opener = target.clone();
    std::thread::spawn(move || done.send(Store::open_postgres(&opener).err()).unwrap());
    // The opener has waited for the lock for twice the database's limit.
    let mut observer = target.connect().unwrap();
    loop {
        let waited_past: bool = observer
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'
                       AND now() - query_start > interval '400 ms')",
                &[],
            )
            .unwrap()
            .get(0);
        if waited_past {
            break;
        }
        assert!(
            outcome.try_recv().is_err(),
            "the migration gave up waiting for the other host's"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    other_host
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .unwrap();
    let failed = outcome
        .recv_timeout(DEADLINE)
        .expect("the store did not open once the other host's migration ended");
    assert!(failed.is_none(), "{}", failed.unwrap());
}
