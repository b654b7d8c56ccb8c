//! Reaching the PostgreSQL server: the URL of the configuration, the
//! password from the environment (never in the URL, the file or the
//! database), and `sslmode`.
//!
//! `sslmode=disable` connects in clear; `prefer` (the default) tries TLS
//! and falls back to clear when the server offers none, as libpq does;
//! `require`, `verify-ca` and `verify-full` insist on TLS and, unlike
//! libpq's `require`, always verify the server's certificate and name
//! (against the Mozilla roots and the operator's CA file): a sync never
//! sends its records to a database it cannot identify.

use super::super::{describe_postgres, is_server_unreachable, OpenError};
use super::abandoned::{Attempt, MAX_ABANDONED};
use postgres::config::SslMode;
use postgres::Client;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

/// What to check when a server accepts connections and does not log in.
const SILENT_SERVER_ADVICE: &str = "check that the address is the PostgreSQL server's (not another service, or a connection pooler whose server is down) and that the server is not overloaded";

/// How long connecting may take unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP keep-alive probes start after this long without traffic unless the
/// URL says (`keepalives_idle`; libpq and the kernel wait 2 hours): a
/// firewall, NAT or load balancer that forgets idle connections (AWS's
/// network load balancer after 350 s) then keeps a worker's or the
/// console's connection, and a server gone from the network is noticed.
const KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
/// Time between unanswered keep-alive probes (`keepalives_interval`).
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes after which the connection is given up
/// (`keepalives_retries`): a server gone mid-query is noticed after about
/// a minute, not after 2 hours and 11 minutes.
const KEEPALIVES_RETRIES: u32 = 3;
/// How long sent data may go unacknowledged before the connection is given
/// up (`tcp_user_timeout`): a commit sent to a server gone from the
/// network fails after this instead of retransmitting for 15 minutes.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the server looks whether the host is still there while one
/// of its statements runs or waits (`client_connection_check_interval`,
/// PostgreSQL 14 and later). Without it, a session whose host was killed
/// or cut off while its commit waited on another session's lock stayed,
/// holding its transaction's locks, until that lock went (up to
/// [`STATEMENT_TIMEOUT`]): the keep-alives end only idle sessions. With it,
/// the server ends the session at its next look once the host's side is
/// closed or its keep-alive probes went unanswered.
const CLIENT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// How long one statement may wait or run, unless the server's
/// configuration, the role, the database or the URL's `options` set
/// `statement_timeout` (PostgreSQL's default is no limit). A session
/// waiting for a lock another holds (`VACUUM FULL`, `ALTER TABLE`, a
/// transaction left open) held a sync's commit, a worker's look or a
/// console page for as long as that lock lasted; now it fails as
/// temporary after this. The longest statements take tens of
/// seconds at 1M devices (BENCHMARKS.md, "How long a statement may
/// wait"): a full read's sweep that marks 2M adapters no longer returned
/// 42 s, a retention sweep through 1M devices' JSON 36 s. Migrations take
/// no limit.
pub(crate) const STATEMENT_TIMEOUT: &str = "10min";

