//! What the console shows of a connection: plain data the host fills in
//! (the console knows no store, no configuration file and no component).

/// A connection's health, as the host last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// The last sync completed.
    Connected,
    /// The last sync stopped for a reason that passes by itself.
    TemporaryFailure,
    /// The last sync failed and needs someone to act.
    Failed,
}

impl HealthState {
    /// Every state, in the order metrics list them.
    pub const ALL: [HealthState; 3] = [
        HealthState::Connected,
        HealthState::TemporaryFailure,
        HealthState::Failed,
    ];

    /// The state's name as `status` prints it.
    pub fn name(self) -> &'static str {
        match self {
            HealthState::Connected => "connected",
            HealthState::TemporaryFailure => "temporary failure",
            HealthState::Failed => "failed",
        }
    }

    /// The state as a metric label value and CSS class.
    pub fn slug(self) -> &'static str {
        match self {
            HealthState::Connected => "connected",
            HealthState::TemporaryFailure => "temporary-failure",
            HealthState::Failed => "failed",
        }
    }
}

/// The health and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthView {
    /// The state.
    pub state: HealthState,
    /// The troubleshooting text when not connected.
    pub message: Option<String>,
    /// Since when (RFC 3339).
    pub since: String,
}

/// The last finished sync.
#[derive(Debug, Clone, PartialEq)]
pub struct LastSync {
    /// When it ended (RFC 3339).
    pub finished_at: String,
    /// When it ended, seconds since the Unix epoch (for metrics).
    pub finished_unix: Option<i64>,
    /// How long it took.
    pub seconds: f64,
    /// HTTP requests it sent.
    pub requests: u64,
}

impl LastSync {
    /// How long it took, for people: milliseconds below a second (a short
    /// sync is not "0.0 s"), else seconds with one decimal.
    pub fn duration_text(&self) -> String {
        if self.seconds < 1.0 {
            format!("{} ms", (self.seconds * 1000.0).round() as u64)
        } else {
            format!("{:.1} s", self.seconds)
        }
    }
}

/// One stream of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamView {
    /// The stream's name.
    pub stream: String,
    /// Live records stored.
    pub records: u64,
    /// Retries in the last sync, by reason (`rate-limited`, ...).
    pub retries: Vec<(String, u64)>,
    /// Rows the source counted but hid from the user in the last sync.
    pub hidden_by_acl: u64,
}

/// One configured connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionView {
    /// The connection's name (unique in the host).
    pub name: String,
    /// The connector that serves it (its `info` name).
    pub connector: String,
    /// The origin it reads from.
    pub endpoint: String,
    /// Its health (none before its first sync).
    pub health: Option<HealthView>,
    /// Its last finished sync.
    pub last_sync: Option<LastSync>,
    /// Its streams.
    pub streams: Vec<StreamView>,
    /// Why the host cannot run it, when its configuration is broken.
    pub problem: Option<String>,
}
