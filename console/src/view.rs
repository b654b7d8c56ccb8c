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
    /// Its identifier in URLs (for `serve`, the configuration file's stem).
    pub id: String,
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
    /// Why what its database holds cannot be read now (a PostgreSQL server
    /// out of reach): the other connections are shown all the same.
    pub unreadable: Option<String>,
    /// Its schedule, when the host keeps it in sync.
    pub schedule: Option<ScheduleView>,
}

/// Where a connection's schedule stands (sent as JSON to follow a sync live).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    /// A sync is running.
    pub running: bool,
    /// When the next sync starts (RFC 3339), when one is planned.
    pub next_run: Option<String>,
    /// Disconnected: what happened to its records. No more syncs.
    pub disconnected: Option<String>,
    /// The running sync's progress, per stream.
    pub progress: Vec<ProgressView>,
}

/// One stream of a running sync.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProgressView {
    /// The stream.
    pub stream: String,
    /// Records committed so far.
    pub records: u64,
    /// What the server counted, when it said.
    pub expected: Option<u64>,
    /// How it ended, once it did.
    pub verdict: Option<String>,
}

impl ConnectionView {
    /// The path of its page, the identifier percent-encoded.
    pub fn href(&self) -> String {
        ConnectionView::href_of(&self.id)
    }

    /// The path of the page of connection `id`, percent-encoded.
    pub fn href_of(id: &str) -> String {
        format!("/connections/{}", segment(id))
    }

    /// The path of the browser of its stream `stream`.
    pub fn stream_href(&self, stream: &str) -> String {
        format!("{}/streams/{}", self.href(), segment(stream))
    }

    /// The path of record `key` of its stream `stream`.
    pub fn record_href(&self, stream: &str, key: &str) -> String {
        format!("{}/records/{}", self.stream_href(stream), segment(key))
    }
}

/// `text` as one URL path segment (or query value): unreserved characters
/// kept, the rest percent-encoded.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A connection with its recent runs (its page).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionDetail {
    /// The connection as its tile shows it.
    pub connection: ConnectionView,
    /// Its recent runs, newest first.
    pub runs: Vec<RunView>,
    /// Its recent changes of health, newest first (`since`: when each began).
    pub health_history: Vec<HealthView>,
}

/// One sync of a connection.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended; none while it runs, or when it was killed.
    pub finished_at: Option<String>,
    /// `running`, `complete` or `incomplete`.
    pub status: String,
    /// What it read, per stream (none without a report).
    pub streams: Vec<StreamRunView>,
}

/// One stream in one run: its completeness report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRunView {
    /// The stream.
    pub stream: String,
    /// `full` or `incremental`.
    pub mode: String,
    /// `complete`, or why not.
    pub verdict: String,
    /// Its partitions.
    pub partitions: Vec<PartitionRunView>,
}

/// One partition of a stream in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRunView {
    /// Its index.
    pub index: u32,
    /// Records stored.
    pub records: u64,
    /// Pages read.
    pub pages: u64,
    /// Retries, with their reasons.
    pub retries: Vec<String>,
    /// Rows the source counted but hid from the user, when known.
    pub hidden_by_acl: Option<u64>,
    /// Whether it reached its end.
    pub complete: bool,
    /// Why it stopped, when it did not.
    pub error: Option<String>,
}

/// A record's fields as text, in the record's order.
pub type Fields = Vec<(String, String)>;

/// One page of a stream's records, found by a search.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordsView {
    /// The connection.
    pub connection: ConnectionView,
    /// The stream browsed.
    pub stream: String,
    /// What was searched for (empty: everything).
    pub term: String,
    /// Records matching, in all.
    pub total: u64,
    /// The first record's position in them.
    pub offset: u64,
    /// Records per page.
    pub limit: u64,
    /// This page: each record's key and first fields.
    pub rows: Vec<(String, Fields)>,
}

impl RecordsView {
    /// The query string of the page `offset` of the same search.
    pub fn page_query(&self, offset: u64) -> String {
        // A path segment's encoding leaves only unreserved characters: a
        // query value too.
        format!("?q={}&offset={offset}", segment(&self.term))
    }

    /// The previous page's offset, if there is one.
    pub fn previous(&self) -> Option<u64> {
        (self.offset > 0).then(|| self.offset.saturating_sub(self.limit))
    }

    /// The next page's offset, if there is one.
    pub fn next(&self) -> Option<u64> {
        let next = self.offset + self.limit;
        (next < self.total).then_some(next)
    }

    /// The last record's position on this page, counted from 1.
    pub fn last_shown(&self) -> u64 {
        self.offset + self.rows.len() as u64
    }
}

/// One record with what hangs off it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordView {
    /// The connection.
    pub connection: ConnectionView,
    /// Its stream.
    pub stream: String,
    /// Its key.
    pub key: String,
    /// Its fields.
    pub fields: Fields,
    /// Records embedded into it, per embedding stream: (the name they are
    /// embedded under, their stream, their fields).
    pub embedded: Vec<(String, String, Vec<Fields>)>,
    /// Records it names: (its field, the stream named, the key, that
    /// record's fields when stored).
    pub references: Vec<(String, String, String, Option<Fields>)>,
}
