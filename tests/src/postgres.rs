//! A PostgreSQL database of its own for an end-to-end test, in the
//! throw-away cluster `tools/postgres-cluster.sh` starts (`tests/run-all.sh`
//! does): `CONNECTOR_TEST_POSTGRES` names it, `CONNECTOR_TEST_POSTGRES_PASSWORD`
//! holds the password. Dropped when the test ends.

/// The variable the tests' connection files name for the database's
/// password (`database_password_env`).
pub const DATABASE_PASSWORD_VAR: &str = "TEST_DATABASE_PASSWORD";

/// A database created for one test.
pub struct TestDatabase {
    /// `postgresql://connector@127.0.0.1:PORT/NAME`, without a password.
    pub url: String,
    /// The password of the cluster's user.
    pub password: String,
    admin: String,
    name: String,
}

/// A client of the cluster's `postgres` database, or of `url`.
pub fn client(url: &str, password: &str) -> postgres::Client {
    let mut config: postgres::Config = url.parse().expect("a PostgreSQL URL");
    config.password(password);
    config
        .connect(postgres::NoTls)
        .expect("the test cluster answers")
}

impl TestDatabase {
    /// A new, empty database.
    pub fn create() -> TestDatabase {
        let admin = std::env::var("CONNECTOR_TEST_POSTGRES").expect(
            "CONNECTOR_TEST_POSTGRES is not set: start a cluster with `eval \"$(tools/postgres-cluster.sh start)\"` (tests/run-all.sh does)",
        );
        let password = std::env::var("CONNECTOR_TEST_POSTGRES_PASSWORD")
            .expect("CONNECTOR_TEST_POSTGRES_PASSWORD is set with CONNECTOR_TEST_POSTGRES");
        let name = format!("e2e_{:016x}", rand::random::<u64>());
        client(&admin, &password)
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("creating the test database");
        let (base, _) = admin.rsplit_once('/').expect("a URL with a database");
        TestDatabase {
            url: format!("{base}/{name}"),
            password,
            admin,
            name,
        }
    }

    /// The environment of the CLI and the workers on this database: the
    /// source's password (the fixture's) and the database's, in
    /// [`DATABASE_PASSWORD_VAR`].
    pub fn environment(&self, f: &crate::Fixture) -> std::collections::HashMap<String, String> {
        let mut env = f.env.clone();
        env.insert(DATABASE_PASSWORD_VAR.into(), self.password.clone());
        env
    }

    /// A client of this database.
    pub fn client(&self) -> postgres::Client {
        client(&self.url, &self.password)
    }

    /// Runs `body` while the test holds a lock on `records` that every
    /// commit waits for (reads go on: `EXCLUSIVE` mode), then lets it go.
    pub fn with_records_locked<T>(&self, body: impl FnOnce() -> T) -> T {
        let mut locker = self.client();
        let mut lock = locker.transaction().expect("a transaction");
        lock.batch_execute("LOCK TABLE records IN EXCLUSIVE MODE")
            .expect("the records locked");
        let done = body();
        lock.rollback().expect("the lock let go");
        done
    }

    /// Ends the sessions of this database whose `application_name` is
    /// `application`, as a restart or a fail-over of the server does (each
    /// gets FATAL 57P01), and waits until they are gone; returns how many
    /// there were.
    pub fn end_sessions_of(&self, application: &str) -> i64 {
        self.client()
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid, 10000))
                 FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = $1",
                &[&application],
            )
            .expect("ending the sessions")
            .get(0)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = client(&self.admin, &self.password).batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// An address in front of the test cluster that is down until [`open`]ed:
/// a client that connects meanwhile is hung up on before the server's
/// first byte, as a server that is starting up or restarting does; once
/// open, every connection is passed on to the cluster. A worker or a sync
/// pointed at it meets a database that is not there yet.
///
/// [`open`]: DatabaseGate::open
pub struct DatabaseGate {
    addr: std::net::SocketAddr,
    upstream: String,
    shared: std::sync::Arc<GateState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the gate's thread and the test share.
#[derive(Default)]
struct GateState {
    open: std::sync::atomic::AtomicBool,
    stopped: std::sync::atomic::AtomicBool,
    refused: std::sync::atomic::AtomicUsize,
}

impl DatabaseGate {
    /// A closed gate in front of `db`'s cluster, on its own thread.
    pub fn closed_before(db: &TestDatabase) -> DatabaseGate {
        use std::sync::atomic::Ordering::SeqCst;
        let (_, rest) = db.url.split_once('@').expect("a URL with a user");
        let (upstream, _) = rest.split_once('/').expect("a URL with a database");
        let upstream = upstream.to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = std::sync::Arc::new(GateState::default());
        let state = shared.clone();
        let to = upstream.clone();
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if state.stopped.load(SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if state.open.load(SeqCst) {
                    pass_on(client, &to);
                } else {
                    state.refused.fetch_add(1, SeqCst);
                    drop(client);
                }
            }
        });
        DatabaseGate {
            addr,
            upstream,
            shared,
            thread: Some(thread),
        }
    }

    /// `db`'s URL with the gate's address in place of the cluster's.
    pub fn url(&self, db: &TestDatabase) -> String {
        db.url.replacen(&self.upstream, &self.addr.to_string(), 1)
    }

    /// Connections hung up on while the gate was closed.
    pub fn refused(&self) -> usize {
        self.shared
            .refused
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// From now on, connections reach the cluster.
    pub fn open(&self) {
        self.shared
            .open
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// From now on, new connections are hung up on again; those passed on
    /// before stay until either side ends them.
    pub fn close(&self) {
        self.shared
            .open
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies bytes both ways between `client` and a new connection to
/// `upstream`, each way on a thread of its own, until either side ends.
fn pass_on(client: std::net::TcpStream, upstream: &str) {
    let Ok(server) = std::net::TcpStream::connect(upstream) else {
        return;
    };
    let one_way = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
    };
    if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
        one_way(c, server);
        one_way(s, client);
    }
}

impl Drop for DatabaseGate {
    fn drop(&mut self) {
        self.shared
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accepting thread, which then sees it is stopped.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
