//! For the store's tests: a fresh store on each backend.
//!
//! SQLite: a file in a temporary directory. PostgreSQL: a database of its
//! own, created in the cluster `CONNECTOR_TEST_POSTGRES` names (password in
//! `CONNECTOR_TEST_POSTGRES_PASSWORD`; `tools/postgres-cluster.sh` starts
//! one) and dropped afterwards. The PostgreSQL variants are ignored by a
//! plain `cargo test`; `tests/run-all.sh` runs them with `--ignored`, and
//! without the variables they fail, saying so.

use super::{PostgresTarget, Store};

/// A store and where it lives (removed when the test ends, after the store closes).
pub(crate) struct TestStore {
    pub(crate) store: Store,
    _directory: Option<tempfile::TempDir>,
    _database: Option<DroppedDatabase>,
}

/// A PostgreSQL database dropped when the test ends.
struct DroppedDatabase {
    admin: PostgresTarget,
    name: String,
}

impl Drop for DroppedDatabase {
    fn drop(&mut self) {
        // A test's database: drop it even if a client is still connected.
        if let Ok(mut client) = self.admin.connect() {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

impl TestStore {
    /// How to reach the PostgreSQL database (another client of it).
    pub(crate) fn target(&self) -> PostgresTarget {
        PostgresTarget {
            url: format!("{}?sslmode=disable", self.url()),
            ..cluster()
        }
    }

    /// The PostgreSQL database's URL (without options).
    pub(crate) fn url(&self) -> String {
        let database = self._database.as_ref().expect("a PostgreSQL store");
        let (base, _) = database.admin.url.rsplit_once('/').unwrap();
        format!("{base}/{}", database.name)
    }

    /// Waits, looking every 20 ms from a session of its own, until the
    /// server has ended the session of backend `pid`; fails with `never`
    /// after `deadline` (a deadline for a test's wait, not a measurement).
    pub(crate) fn wait_until_session_ended(
        &self,
        pid: i32,
        deadline: std::time::Duration,
        never: &str,
    ) {
        let mut watcher = self.target().connect().unwrap();
        let started = std::time::Instant::now();
        while watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .unwrap()
            .get::<_, i64>(0)
            > 0
        {
            assert!(started.elapsed() < deadline, "{never}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A new SQLite store.
pub(crate) fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    TestStore {
        store,
        _directory: Some(dir),
        _database: None,
    }
}

/// A SQLite store whose database an earlier release wrote: brought to
/// schema `version`, given `sql` to run, then opened (and so migrated).
pub(crate) fn sqlite_as_of(version: u32, sql: &str) -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    super::sqlite::migrate_to(&conn, version).unwrap();
    conn.execute_batch(sql).unwrap();
    drop(conn);
    let store = Store::open(&path).unwrap();
    TestStore {
        store,
        _directory: Some(dir),
        _database: None,
    }
}

/// The throw-away cluster the test script started.
pub(crate) fn cluster() -> PostgresTarget {
    let url = std::env::var("CONNECTOR_TEST_POSTGRES").expect(
        "CONNECTOR_TEST_POSTGRES is not set: start a cluster with `eval \"$(tools/postgres-cluster.sh start)\"` (tests/run-all.sh does)",
    );
    PostgresTarget {
        url,
        password: std::env::var("CONNECTOR_TEST_POSTGRES_PASSWORD").ok(),
        ca_file: None,
        application_name: None,
    }
}

/// A new PostgreSQL store, in a database of its own.
pub(crate) fn postgres() -> TestStore {
    postgres_as_of(super::postgres::LATEST_VERSION, "")
}

/// A PostgreSQL store whose database an earlier release wrote: brought to
/// schema `version`, given `sql` to run, then opened (and so migrated).
pub(crate) fn postgres_as_of(version: i32, sql: &str) -> TestStore {
    use rand::Rng as _;
    let admin = cluster();
    let name = format!("store_test_{:016x}", rand::rng().random::<u64>());
    let mut client = admin.connect().unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let (base, _) = admin.url.rsplit_once('/').unwrap();
    let target = PostgresTarget {
        url: format!("{base}/{name}?sslmode=disable"),
        ..admin.clone()
    };
    let mut earlier = target.connect().unwrap();
    super::postgres::migrate_to(&mut earlier, version).unwrap();
    earlier.batch_execute(sql).unwrap();
    drop(earlier);
    let store = Store::open_postgres(&target).unwrap();
    TestStore {
        store,
        _directory: None,
        _database: Some(DroppedDatabase { admin, name }),
    }
}

/// Runs each named check (`fn(&mut Store)`) on SQLite, and on PostgreSQL
/// when asked with `--ignored`.
macro_rules! on_every_backend {
    ($($check:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $check() {
                    super::$check(&mut super::super::testing::sqlite().store);
                }
            )*
        }
        mod on_postgres {
            $(
                #[test]
                #[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
                fn $check() {
                    super::$check(&mut super::super::testing::postgres().store);
                }
            )*
        }
    };
}
pub(crate) use on_every_backend;

/// The idle bound (`idle_in_transaction_session_timeout`) in force in a
/// PostgreSQL session or transaction, as `SHOW` gives it.
pub(crate) fn idle_bound(client: &mut impl postgres::GenericClient) -> String {
    client
        .query_one("SHOW idle_in_transaction_session_timeout", &[])
        .unwrap()
        .get(0)
}
