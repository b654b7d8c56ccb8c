//! The configuration file (TOML): where the database is, which component,
//! its settings, how to authenticate, and the sync and sandbox limits.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration error: what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("the configuration file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's explanation.
        message: String,
    },
    /// A value is present but unusable.
    #[error("{0}")]
    Invalid(String),
}

/// `[auth]`: how the host authenticates the connector's requests.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `basic`, `oauth2-client-credentials`, `oauth2-password` or `api-key`.
    pub method: String,
    /// User name (`basic`, `oauth2-password`).
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (readable by its owner only).
    pub password_file: Option<PathBuf>,
    /// OAuth client id (`oauth2-*`).
    pub client_id: Option<String>,
    /// Environment variable holding the OAuth client secret.
    pub client_secret_env: Option<String>,
    /// File holding the OAuth client secret.
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable holding the API key (`api-key`).
    pub api_key_env: Option<String>,
    /// File holding the API key.
    pub api_key_file: Option<PathBuf>,
    /// OAuth token endpoint path on the endpoint's origin, overriding the
    /// path the component declares.
    pub token_path: Option<String>,
}

/// `[sync]`: how reads are driven.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Rows asked for per page (by default 10,000, ServiceNow's own default
    /// for `sysparm_limit`: BENCHMARKS.md, "ServiceNow's page").
    pub page_size: u32,
    /// Partitions per stream, read in parallel (how a stream splits is the connector's business).
    pub partitions: u32,
    /// Partitions read at the same time (across streams).
    pub concurrency: u32,
    /// Attempts per page before a temporary failure fails the stream.
    pub max_attempts: u32,
    /// First back-off delay, in milliseconds (doubles per attempt, with jitter).
    pub retry_base_ms: u64,
    /// Longest back-off delay, in milliseconds.
    pub retry_max_ms: u64,
    /// Longest `Retry-After` honoured, in seconds; longer waits fail the stream.
    pub max_retry_after_seconds: u64,
    /// Budget of requests per hour, spread evenly (none: only the server's limits).
    pub requests_per_hour: Option<u32>,
    /// For workers: how long a lease on a partition lasts unless renewed,
    /// in seconds (a killed worker's partitions wait this long at most).
    pub lease_seconds: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            page_size: 10_000,
            partitions: 4,
            concurrency: 4,
            max_attempts: 8,
            retry_base_ms: 1000,
            retry_max_ms: 60_000,
            max_retry_after_seconds: 3600,
            requests_per_hour: None,
            lease_seconds: 30,
        }
    }
}

/// `[schedule]`: how often `serve` syncs the connection.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Time between syncs, e.g. `6h` or `30m` (default: `serve --every`).
    pub every: Option<String>,
}

/// `[limits]`: the sandbox.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Linear memory per component instance, MiB.
    pub memory_mib: u64,
    /// Wall-clock limit of one call into the component, seconds.
    pub call_timeout_seconds: u64,
    /// Guest CPU (epoch ticks of 10 ms while running wasm) per call, seconds.
    pub cpu_seconds_per_call: u64,
    /// Largest response body the component may receive, MiB.
    pub max_response_mib: u64,
    /// Connect / first-byte / between-bytes time-out cap, seconds.
    pub request_timeout_seconds: u64,
    /// Most HTTP requests one run may send (all streams together).
    pub max_requests_per_run: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory_mib: 512,
            call_timeout_seconds: 600,
            cpu_seconds_per_call: 120,
            max_response_mib: 256,
            request_timeout_seconds: 120,
            max_requests_per_run: 1_000_000,
        }
    }
}

impl LimitsConfig {
    /// Wall-clock limit per call.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.call_timeout_seconds)
    }
    /// Per-request time-out cap.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }
}

/// `[network]`: how the endpoint is reached from a corporate network.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// PEM file of CA certificates trusted besides the Mozilla roots.
    pub tls_ca_file: Option<PathBuf>,
    /// HTTPS proxy, `http://HOST:PORT`; https requests go through it with CONNECT.
    pub https_proxy: Option<String>,
    /// User name for the proxy (Basic `Proxy-Authorization` on `CONNECT`).
    pub https_proxy_user: Option<String>,
    /// Environment variable holding the proxy user's password.
    pub https_proxy_password_env: Option<String>,
    /// Client certificate (PEM, with intermediates) for mutual TLS with the endpoint.
    pub client_cert_file: Option<PathBuf>,
    /// Its private key (PEM), readable by its owner only.
    pub client_key_file: Option<PathBuf>,
}