/// The server's side of each session, where neither the server's
/// configuration, the role, the database nor the URL's `options` set it
/// (`pg_settings.source` is `default`): [`STATEMENT_TIMEOUT`], and the
/// server's own keep-alive probes of the host and limit on unacknowledged
/// data, with the host's values. A host gone from the network (a partition,
/// a machine lost) left its sessions on the server until the server's
/// kernel probed them, after 2 hours by default; one of them held the
/// connection's sync lock, so every sync of that connection refused as
/// "another sync is running" meanwhile. Now the server ends them in about a
/// minute, and their locks with them; a session whose statement still runs
/// or waits is ended too ([`CLIENT_CHECK_INTERVAL`]). A setting the server
/// does not know (`tcp_user_timeout` before PostgreSQL 12,
/// `client_connection_check_interval` before 14) is left out.
fn session_defaults() -> [(&'static str, String); 6] {
    [
        ("statement_timeout", STATEMENT_TIMEOUT.to_string()),
        ("tcp_keepalives_idle", KEEPALIVES_IDLE.as_secs().to_string()),
        (
            "tcp_keepalives_interval",
            KEEPALIVES_INTERVAL.as_secs().to_string(),
        ),
        ("tcp_keepalives_count", KEEPALIVES_RETRIES.to_string()),
        ("tcp_user_timeout", TCP_USER_TIMEOUT.as_millis().to_string()),
        (
            "client_connection_check_interval",
            CLIENT_CHECK_INTERVAL.as_millis().to_string(),
        ),
    ]
}

/// Sets [`session_defaults`] on a new session, in one round trip.
fn apply_session_defaults(client: &mut Client) -> Result<(), postgres::Error> {
    let values: Vec<String> = session_defaults()
        .iter()
        .map(|(name, value)| format!("('{name}', '{value}')"))
        .collect();
    client.batch_execute(&format!(
        "SELECT set_config(s.name, ours.value, false)
         FROM (VALUES {}) AS ours (name, value)
         JOIN pg_settings s ON s.name = ours.name
         WHERE s.source = 'default'",
        values.join(", ")
    ))
}

/// Where a PostgreSQL store is and how to log in.
#[derive(Clone)]
pub struct PostgresTarget {
    /// `postgresql://USER@HOST:PORT/DB[?sslmode=…]`, without a password.
    pub url: String,
    /// The password (from `PGPASSWORD` or the variable the configuration names).
    pub password: Option<String>,
    /// PEM certificates trusted besides the Mozilla roots, for TLS.
    pub ca_file: Option<PathBuf>,
    /// How the server lists this client in `pg_stat_activity` (default
    /// `connector-host`; the URL's `application_name` wins).
    pub application_name: Option<String>,
}

impl std::fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTarget")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("application_name", &self.application_name)
            .finish()
    }
}

impl PostgresTarget {
    /// The URL's configuration; refused when it carries a password.
    fn config(&self) -> Result<postgres::Config, OpenError> {
        // Every TLS connection is verified: libpq's verify modes are `require` here.
        let url = self
            .url
            .replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require");
        let mut config: postgres::Config = url.parse().map_err(|e| {
            OpenError::Invalid(format!(
                "the database URL is not a PostgreSQL connection URL ({e}); write it as postgresql://USER@HOST:PORT/DATABASE"
            ))
        })?;
        if config.get_password().is_some() {
            return Err(OpenError::Invalid(
                "the database URL holds a password; take it out and give it in PGPASSWORD or the variable `database_password_env` names".into(),
            ));
        }
        if let Some(password) = &self.password {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            // libpq waits for ever; a host retrying a server that is down
            // (`reconnect_if_lost`) must not hang on an address that drops packets.
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        keep_alive(&mut config);
        if config.get_application_name().is_none() {
            config.application_name(self.application_name.as_deref().unwrap_or("connector-host"));
        }
        Ok(config)
    }

    /// A connected client, over TLS unless `sslmode` says otherwise.
    ///
    /// The whole connection, start-up and login included, takes at most
    /// twice the connect time-out. `connect_timeout` bounds only the TCP
    /// connect: a server that accepts the connection and then says
    /// nothing (a connection pooler whose server is down, a port that is
    /// not PostgreSQL's) held the console's pages and a worker's start for
    /// ever. The connecting thread is then left to end when the server
    /// hangs up; while [`MAX_ABANDONED`] such threads wait on this URL,
    /// the next attempt is refused at once (`abandoned.rs`).
    pub(crate) fn connect(&self) -> Result<Client, OpenError> {
        let config = self.config()?;
        let Some(attempt) = Attempt::start(&self.url) else {
            return Err(OpenError::Unreachable(format!(
                "{MAX_ABANDONED} earlier attempts to connect to this database still wait for the server, which accepted them and did not complete PostgreSQL's start-up and login; {SILENT_SERVER_ADVICE}"
            )));
        };
        let running = attempt.running();
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(self.tls()?),
        };
        let limit = 2 * config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT);
        let (sender, answer) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("postgres-connect".into())
            .spawn(move || {
                let _running = running;
                let connected = match tls {
                    None => config.connect(postgres::NoTls),
                    Some(tls) => config.connect(tls),
                };
                let connected = connected.and_then(|mut client| {
                    apply_session_defaults(&mut client)?;
                    Ok(client)
                });
                // Nobody listens any more after a time-out: nothing to do.
                let _ = sender.send(connected);
            })
            .map_err(|e| OpenError::Connect(format!("cannot start connecting: {e}")))?;
        match answer.recv_timeout(limit) {
            Ok(connected) => connected.map_err(|e| {
                if is_server_unreachable(&e) {
                    OpenError::Unreachable(describe_postgres(&e))
                } else {
                    OpenError::Connect(describe_postgres(&e))
                }
            }),
            Err(RecvTimeoutError::Disconnected) => Err(OpenError::Connect(
                "connecting to the server stopped without an answer".into(),
            )),
            Err(RecvTimeoutError::Timeout) => {
                attempt.abandon();
                Err(OpenError::Unreachable(format!(
                "the database server accepted the connection but did not complete PostgreSQL's start-up and login within {} s; {SILENT_SERVER_ADVICE}",
                limit.as_secs()
            )))
            }
        }
    }

    /// Asks the server to cancel the statement `token`'s session runs, over
    /// TLS unless `sslmode` says otherwise, as the session connected.
    pub(crate) fn cancel(&self, token: &postgres::CancelToken) -> Result<(), OpenError> {
        let config = self.config()?;
        let sent = match config.get_ssl_mode() {
            SslMode::Disable => token.cancel_query(postgres::NoTls),
            _ => token.cancel_query(self.tls()?),
        };
        sent.map_err(|e| OpenError::Connect(describe_postgres(&e)))
    }

    /// The TLS connector: Mozilla's roots and the operator's CA file.
    fn tls(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, OpenError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &self.ca_file {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    OpenError::Invalid(format!(
                        "the database CA file {} is not PEM certificates: {e}",
                        path.display()
                    ))
                })?;
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    OpenError::Invalid(format!(
                        "the database CA file {} holds an unusable certificate: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OpenError::Invalid(format!("TLS set-up failed: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }
}

