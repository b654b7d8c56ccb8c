//! What the Connect form is made of (filled in by the host from a
//! connector's `info`), what an operator submits, and what a connection
//! test found.

/// A connector an operator can connect to, as its `info` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorForm {
    /// The name configurations use (`servicenow`, `netbox`).
    pub connector: String,
    /// The component's own name and version, e.g. `servicenow-cmdb 0.1.0`.
    pub title: String,
    /// What it reads.
    pub description: String,
    /// Its settings, in the order it declares them.
    pub settings: Vec<SettingField>,
    /// The ways it can authenticate, in the order it declares them.
    pub auth_methods: Vec<AuthChoice>,
}

/// One setting of a connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingField {
    /// The key in `[settings]`.
    pub name: String,
    /// What it means.
    pub description: String,
    /// Whether the connector needs it.
    pub required: bool,
    /// The value used when it is left empty.
    pub default_value: Option<String>,
    /// Whether it is the one origin the connector may contact.
    pub endpoint: bool,
}

/// One way to authenticate, with the fields it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthChoice {
    /// The `[auth] method` it writes, e.g. `basic`.
    pub method: String,
    /// What an operator reads, e.g. "User name and password".
    pub label: String,
    /// Its fields, in the order the form shows them.
    pub fields: Vec<AuthField>,
}

/// One field of an authentication method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthField {
    /// The field's key, e.g. `username` or `password`.
    pub name: String,
    /// What an operator reads.
    pub label: String,
    /// A secret: kept in an owner-only file, never shown again.
    pub secret: bool,
}

/// A secret an operator typed. `Debug` prints `<redacted>`; nothing in
/// the console renders it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: String) -> SecretValue {
        SecretValue(value)
    }

    /// The value, for the host that writes or uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A submitted Connect form, checked against the connector's form: only
/// its settings, only the chosen method's fields, empty values left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The connector.
    pub connector: String,
    /// The connection's identifier: its file's stem in the configuration directory.
    pub id: String,
    /// Time between syncs (`6h`, `30m`), when not the host's default.
    pub every: Option<String>,
    /// Settings given a value.
    pub settings: Vec<(String, String)>,
    /// The chosen `[auth] method`.
    pub auth_method: Option<String>,
    /// The chosen method's plain fields given a value (`username`, `client_id`).
    pub auth_fields: Vec<(String, String)>,
    /// The chosen method's secrets (`password`, `client_secret`, `api_key`).
    pub secrets: Vec<(String, SecretValue)>,
}

/// What a connection test found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestOutcome {
    /// Why the test could not pass as a whole (a form value, the
    /// credentials, the network), with what to do.
    pub problem: Option<String>,
    /// Per stream: readable, and what is missing.
    pub streams: Vec<StreamCheckView>,
}

impl TestOutcome {
    /// A test that stopped at `problem`.
    pub fn failed(problem: impl Into<String>) -> TestOutcome {
        TestOutcome {
            problem: Some(problem.into()),
            streams: Vec::new(),
        }
    }

    /// Whether every stream is readable.
    pub fn passed(&self) -> bool {
        self.problem.is_none() && self.streams.iter().all(|s| s.readable)
    }
}

/// What the test found for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCheckView {
    /// The stream.
    pub stream: String,
    /// Whether the account can read it.
    pub readable: bool,
    /// Mapped columns the account cannot see (those fields stay empty).
    pub missing_columns: Vec<String>,
    /// What the connector said.
    pub message: Option<String>,
}

/// What "Connect" did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connected {
    /// The files are written and the first sync started: connection `id`.
    Started {
        /// The new connection's identifier.
        id: String,
    },
    /// Nothing was written: the test did not pass, or the form could not be used.
    Refused(TestOutcome),
}