impl NetworkConfig {
    /// The proxy as `host:port`, validated.
    pub fn proxy_authority(&self) -> Result<Option<String>, ConfigError> {
        let Some(raw) = &self.https_proxy else {
            if self.https_proxy_user.is_some() || self.https_proxy_password_env.is_some() {
                return Err(ConfigError::Invalid(
                    "[network] names proxy credentials but no https_proxy; add https_proxy = \"http://HOST:PORT\" or remove them".into(),
                ));
            }
            return Ok(None);
        };
        // Never quote user information (a password) back.
        let shown = match raw.rsplit_once('@') {
            Some((_, host)) => format!("…@{host}"),
            None => raw.clone(),
        };
        let bad = |why: &str| {
            ConfigError::Invalid(format!(
                "[network] https_proxy `{shown}` is not usable: {why}; write it as http://HOST:PORT"
            ))
        };
        let rest = raw
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// proxies are supported"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('@') {
            return Err(bad(
                "credentials do not go in the URL (use https_proxy_user and https_proxy_password_env)",
            ));
        }
        let authority: http::uri::Authority =
            rest.parse().map_err(|_| bad("it is not HOST:PORT"))?;
        let port = authority.port_u16().ok_or_else(|| bad("it has no port"))?;
        if self
            .https_proxy_user
            .as_deref()
            .is_some_and(|u| u.contains(':'))
        {
            return Err(ConfigError::Invalid(
                "[network] https_proxy_user contains `:`, which Basic proxy authentication cannot carry in a user name".into(),
            ));
        }
        if self.https_proxy_user.is_some() != self.https_proxy_password_env.is_some() {
            return Err(ConfigError::Invalid(
                "[network] https_proxy_user and https_proxy_password_env go together: set both for a proxy that asks for credentials, or neither".into(),
            ));
        }
        Ok(Some(format!("{}:{port}", authority.host())))
    }

    /// The client certificate and key files, when mutual TLS is configured.
    pub fn client_identity(&self) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
            (None, None) => Ok(None),
            _ => Err(ConfigError::Invalid(
                "[network] client_cert_file and client_key_file go together: set both for mutual TLS, or neither".into(),
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    database: String,
    database_password_env: Option<String>,
    database_ca_file: Option<PathBuf>,
    connector: Option<String>,
    plugin: Option<PathBuf>,
    name: Option<String>,
    #[serde(default)]
    settings: BTreeMap<String, toml::Value>,
    auth: Option<AuthConfig>,
    #[serde(default)]
    sync: SyncConfig,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    network: NetworkConfig,
    #[serde(default)]
    schedule: ScheduleConfig,
}

/// Where the records are kept: `database = "FILE"` or `database = "postgresql://…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// A SQLite file (the default), relative to the configuration's directory.
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by a deployment.
    Postgres {
        /// `postgresql://USER@HOST:PORT/DB[?sslmode=…]`, without a password.
        url: String,
        /// The variable holding the password (none: `PGPASSWORD`).
        password_env: Option<String>,
        /// PEM certificates trusted for the server's TLS, besides Mozilla's roots.
        ca_file: Option<PathBuf>,
    },
}

impl DatabaseConfig {
    /// What to call it in messages: the file, or the URL (which holds no password).
    pub fn describe(&self) -> String {
        match self {
            DatabaseConfig::Sqlite(path) => path.display().to_string(),
            DatabaseConfig::Postgres { url, .. } => url.clone(),
        }
    }

    /// The SQLite file, when it is one.
    pub fn sqlite_file(&self) -> Option<&Path> {
        match self {
            DatabaseConfig::Sqlite(path) => Some(path),
            DatabaseConfig::Postgres { .. } => None,
        }
    }