/// Keep-alive probes and a limit on unacknowledged data, where the URL
/// sets none: a server that vanishes from the network (a fail-over, a
/// cable, a firewall's restart) fails the call in about a minute, and the
/// store's `reconnect_if_lost` or the worker's wait takes over.
fn keep_alive(config: &mut postgres::Config) {
    // 2 hours is tokio-postgres's default, which the URL did not change.
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(KEEPALIVES_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVES_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVES_RETRIES);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_of(url: &str) -> postgres::Config {
        PostgresTarget {
            url: url.into(),
            password: None,
            ca_file: None,
            application_name: None,
        }
        .config()
        .unwrap()
    }

    /// A vanished server is noticed in about a minute, and an idle
    /// connection is kept through NATs; what the URL sets wins.
    #[test]
    fn connections_probe_their_server_unless_the_url_says_otherwise() {
        let ours = config_of("postgresql://u@127.0.0.1:5432/db");
        assert_eq!(ours.get_keepalives_idle(), KEEPALIVES_IDLE);
        assert_eq!(ours.get_keepalives_interval(), Some(KEEPALIVES_INTERVAL));
        assert_eq!(ours.get_keepalives_retries(), Some(KEEPALIVES_RETRIES));
        assert_eq!(ours.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert!(ours.get_keepalives());
        let theirs = config_of(
            "postgresql://u@127.0.0.1:5432/db?keepalives_idle=600&keepalives_interval=5&keepalives_retries=9&tcp_user_timeout=7",
        );
        assert_eq!(theirs.get_keepalives_idle(), Duration::from_secs(600));
        assert_eq!(
            theirs.get_keepalives_interval(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(theirs.get_keepalives_retries(), Some(9));
        assert_eq!(theirs.get_tcp_user_timeout(), Some(&Duration::from_secs(7)));
    }
}
