//! Plain-Rust mirror of the `exposure:connector` WIT types.
//!
//! The connector logic works with these types so that it compiles and is
//! tested natively; `component.rs` converts them to and from the generated
//! WIT bindings when the crate is built as a `wasm32-wasip2` component.

/// One configuration setting the connector accepts (`setting-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingInfo {
    /// Key in the settings list.
    pub name: String,
    /// What the setting means, for operators.
    pub description: String,
    /// Whether reads fail without it.
    pub required: bool,
    /// Value used when absent.
    pub default_value: Option<String>,
}

/// An OAuth 2.0 grant (`oauth2-grant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuth2Grant {
    /// `client_credentials`.
    ClientCredentials,
    /// `password`.
    Password,
    /// `refresh_token`.
    RefreshToken,
}

/// An authentication method the source supports (`auth-method`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic.
    Basic,
    /// OAuth 2.0 with the token endpoint path and the supported grants.
    OAuth2 {
        /// Path of the token endpoint, e.g. `/oauth_token.do`.
        token_path: String,
        /// Supported grants.
        grants: Vec<OAuth2Grant>,
    },
    /// API key in the named header.
    ApiKey {
        /// Header name, e.g. `x-sn-apikey`.
        header_name: String,
    },
}

/// A reference from one stream to another (`stream-reference`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReference {
    /// Field holding the target key.
    pub field: String,
    /// Target stream name.
    pub target_stream: String,
    /// Name under which referencing records are embedded into the target.
    pub embed_as: Option<String>,
}

/// One stream (`stream-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Stream name.
    pub name: String,
    /// Description for operators.
    pub description: String,
    /// Key field of each record.
    pub key_field: String,
    /// JSON Schema of one record.
    pub json_schema: String,
    /// Whether watermarks are honoured.
    pub supports_incremental: bool,
    /// References to other streams.
    pub references: Vec<StreamReference>,
    /// Record field holding the source's last-change time (RFC 3339 UTC).
    pub updated_field: Option<String>,
}

/// What the connector is (`connector-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorInfo {
    /// Connector name.
    pub name: String,
    /// Connector version.
    pub version: String,
    /// Description for operators.
    pub description: String,
    /// Accepted settings.
    pub settings: Vec<SettingInfo>,
    /// Supported authentication methods.
    pub auth_methods: Vec<AuthMethod>,
    /// Readable streams.
    pub streams: Vec<StreamInfo>,
}

/// Result of probing one stream (`stream-check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCheck {
    /// Stream probed.
    pub stream_name: String,
    /// Whether a page could be read.
    pub readable: bool,
    /// Mapped source columns the source lacks.
    pub missing_columns: Vec<String>,
    /// What went wrong, when not readable (or a caveat).
    pub message: Option<String>,
}

/// A partition of a stream (`partition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Zero-based index.
    pub index: u32,
    /// Number of partitions.
    pub count: u32,
}

/// Request for one page (`read-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// Stream to read.
    pub stream_name: String,
    /// Partition to read.
    pub partition: Partition,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
    /// Incremental watermark.
    pub watermark: Option<String>,
    /// Watermark of the last complete read: deletions since then are reported.
    pub deletions_since: Option<String>,
    /// Preferred rows per page.
    pub page_size: u32,
}

/// Page counters (`page-counters`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCounters {
    /// Rows asked for.
    pub rows_requested: u32,
    /// Rows returned.
    pub rows_returned: u32,
    /// Total the server reported.
    pub server_total: Option<u64>,
    /// Requests made.
    pub requests: u32,
}

/// A record the source deleted (`tombstone`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// Key of the deleted record.
    pub key: String,
    /// When it was deleted (RFC 3339 UTC), if known.
    pub deleted_at: Option<String>,
}

/// One page of records (`page`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// JSON object records.
    pub records: Vec<String>,
    /// Records the source deleted since `ReadRequest::deletions_since`.
    pub deleted: Vec<Tombstone>,
    /// Start of the read's retention window (RFC 3339 UTC), if it has one.
    pub window_start: Option<String>,
    /// Cursor for the next page; `None` when done.
    pub next_cursor: Option<String>,
    /// Watermark to store once the stream completes.
    pub watermark: Option<String>,
    /// Counters.
    pub counters: PageCounters,
}