    /// From the file's `database`, `database_password_env` and `database_ca_file`.
    fn parse(
        database: String,
        password_env: Option<String>,
        ca_file: Option<PathBuf>,
        resolve: impl Fn(PathBuf) -> PathBuf,
    ) -> Result<DatabaseConfig, ConfigError> {
        let postgres = ["postgresql://", "postgres://"]
            .iter()
            .any(|scheme| database.starts_with(scheme));
        if postgres {
            return Ok(DatabaseConfig::Postgres {
                url: database,
                password_env,
                ca_file: ca_file.map(resolve),
            });
        }
        if password_env.is_some() || ca_file.is_some() {
            return Err(ConfigError::Invalid(
                "database_password_env and database_ca_file are for a PostgreSQL database (database = \"postgresql://USER@HOST:PORT/DB\"); a SQLite file needs neither".into(),
            ));
        }
        Ok(DatabaseConfig::Sqlite(resolve(PathBuf::from(database))))
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the records are kept.
    pub database: DatabaseConfig,
    /// A bundled connector, by name (`servicenow`, `netbox`); `None` with no
    /// `plugin` means the host's default.
    pub connector: Option<String>,
    /// Component file to load instead of a bundled connector.
    pub plugin: Option<PathBuf>,
    /// Name of this connection in the database (default: connector@endpoint).
    pub name: Option<String>,
    /// Settings passed to the component; the one it declares as its
    /// endpoint is the only origin it may contact.
    pub settings: Vec<(String, String)>,
    /// Authentication.
    pub auth: Option<AuthConfig>,
    /// Sync behaviour.
    pub sync: SyncConfig,
    /// Sandbox limits.
    pub limits: LimitsConfig,
    /// CA bundle and proxy.
    pub network: NetworkConfig,
    /// How often `serve` syncs it.
    pub schedule: ScheduleConfig,
}

impl Config {
    /// Reads and validates a configuration file. Relative paths in it are
    /// taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses configuration text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw = parse_toml(text)?;
        let settings = settings_as_text(raw.settings)?;
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let auth = raw.auth.map(|mut a| {
            a.password_file = a.password_file.map(resolve);
            a.client_secret_file = a.client_secret_file.map(resolve);
            a.api_key_file = a.api_key_file.map(resolve);
            a
        });
        let mut network = raw.network;
        network.tls_ca_file = network.tls_ca_file.map(resolve);
        network.client_cert_file = network.client_cert_file.map(resolve);
        network.client_key_file = network.client_key_file.map(resolve);
        network.proxy_authority()?;
        network.client_identity()?;
        check_sync(&raw.sync)?;
        if raw.connector.is_some() && raw.plugin.is_some() {
            return Err(ConfigError::Invalid(
                "set either `connector` (a bundled connector, e.g. \"netbox\") or `plugin` (the path of a component file), not both".into(),
            ));
        }
        Ok(Config {
            database: DatabaseConfig::parse(
                raw.database,
                raw.database_password_env,
                raw.database_ca_file,
                resolve,
            )?,
            connector: raw.connector,
            plugin: raw.plugin.map(resolve),
            name: raw.name,
            settings,
            auth,
            sync: raw.sync,
            limits: raw.limits,
            network,
            schedule: raw.schedule,
        })
    }
}

/// The TOML of a configuration file. Errors give only the parser's message
/// and the line number: the full error quotes the offending line, which
/// could hold a secret written there by mistake.
fn parse_toml(text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        ConfigError::Parse {
            path: PathBuf::new(),
            message: match line {
                Some(line) => format!("line {line}: {}", e.message()),
                None => e.message().to_string(),
            },
        }
    })
}

/// The component's settings as the text the contract passes: strings as
/// they are, numbers and booleans written out; anything else is refused.
fn settings_as_text(
    settings: impl IntoIterator<Item = (String, toml::Value)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    settings
        .into_iter()
        .map(|(name, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(ConfigError::Invalid(format!(
                        "setting `{name}` must be a string, number or boolean, not a {}",
                        other.type_str()
                    )))
                }
            };
            Ok((name, text))
        })
        .collect()
}

