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