/// Refuses `[sync]` values the engine cannot run with: zero counts, and
/// more partitions than a stream may have.
fn check_sync(sync: &SyncConfig) -> Result<(), ConfigError> {
    if sync.page_size == 0
        || sync.partitions == 0
        || sync.concurrency == 0
        || sync.max_attempts == 0
        || sync.lease_seconds == 0
    {
        return Err(ConfigError::Invalid(
            "[sync] page_size, partitions, concurrency, max_attempts and lease_seconds must be at least 1"
                .into(),
        ));
    }
    if sync.partitions > 256 {
        return Err(ConfigError::Invalid(
            "[sync] partitions must be at most 256".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgresql_url_selects_postgresql_and_its_keys_belong_to_it() {
        let c = Config::parse(
            "database = 'postgresql://sync@db.internal:5432/exposure?sslmode=verify-full'\ndatabase_password_env = 'DB_PASSWORD'\ndatabase_ca_file = 'db-ca.pem'\n[settings]\ninstance = 'x.y'",
            Path::new("/etc/x"),
        )
        .unwrap();
        assert_eq!(
            c.database,
            DatabaseConfig::Postgres {
                url: "postgresql://sync@db.internal:5432/exposure?sslmode=verify-full".into(),
                password_env: Some("DB_PASSWORD".into()),
                ca_file: Some(PathBuf::from("/etc/x/db-ca.pem")),
            }
        );
        assert_eq!(c.database.sqlite_file(), None);
        let e = Config::parse(
            "database = 'inventory.db'\ndatabase_password_env = 'DB_PASSWORD'",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("for a PostgreSQL database"), "{e}");
    }

    #[test]
    fn parses_the_documented_example() {
        let c = Config::parse(
            r#"
database = "inventory.db"
[settings]
instance = "contoso.service-now.com"
page = 5
[auth]
method = "basic"
username = "svc_exposure"
password_env = "SERVICENOW_PASSWORD"
"#,
            Path::new("/etc/x"),
        )
        .unwrap();
        assert_eq!(
            c.database,
            DatabaseConfig::Sqlite(PathBuf::from("/etc/x/inventory.db"))
        );
        assert!(c.settings.contains(&("page".into(), "5".into())));
        assert_eq!(c.sync, SyncConfig::default());
    }

    #[test]
    fn parse_errors_do_not_quote_the_file() {
        let e = Config::parse(
            "database='a'\n[settings]\ninstance='x.y'\n[auth]\nmethod='basic'\npassword='hunter2'\n",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 6") && e.contains("password"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_bundled_connector_or_a_plugin_not_both() {
        let c = Config::parse(
            "connector='netbox'\ndatabase='a'\n[settings]\nurl='x.y'",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.connector.as_deref(), Some("netbox"));
        let e = Config::parse(
            "connector='netbox'\nplugin='p.wasm'\ndatabase='a'",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
    }

    #[test]
    fn settings_are_passed_as_text_and_a_table_is_refused() {
        let c = Config::parse(
            "database='a'\n[settings]\nname='x'\npage=5\nratio=0.5\nlive=true",
            Path::new("."),
        )
        .unwrap();
        for (name, text) in [
            ("name", "x"),
            ("page", "5"),
            ("ratio", "0.5"),
            ("live", "true"),
        ] {
            assert!(
                c.settings.contains(&(name.into(), text.into())),
                "{name}: {:?}",
                c.settings
            );
        }
        let e = Config::parse("database='a'\n[settings]\nlist=[1, 2]", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("setting `list` must be a string, number or boolean, not a array"),
            "{e}"
        );
    }

    #[test]
    fn sync_counts_of_zero_and_too_many_partitions_are_refused() {
        for field in [
            "page_size",
            "partitions",
            "concurrency",
            "max_attempts",
            "lease_seconds",
        ] {
            let e = Config::parse(&format!("database='a'\n[sync]\n{field}=0"), Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(e.contains("must be at least 1"), "{field}: {e}");
        }
        let e = Config::parse("database='a'\n[sync]\npartitions=257", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("partitions must be at most 256"), "{e}");
        Config::parse("database='a'\n[sync]\npartitions=256", Path::new(".")).unwrap();
    }

    #[test]
    fn a_schedule_is_read_and_checked() {
        let c = Config::parse(
            "database='a'\n[settings]\ninstance='x.y'\n[schedule]\nevery='30m'",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.schedule.every.as_deref(), Some("30m"));
        let e = Config::parse("database='a'\n[schedule]\nevry='30m'", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("evry"), "{e}");
    }

    #[test]
    fn rejects_unknown_keys() {
        let e = Config::parse(
            "database='a'\nbogus=1\n[settings]\ninstance='x.y'",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn proxy_credentials_and_client_certificates_come_in_pairs() {
        let parse = |network: &str| {
            Config::parse(
                &format!("database='a'\n[settings]\ninstance='x.y'\n[network]\n{network}"),
                Path::new("/etc/x"),
            )
        };
        let proxy = "https_proxy = 'http://proxy.corp:3128'\n";
        let ok = parse(&format!(
            "{proxy}https_proxy_user = 'u'\nhttps_proxy_password_env = 'P'\nclient_cert_file = 'c.pem'\nclient_key_file = 'k.pem'"
        ))
        .unwrap();
        assert_eq!(
            ok.network.client_identity().unwrap(),
            Some(("/etc/x/c.pem".into(), "/etc/x/k.pem".into()))
        );
        for (network, named) in [
            (
                format!("{proxy}https_proxy_user = 'u'"),
                "https_proxy_password_env",
            ),
            (
                "https_proxy_password_env = 'P'".to_string(),
                "no https_proxy",
            ),
            ("client_cert_file = 'c.pem'".to_string(), "client_key_file"),
            (
                "https_proxy = 'http://u:secret@proxy.corp:3128'".to_string(),
                "https_proxy_user",
            ),
            (
                format!("{proxy}https_proxy_user = 'corp:u'\nhttps_proxy_password_env = 'P'"),
                "contains `:`",
            ),
        ] {
            let e = parse(&network).unwrap_err().to_string();
            assert!(e.contains(named), "{network}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
