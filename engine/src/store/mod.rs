//! The database: records, per-partition cursors, stream generations, run
//! reports and health. SQLite by default (one file); PostgreSQL when a
//! deployment shares one database between hosts.
//!
//! Invariants (both backends):
//! - A page's records and the cursor that follows them are committed in one
//!   transaction, so a killed sync resumes after the last committed page with
//!   nothing lost and nothing doubled (records are upserted by key).
//! - Each full read of a stream has a generation number. Records carry the
//!   generation that last saw them; when every partition of a generation has
//!   finished, records of older generations are marked deleted.
//! - A deleted record says why ([`DeletionReason`]): the source reported the
//!   deletion (a tombstone, applied with the page that carried it), it aged
//!   out of the read's retention window, or a full read no longer returned it.
//!
//! [`Store`] is what the engine and the host use; each backend implements
//! the crate's `Backend` trait, and the planning of a read (`plan.rs`) is
//! shared.

pub mod deployment;
pub mod lease;
mod plan;
mod postgres;
mod record_key;
mod sqlite;
mod sync_lock;

pub use self::postgres::PostgresTarget;
pub use sqlite::LATEST_VERSION;
pub use sync_lock::SyncLock;

use lease::{FencedPage, HeldLease, Lease};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// One record to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Key within the stream.
    pub key: String,
    /// The JSON object.
    pub data: String,
    /// Key of the record this one is embedded into, if the stream embeds.
    pub parent: Option<String>,
}

impl StoredRecord {
    /// Reads a record's key and embedding parent in one pass over its JSON,
    /// without building a tree or a map; keeps the JSON text as the record's data.
    pub fn index(
        stream: &str,
        key_field: &str,
        embed_field: Option<&str>,
        json: String,
    ) -> Result<StoredRecord, String> {
        let found = record_key::read(&json, key_field, embed_field).map_err(|e| {
            format!("the component returned a record of `{stream}` that is not a JSON object ({e})")
        })?;
        let key = found.key.filter(|k| !k.is_empty()).ok_or_else(|| {
            format!(
                "the component returned a record of `{stream}` without its key field `{key_field}` (a string or an integer)"
            )
        })?;
        Ok(StoredRecord {
            key,
            data: json,
            parent: found.parent,
        })
    }
}

/// A record the source reported deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTombstone {
    /// Key within the stream.
    pub key: String,
    /// When the source deleted it, if it said.
    pub deleted_at: Option<String>,
}

/// Why a stored record is marked deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletionReason {
    /// The source reported the deletion (for ServiceNow: `sys_audit_delete`).
    DeletedAtSource,
    /// The record fell out of the read's retention window (`active_within_days`).
    AgedOut,
    /// A full read did not return it: deleted where the source keeps no
    /// audit, hidden by an ACL, or moved out of the stream's table.
    NotReturned,
}

impl DeletionReason {
    /// `deleted-at-source`, `aged-out` or `not-returned`.
    pub fn name(self) -> &'static str {
        match self {
            DeletionReason::DeletedAtSource => "deleted-at-source",
            DeletionReason::AgedOut => "aged-out",
            DeletionReason::NotReturned => "not-returned",
        }
    }
}

/// One page to commit, with the partition state that follows it.
#[derive(Debug, Clone, Copy)]
pub struct PageCommit<'a> {
    /// Generation of the read.
    pub generation: i64,
    /// Partition index.
    pub partition: u32,
    /// Records to upsert.
    pub records: &'a [StoredRecord],
    /// Records the source reported deleted.
    pub tombstones: &'a [StoredTombstone],
    /// Cursor of the next page (`None`: the partition is done).
    pub next_cursor: Option<&'a str>,
    /// Watermark the read will record.
    pub watermark: Option<&'a str>,
    /// Start of the read's retention window.
    pub window_start: Option<&'a str>,
}

impl<'a> PageCommit<'a> {
    /// A page of `records` alone: no tombstones, no watermark, no window.
    pub fn of_records(
        generation: i64,
        partition: u32,
        records: &'a [StoredRecord],
        next_cursor: Option<&'a str>,
    ) -> PageCommit<'a> {
        PageCommit {
            generation,
            partition,
            records,
            tombstones: &[],
            next_cursor,
            watermark: None,
            window_start: None,
        }
    }
}

/// Records marked deleted when a read completed, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FinishedStream {
    /// Marked aged out.
    pub aged_out: u64,
    /// Marked no longer returned (full reads only).
    pub not_returned: u64,
}

/// Where one partition of a stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// Partition index.
    pub index: u32,
    /// Cursor to continue from (`None`: from the start).
    pub cursor: Option<String>,
    /// Whether the partition has been read to its end.
    pub done: bool,
}

/// Whether a read covers the whole stream or only what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadMode {
    /// Every record; records not seen are then marked deleted.
    Full,
    /// Records changed at or after the watermark of the last complete read.
    Incremental {
        /// The stored watermark the read starts from.
        watermark: String,
    },
}

impl ReadMode {
    /// `full` or `incremental`.
    pub fn name(&self) -> &'static str {
        match self {
            ReadMode::Full => "full",
            ReadMode::Incremental { .. } => "incremental",
        }
    }
}

/// The plan for reading one stream in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    /// Generation of the current full read (incremental reads keep it).
    pub generation: i64,
    /// Whether an interrupted read is being resumed.
    pub resumed: bool,
    /// Full or incremental.
    pub mode: ReadMode,
    /// Partition states.
    pub partitions: Vec<PartitionState>,
    /// Watermark of the last complete read (full reads too): the connector
    /// reports deletions since then.
    pub deletions_since: Option<String>,
}

/// What a sync asks of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRequest {
    /// Partitions to read it in when reading it fully.
    pub partitions: u32,
    /// Partitions for an incremental read (which returns only what changed,
    /// so more partitions mostly add requests).
    pub incremental_partitions: u32,
    /// Read everything even when an incremental read is possible.
    pub force_full: bool,
    /// Whether the component honours watermarks for this stream.
    pub supports_incremental: bool,
}

impl StreamRequest {
    /// Partitions of a read of this kind.
    fn partitions_for(&self, incremental: bool) -> u32 {
        if incremental {
            self.incremental_partitions
        } else {
            self.partitions
        }
    }
}

/// Whether a connection works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// The last run completed.
    Connected,
    /// The last run failed for a reason that passes by itself (retried at the next run).
    TemporaryFailure,
    /// The last run failed for a reason that needs the operator.
    Failed,
}

impl HealthState {
    /// `connected`, `temporary failure` or `failed`.
    pub fn name(self) -> &'static str {
        match self {
            HealthState::Connected => "connected",
            HealthState::TemporaryFailure => "temporary failure",
            HealthState::Failed => "failed",
        }
    }

    fn from_name(name: &str) -> HealthState {
        match name {
            "connected" => HealthState::Connected,
            "temporary failure" => HealthState::TemporaryFailure,
            _ => HealthState::Failed,
        }
    }
}

/// A connection's health with the error behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The state.
    pub state: HealthState,
    /// The error case (`unauthenticated`, `rate-limited`, ...), if any.
    pub error_kind: Option<String>,
    /// What happened and what to do, if anything.
    pub message: Option<String>,
}

/// When and why a record was marked deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deletion<'a> {
    /// When (RFC 3339).
    pub at: &'a str,
    /// Why: a [`DeletionReason`] name.
    pub reason: &'a str,
}

/// A stored record: its key and its JSON text.
pub type KeyedRecord = (String, String);

/// One page of a search, and how many records match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Records matching, in all.
    pub total: u64,
    /// This page's records, in key order.
    pub records: Vec<KeyedRecord>,
}

/// A database error, from whichever backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite's.
    #[error(transparent)]
    Sqlite(#[from] SqliteError),
    /// PostgreSQL's.
    #[error("PostgreSQL: {}", describe_postgres(.0))]
    Postgres(#[from] ::postgres::Error),
    /// A page was not written: its lease was lost (expired, or claimed by
    /// another worker since).
    #[error("partition {partition} of `{stream}` of {connection} is no longer this worker's (its lease expired or another worker took it over); nothing of the page was written")]
    Fenced {
        /// The connection.
        connection: String,
        /// The stream.
        stream: String,
        /// The partition.
        partition: u32,
    },
    /// Leases were asked of a SQLite store.
    #[error("{0} needs a PostgreSQL database (database = \"postgresql://…\"); a SQLite file has one writer")]
    NeedsPostgres(&'static str),
    /// The PostgreSQL session that holds a connection's sync lock could
    /// not be opened.
    #[error("cannot open the PostgreSQL session that keeps two syncs of a connection from running at once: {0}")]
    SyncLockSession(String),
    /// The lock file of a connection's syncs could not be made or locked.
    #[error("cannot lock {}, which keeps two syncs of a connection from running at once: {source}; check that the database's directory is writable", path.display())]
    SyncLock {
        /// The lock file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the database server went away (restarted, failed over, shut
    /// down, or refused connections for a while): the next call connects
    /// again (the backend replaces a session its server ended), so a
    /// long-lived process waits and carries on rather than giving up.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            StoreError::Postgres(e) => is_server_unreachable(e),
            _ => false,
        }
    }

    /// Whether the failure passes by itself: the server went away
    /// ([`StoreError::is_connection_lost`]), or it gave up on a statement
    /// that waited for another session's lock or conflicted with another
    /// session (cancelled at `statement_timeout`, a deadlock). Nothing of
    /// the statement was written; a sync ends as a temporary failure (exit
    /// 75) and a worker waits and looks again.
    pub fn is_temporary(&self) -> bool {
        match self {
            StoreError::Postgres(e) => is_server_unreachable(e) || is_statement_given_up(e),
            _ => false,
        }
    }

    /// Whether the statement was given up, having written nothing:
    /// cancelled (as a stop's [`StatementCanceller`] does), or tired of
    /// waiting for a lock another session or process held.
    pub fn is_given_up(&self) -> bool {
        use rusqlite::ErrorCode as Code;
        match self {
            StoreError::Postgres(e) => is_statement_given_up(e),
            StoreError::Sqlite(SqliteError(e)) => matches!(
                e.sqlite_error_code(),
                Some(Code::OperationInterrupted | Code::DatabaseBusy | Code::DatabaseLocked)
            ),
            _ => false,
        }
    }
}

/// SQLite's error, saying what to do when the database file itself is the
/// cause: its disk full, the file read-only, damaged, or held by another
/// process. Its source is the source of SQLite's error (the code and
/// SQLite's own words), so that an error chain names each once.
#[derive(Debug)]
pub struct SqliteError(pub rusqlite::Error);

impl std::fmt::Display for SqliteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe_sqlite(&self.0))
    }
}

impl std::error::Error for SqliteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(SqliteError(e))
    }
}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> Self {
        OpenError::Sqlite(SqliteError(e))
    }
}

fn describe_sqlite(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode as Code;
    let advice = match e.sqlite_error_code() {
        Some(Code::DiskFull) => {
            "the disk that holds the database has no room left: free space there (or move the database), then sync again; committed pages are kept, and the next sync resumes after them"
        }
        Some(Code::ReadOnly) => {
            "the database file or its directory is not writable by this user: give the user write access to both (SQLite writes its `-wal` and `-shm` files beside the database)"
        }
        Some(Code::DatabaseBusy | Code::DatabaseLocked) => {
            "another process held the database's write lock for more than 30 s, or while a stopped sync waited for it: look for a `sqlite3` shell, a backup or another host holding it"
        }
        Some(Code::OperationInterrupted) => {
            "the statement was cancelled because the sync was stopped; nothing of it was written, and the next sync does it again"
        }
        Some(Code::NotADatabase | Code::DatabaseCorrupt) => {
            "the database file is damaged or is not a database: move it away or restore a backup; a sync into a new file reads everything again"
        }
        Some(Code::CannotOpen) => {
            "the database file cannot be opened: check that its directory exists and that this user may write there"
        }
        _ => return e.to_string(),
    };
    format!("{e}; {advice}")
}

/// A PostgreSQL error with the server's own message when it sent one (a
/// refused password, an unknown database); else with its causes (a refused
/// connection, a TLS failure).
pub(crate) fn describe_postgres(e: &::postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let said = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        return match advice_on_a_failed_statement(db.code().code()) {
            Some(advice) => format!("{said}; {advice}"),
            None => said,
        };
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether PostgreSQL's `e` says the server is out of reach for now
/// (restarted, failed over, shutting down or starting up, out of
/// connection slots, or the socket failed: reset, refused, timed out), as
/// opposed to a refusal that needs the operator (a wrong password, an
/// unknown database, a statement refused).
pub(crate) fn is_server_unreachable(e: &::postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let code = code.code();
            // Class 08: connection exceptions; 57P01-03: shut down or
            // starting up; 53300: too many connections.
            code.starts_with("08") || ["57P01", "57P02", "57P03", "53300"].contains(&code)
        }
        // No SQLSTATE: the socket failed (reset, refused, timed out).
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// SQLSTATEs of a statement the server gave up on, which the same
/// statement may pass later: cancelled (57014: `statement_timeout`, or an
/// administrator's `pg_cancel_backend`), a lock not granted in time
/// (55P03: `lock_timeout`), a deadlock (40P01) or a serialization failure
/// (40001).
const STATEMENT_GIVEN_UP: [&str; 4] = ["57014", "55P03", "40P01", "40001"];

/// Whether PostgreSQL's `e` is a statement the server gave up on while
/// it waited or ran ([`STATEMENT_GIVEN_UP`]): a failure that passes by
/// itself, as a lock held for a while by another session does.
pub(crate) fn is_statement_given_up(e: &::postgres::Error) -> bool {
    e.code()
        .is_some_and(|code| STATEMENT_GIVEN_UP.contains(&code.code()))
}

/// What to do about a statement the server gave up on, by its SQLSTATE.
fn advice_on_a_failed_statement(code: &str) -> Option<&'static str> {
    match code {
        "57014" | "55P03" => Some(
            "the server cancelled a statement that waited or ran too long (connector-host's sessions allow 10 min unless the server's configuration, the role, the database or the URL's `options` set `statement_timeout`): look in pg_stat_activity and pg_locks for a session holding a lock on the connector's tables (VACUUM FULL, ALTER TABLE, a transaction left open); nothing of the statement was written",
        ),
        "40P01" | "40001" => Some(
            "the server ended a transaction that conflicted with another session's; nothing of it was written",
        ),
        _ => None,
    }
}

/// Why a database cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite refused (the file is not a database, is locked, …).
    #[error(transparent)]
    Sqlite(#[from] SqliteError),
    /// PostgreSQL refused a statement while the schema was set up.
    #[error("PostgreSQL: {}", describe_postgres(.0))]
    Postgres(#[from] ::postgres::Error),
    /// The PostgreSQL server refused the login (a wrong password or user,
    /// no `pg_hba.conf` entry, an unknown database) or the TLS handshake.
    #[error("cannot connect to the PostgreSQL database: {0}")]
    Connect(String),
    /// The PostgreSQL server could not be reached for now (down, starting
    /// up, restarting, out of connection slots, or the network failed): a
    /// later attempt may succeed without anyone changing anything.
    #[error("cannot reach the PostgreSQL server: {0}")]
    Unreachable(String),
    /// The database's address or TLS settings are unusable.
    #[error("{0}")]
    Invalid(String),
    /// A newer connector-host wrote it.
    #[error("the database has schema version {found}, newer than the {known} this connector-host knows: it was written by a newer release; run that release, or point `database` at another database")]
    Newer {
        /// The database's schema version.
        found: u32,
        /// The latest this build knows.
        known: u32,
    },
}

impl OpenError {
    /// Whether the database could not be opened for now, which passes by
    /// itself (the server out of reach, as `StoreError::is_connection_lost`
    /// tells a lost session, or a statement the server gave up on, as
    /// `StoreError::is_temporary` tells): a sync exits 75 and a worker
    /// waits, where anything else needs the operator.
    pub fn is_temporary(&self) -> bool {
        match self {
            OpenError::Unreachable(_) => true,
            OpenError::Postgres(e) => is_server_unreachable(e) || is_statement_given_up(e),
            _ => false,
        }
    }
}

/// `term` with LIKE's wildcards (and the escape) escaped.
pub(crate) fn escape_like(term: &str) -> String {
    term.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Each stream of the connection `$1` (only the stream `$2` unless it is
/// NULL), with all its records and its deleted ones, in SQL both backends
/// speak. It counts in the index of the records' keys and in
/// `records_deleted` (schema version 6 of each), and reads no record's
/// row: at 100k devices 28 ms against 200 ms on SQLite (BENCHMARKS.md,
/// "Counting a connection's records"). [`live_and_deleted`] makes its rows
/// the counts.
pub(crate) const COUNTS_SQL: &str = "SELECT s.stream,
         (SELECT COUNT(*) FROM records r WHERE r.stream_id = s.id),
         (SELECT COUNT(*) FROM records r WHERE r.stream_id = s.id AND r.deleted_at IS NOT NULL)
     FROM stream_ids s
     WHERE s.connection = $1 AND (CAST($2 AS TEXT) IS NULL OR s.stream = $2)
     ORDER BY s.stream";

/// The rows of [`COUNTS_SQL`] (stream, all, deleted) as
/// [`Store::counts`] gives them: each stream that has records, with its
/// live and its deleted ones.
pub(crate) fn live_and_deleted(
    rows: impl IntoIterator<Item = (String, u64, u64)>,
) -> Vec<(String, u64, u64)> {
    rows.into_iter()
        .filter(|(_, all, _)| *all > 0)
        .map(|(stream, all, deleted)| (stream, all.saturating_sub(deleted), deleted))
        .collect()
}

/// A search's total when its term is empty: the stream's live records, as
/// [`COUNTS_SQL`] for that one stream counts them (reading no record's row,
/// where counting the search's matches reads every one).
pub(crate) fn live_of(counts: Vec<(String, u64, u64)>) -> u64 {
    counts.first().map_or(0, |(_, live, _)| *live)
}

/// A search's [`Found`] from its page read in one pass: the page's keys,
/// each with the number of matches beside it (`COUNT(*) OVER ()`); `count`
/// counts them on their own when the page is past the last match; `record`
/// reads a key's record (one deleted since is left out).
pub(crate) fn found_of<B: ?Sized>(
    backend: &mut B,
    page: Vec<(String, i64)>,
    offset: u64,
    count: impl FnOnce(&mut B) -> Result<u64, StoreError>,
    record: impl Fn(&mut B, &str) -> Result<Option<String>, StoreError>,
) -> Result<Found, StoreError> {
    let total = match page.first() {
        Some((_, total)) => *total as u64,
        None if offset == 0 => 0,
        None => count(backend)?,
    };
    let mut records = Vec::with_capacity(page.len());
    for (key, _) in page {
        if let Some(data) = record(backend, &key)? {
            records.push((key, data));
        }
    }
    Ok(Found { total, records })
}

/// What a record's upsert does to a record already stored, in SQL both
/// backends speak (after `INSERT INTO records (…) VALUES/SELECT …`): the
/// new data, parent and generation; `changed_at` kept when the data is the
/// same and the record was not deleted; a deleted record live again.
pub(crate) const UPSERT_RECORD_CONFLICT: &str = "ON CONFLICT (stream_id, key) DO UPDATE SET
    changed_at = CASE WHEN records.data IS NOT DISTINCT FROM excluded.data AND records.deleted_at IS NULL
                      THEN records.changed_at ELSE excluded.changed_at END,
    data = excluded.data,
    parent = excluded.parent,
    generation = excluded.generation,
    deleted_at = NULL,
    deletion_reason = NULL";

/// The tables both backends keep a connection's state in, by its name:
/// what deleting a connection deletes after its records (which are keyed
/// by the ids in `stream_ids`, the first of these).
pub(crate) const CONNECTION_TABLES: [&str; 6] = [
    "stream_ids",
    "streams",
    "partitions",
    "health",
    "health_history",
    "runs",
];

/// The current UTC time, RFC 3339 (host clock; bookkeeping only).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .expect("formatting the current time")
}

/// One run as the `runs` table keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRun {
    /// Run id.
    pub id: i64,
    /// When it started (UTC, RFC 3339).
    pub started_at: String,
    /// When it finished; none while running, or when it was killed.
    pub finished_at: Option<String>,
    /// `running`, `complete` or `incomplete`.
    pub status: String,
    /// The run report, JSON.
    pub report: Option<String>,
}

/// What receives each record of a stream: key, JSON text, and when and why
/// it was deleted.
pub type EachRecord<'a> = dyn FnMut(&str, &str, Option<Deletion<'_>>) -> std::io::Result<()> + 'a;

/// A record of an embedded stream, with the keys of its ancestors (the
/// exported record's first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedRow {
    /// The keys of its ancestors, from the exported record down.
    pub path: Vec<String>,
    /// Its key.
    pub key: String,
    /// Its JSON text.
    pub data: String,
}

/// The rows of one query of a [`Store::merged_read`], in its order.
pub trait RowCursor {
    /// The next row; `None` at the end.
    fn next_row(&mut self) -> anyhow::Result<Option<EmbeddedRow>>;
}

/// One ordered query of embedded rows: SQL with `?1`, `?2`… placeholders
/// (each backend writes them its way) and its text parameters. Its columns:
/// the ancestor keys, then the key and the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowQuery {
    /// The statement.
    pub sql: String,
    /// Its parameters, in placeholder order.
    pub params: Vec<String>,
}

/// What receives each record of a merged read, with the cursors of the
/// embedded queries.
pub type EachMerged<'a> = dyn FnMut(&str, &str, Option<Deletion<'_>>, &mut [Box<dyn RowCursor + '_>]) -> std::io::Result<()>
    + 'a;

/// What a database backend does; [`Store`] documents each operation.
pub(crate) trait Backend: Send {
    /// Before each call: a backend whose connection to its server was lost
    /// (the server restarted, failed over, or ended the session) connects
    /// again, so that one failed call is all a restart costs. Nothing for
    /// SQLite, which has no server.
    fn reconnect_if_lost(&mut self) {}
    fn begin_stream(
        &mut self,
        connection: &str,
        stream: &str,
        request: StreamRequest,
    ) -> Result<StreamPlan, StoreError>;
    fn commit_page(
        &mut self,
        connection: &str,
        stream: &str,
        page: PageCommit<'_>,
        fence: Option<FencedPage<'_>>,
    ) -> Result<u64, StoreError>;
    fn claim(
        &mut self,
        _holder: &str,
        _lease: Duration,
        _connections: &[String],
    ) -> Result<Option<Lease>, StoreError> {
        Err(StoreError::NeedsPostgres(
            "sharing partitions between workers",
        ))
    }
    fn start_due_run(
        &mut self,
        _connection: &str,
        _streams: &[deployment::RunStream],
    ) -> Result<Option<i64>, StoreError> {
        Err(StoreError::NeedsPostgres("a run shared by workers"))
    }
    fn end_partition(
        &mut self,
        _held: &Lease,
        _report: &str,
        _end: deployment::PartitionEnd,
    ) -> Result<(), StoreError> {
        Err(StoreError::NeedsPostgres("a lease"))
    }
    fn finish_run_stream(
        &mut self,
        _held: &Lease,
        _updated_field: Option<&str>,
    ) -> Result<(), StoreError> {
        Err(StoreError::NeedsPostgres("a run shared by workers"))
    }
    fn runs_in_progress(&mut self, _connections: &[String]) -> Result<Vec<String>, StoreError> {
        Err(StoreError::NeedsPostgres("a run shared by workers"))
    }
    fn finish_run_if_over(
        &mut self,
        _connection: &str,
        _updated_fields: &[(String, Option<String>)],
        _end: &mut dyn FnMut(&deployment::RunParts) -> deployment::RunEnd,
    ) -> Result<Option<deployment::RunEnd>, StoreError> {
        Err(StoreError::NeedsPostgres("a run shared by workers"))
    }
    fn update_pacing(
        &mut self,
        _connection: &str,
        _update: &mut dyn FnMut(&str, u64) -> String,
    ) -> Result<(), StoreError> {
        Err(StoreError::NeedsPostgres("rate limits shared by workers"))
    }
    fn renew(&mut self, _held: &Lease, _lease: Duration) -> Result<bool, StoreError> {
        Err(StoreError::NeedsPostgres("a lease"))
    }
    fn release(&mut self, _held: &Lease) -> Result<(), StoreError> {
        Err(StoreError::NeedsPostgres("a lease"))
    }
    /// None on a store without leases.
    fn leases(&mut self, _connection: &str) -> Result<Vec<HeldLease>, StoreError> {
        Ok(Vec::new())
    }
    fn finish_stream(
        &mut self,
        connection: &str,
        stream: &str,
        plan: &StreamPlan,
        updated_field: Option<&str>,
    ) -> Result<FinishedStream, StoreError>;
    fn lock_syncs(&mut self, connection: &str) -> Result<Option<SyncLock>, StoreError>;
    fn start_run(&mut self, connection: &str) -> Result<i64, StoreError>;
    fn finish_run(&mut self, run: i64, status: &str, report: &str) -> Result<(), StoreError>;
    fn set_health(&mut self, connection: &str, health: &Health) -> Result<(), StoreError>;
    fn health_history(
        &mut self,
        connection: &str,
        n: u32,
    ) -> Result<Vec<(Health, String)>, StoreError>;
    fn health(&mut self, connection: &str) -> Result<Option<(Health, String)>, StoreError>;
    fn recent_runs(&mut self, connection: &str, n: u32) -> Result<Vec<StoredRun>, StoreError>;
    fn delete_connection(&mut self, connection: &str) -> Result<u64, StoreError>;
    fn counts(&mut self, connection: &str) -> Result<Vec<(String, u64, u64)>, StoreError>;
    fn search(
        &mut self,
        connection: &str,
        stream: &str,
        embedded: &[String],
        term: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Found, StoreError>;
    fn record(
        &mut self,
        connection: &str,
        stream: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError>;
    fn embedded_in(
        &mut self,
        connection: &str,
        stream: &str,
        parent: &str,
        limit: u32,
    ) -> Result<Vec<KeyedRecord>, StoreError>;
    fn merged_read(
        &mut self,
        connection: &str,
        stream: &str,
        include_deleted: bool,
        queries: &[RowQuery],
        each: &mut EachMerged<'_>,
    ) -> anyhow::Result<u64>;
    /// Cancels the statement the backend's session runs, from another
    /// thread.
    fn canceller(&self) -> StatementCanceller;
    /// The SQLite connection, for tests that plant rows.
    #[cfg(test)]
    fn sqlite(&mut self) -> Option<&mut rusqlite::Connection>;
}

/// Cancels whatever statement a store's session runs now, from any thread
/// and without the store's lock ([`Store::canceller`]). A stopped sync
/// uses it on a commit still waiting after a grace (for another session's
/// lock, or another process's write lock on a SQLite file), which then
/// fails without writing anything, rather than holding the stop until the
/// lock goes or a time-out (PostgreSQL's `statement_timeout`, SQLite's
/// 30 s) ends it.
#[derive(Clone)]
pub struct StatementCanceller(CancelTarget);

/// What a [`StatementCanceller`] cancels through.
#[derive(Clone)]
enum CancelTarget {
    /// A cancel request to the server, for the session's current token.
    Postgres(std::sync::Arc<postgres::cancel::CancelSlot>),
    /// `sqlite3_interrupt` of the connection, and no more waits for locks.
    Sqlite(std::sync::Arc<sqlite::SqliteCanceller>),
}

impl StatementCanceller {
    /// Cancels through PostgreSQL's cancel requests.
    fn postgres(slot: std::sync::Arc<postgres::cancel::CancelSlot>) -> Self {
        StatementCanceller(CancelTarget::Postgres(slot))
    }

    /// Cancels a SQLite store's statements.
    fn sqlite(canceller: std::sync::Arc<sqlite::SqliteCanceller>) -> Self {
        StatementCanceller(CancelTarget::Sqlite(canceller))
    }

    /// Cancels the statement running now, if any; does not wait for it
    /// to end. On PostgreSQL the next statement runs as usual; on SQLite no
    /// later statement of the store waits for another process's write lock
    /// (the store belongs to a stopped sync).
    pub fn cancel(&self) {
        match &self.0 {
            CancelTarget::Postgres(slot) => slot.cancel(),
            CancelTarget::Sqlite(canceller) => canceller.cancel(),
        }
    }
}

impl std::fmt::Debug for StatementCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            CancelTarget::Postgres(_) => "StatementCanceller(PostgreSQL)",
            CancelTarget::Sqlite(_) => "StatementCanceller(SQLite)",
        })
    }
}

/// The database of one host (or, on PostgreSQL, of a deployment).
pub struct Store {
    /// The backend, behind a lock: reads take `&self`, and a PostgreSQL
    /// client needs `&mut` even to read. `None` only while dropping.
    backend: Mutex<Option<Box<dyn Backend>>>,
    /// Calls leave the async runtime's context (PostgreSQL's client runs a
    /// runtime of its own, which may not start inside another's).
    outside_runtime: bool,
}

impl Store {
    /// Opens (creating if needed) the SQLite database file.
    pub fn open(path: &Path) -> Result<Store, OpenError> {
        Ok(Store::over(Box::new(sqlite::Sqlite::open(path)?), false))
    }

    /// Connects to a PostgreSQL database, creating or migrating the schema.
    /// Like every call of a store, it blocks.
    pub fn open_postgres(target: &PostgresTarget) -> Result<Store, OpenError> {
        let backend = outside_runtime(|| self::postgres::Postgres::open(target))?;
        Ok(Store::over(Box::new(backend), true))
    }

    fn over(backend: Box<dyn Backend>, outside_runtime: bool) -> Store {
        Store {
            backend: Mutex::new(Some(backend)),
            outside_runtime,
        }
    }

    /// What cancels the statement this store runs, from another thread
    /// ([`StatementCanceller`]). Take it while the store is idle: it locks
    /// the store for a moment.
    pub fn canceller(&self) -> StatementCanceller {
        let guard = self.backend.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_deref()
            .expect("the store is open until dropped")
            .canceller()
    }

    /// Runs `call` on the backend (outside the runtime's context when it must be).
    fn with<T>(&self, call: impl FnOnce(&mut dyn Backend) -> T) -> T {
        let mut guard = self.backend.lock().unwrap_or_else(|p| p.into_inner());
        let backend = guard
            .as_deref_mut()
            .expect("the store is open until dropped");
        if self.outside_runtime {
            outside_runtime(|| {
                backend.reconnect_if_lost();
                call(backend)
            })
        } else {
            backend.reconnect_if_lost();
            call(backend)
        }
    }

    /// Starts or resumes the read of a stream: resumes an interrupted read
    /// with the same partitioning; otherwise reads incrementally from the
    /// last complete read's watermark when allowed, else fully (a new generation).
    pub fn begin_stream(
        &mut self,
        connection: &str,
        stream: &str,
        request: StreamRequest,
    ) -> Result<StreamPlan, StoreError> {
        self.with(|b| b.begin_stream(connection, stream, request))
    }

    /// Commits one page atomically: its records, its tombstones and the
    /// partition's next cursor. Returns the number of records the tombstones
    /// newly marked deleted.
    pub fn commit_page(
        &mut self,
        connection: &str,
        stream: &str,
        page: PageCommit<'_>,
    ) -> Result<u64, StoreError> {
        self.with(|b| b.commit_page(connection, stream, page, None))
    }

    /// [`Store::commit_page`] under `fenced.lease`: the page is written
    /// only if the lease is still this worker's, checked in the page's
    /// transaction ([`StoreError::Fenced`] otherwise), and with it the
    /// holder's report part ([`FencedPage`]). PostgreSQL only.
    pub fn commit_page_fenced(
        &mut self,
        page: PageCommit<'_>,
        fenced: FencedPage<'_>,
    ) -> Result<u64, StoreError> {
        let (connection, stream) = (&fenced.lease.connection, &fenced.lease.stream);
        self.with(|b| b.commit_page(connection, stream, page, Some(fenced)))
    }

    /// Claims, for `holder` and for `lease` (on the database's clock), a
    /// partition of a run in progress of one of `connections` that no live
    /// lease holds and that did not fail in the run; `None` when there is
    /// none. PostgreSQL only.
    pub fn claim_partition(
        &mut self,
        holder: &str,
        lease: Duration,
        connections: &[String],
    ) -> Result<Option<Lease>, StoreError> {
        self.with(|b| b.claim(holder, lease, connections))
    }

    /// Extends `held` by `lease` from now; `false` when it was lost.
    pub fn renew_lease(&mut self, held: &Lease, lease: Duration) -> Result<bool, StoreError> {
        self.with(|b| b.renew(held, lease))
    }

    /// Gives `held` up.
    pub fn release_lease(&mut self, held: &Lease) -> Result<(), StoreError> {
        self.with(|b| b.release(held))
    }

    /// Who holds which of `connection`'s partitions, and since when (none
    /// on SQLite, which has no leases).
    pub fn leases(&self, connection: &str) -> Result<Vec<HeldLease>, StoreError> {
        self.with(|b| b.leases(connection))
    }

    /// Completes a read once every partition is done: stores the stream's
    /// watermark (the earliest of its partitions'), marks records whose
    /// `updated_field` is older than the read's retention window as aged out
    /// and, after a full read, records not seen in this generation as no
    /// longer returned. Returns the numbers newly marked.
    pub fn finish_stream(
        &mut self,
        connection: &str,
        stream: &str,
        plan: &StreamPlan,
        updated_field: Option<&str>,
    ) -> Result<FinishedStream, StoreError> {
        self.with(|b| b.finish_stream(connection, stream, plan, updated_field))
    }

    /// Takes `connection`'s sync lock, which a sync holds from start to end
    /// so that no other process syncs the connection into the same database
    /// at once (see `sync_lock.rs`); `None` while another sync holds it.
    /// Workers do not take it: they share a run through leases, and `sync`
    /// refuses while they read one.
    pub fn lock_syncs(&mut self, connection: &str) -> Result<Option<SyncLock>, StoreError> {
        self.with(|b| b.lock_syncs(connection))
    }

    /// Records the start of a run; returns its id. Called under the
    /// connection's sync lock ([`Store::lock_syncs`]), so no other run of
    /// it is in progress: one still `running` ended without recording its
    /// end (the process was killed, or its machine went down) and is
    /// marked `interrupted` (a deployment's run in progress is left to its
    /// workers). Its committed pages are kept, and this run resumes them.
    pub fn start_run(&mut self, connection: &str) -> Result<i64, StoreError> {
        self.with(|b| b.start_run(connection))
    }

    /// Records the end of a run with its report (JSON).
    pub fn finish_run(&mut self, run: i64, status: &str, report: &str) -> Result<(), StoreError> {
        self.with(|b| b.finish_run(run, status, report))
    }

    /// Records the connection's health after a run; `since` changes only
    /// when the state does, and each change goes into its history.
    pub fn set_health(&mut self, connection: &str, health: &Health) -> Result<(), StoreError> {
        self.with(|b| b.set_health(connection, health))
    }

    /// The connection's last `n` changes of health, newest first: each
    /// health and when it began.
    pub fn health_history(
        &self,
        connection: &str,
        n: u32,
    ) -> Result<Vec<(Health, String)>, StoreError> {
        self.with(|b| b.health_history(connection, n))
    }

    /// The connection's health and when it entered that state.
    pub fn health(&self, connection: &str) -> Result<Option<(Health, String)>, StoreError> {
        self.with(|b| b.health(connection))
    }

    /// The last `n` runs, newest first.
    pub fn recent_runs(&self, connection: &str, n: u32) -> Result<Vec<StoredRun>, StoreError> {
        self.with(|b| b.recent_runs(connection, n))
    }

    /// The records of a stream in key order, passed to `each` with when and
    /// why they were marked deleted; deleted ones only with `include_deleted`.
    pub fn for_each_record(
        &self,
        connection: &str,
        stream: &str,
        include_deleted: bool,
        mut each: impl FnMut(&str, &str, Option<Deletion<'_>>) -> std::io::Result<()>,
    ) -> anyhow::Result<u64> {
        self.merged_read(
            connection,
            stream,
            include_deleted,
            &[],
            |key, data, deletion, _| each(key, data, deletion),
        )
    }

    /// Deletes everything stored for `connection` (records, the state of
    /// its streams and partitions, its health and runs) in one
    /// transaction; returns the records deleted. Other connections in the
    /// same database are untouched.
    pub fn delete_connection(&mut self, connection: &str) -> Result<u64, StoreError> {
        self.with(|b| b.delete_connection(connection))
    }

    /// Per stream: live records, records marked deleted.
    pub fn counts(&self, connection: &str) -> Result<Vec<(String, u64, u64)>, StoreError> {
        self.with(|b| b.counts(connection))
    }

    /// The live records of `stream` with a value containing `term` (all of
    /// them for an empty term), or whose records in `embedded` (streams
    /// embedded into it, their `parent` naming it) have one; `limit`
    /// records from `offset`, in key order.
    pub fn search(
        &self,
        connection: &str,
        stream: &str,
        embedded: &[String],
        term: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Found, StoreError> {
        self.with(|b| b.search(connection, stream, embedded, term, limit, offset))
    }

    /// The live record `key` of `stream`.
    pub fn record(
        &self,
        connection: &str,
        stream: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        self.with(|b| b.record(connection, stream, key))
    }

    /// The live records of `stream` embedded into the record `parent`, in
    /// key order (at most `limit`).
    pub fn embedded_in(
        &self,
        connection: &str,
        stream: &str,
        parent: &str,
        limit: u32,
    ) -> Result<Vec<KeyedRecord>, StoreError> {
        self.with(|b| b.embedded_in(connection, stream, parent, limit))
    }

    /// The records of `stream` in key order (deleted ones only with
    /// `include_deleted`), each passed to `each` with cursors over
    /// `queries`, which run side by side in the same read: the nested
    /// export merges them by key, so memory stays flat.
    pub fn merged_read(
        &self,
        connection: &str,
        stream: &str,
        include_deleted: bool,
        queries: &[RowQuery],
        mut each: impl FnMut(
            &str,
            &str,
            Option<Deletion<'_>>,
            &mut [Box<dyn RowCursor + '_>],
        ) -> std::io::Result<()>,
    ) -> anyhow::Result<u64> {
        self.with(|b| b.merged_read(connection, stream, include_deleted, queries, &mut each))
    }

    /// `read` over the SQLite connection; `None` on another backend (tests
    /// that plant rows).
    #[cfg(test)]
    pub(crate) fn with_sqlite<T>(
        &self,
        read: impl FnOnce(&mut rusqlite::Connection) -> T,
    ) -> Option<T> {
        self.with(|b| b.sqlite().map(read))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // PostgreSQL's client says goodbye to the server as it drops.
        let backend = self
            .backend
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if self.outside_runtime {
            outside_runtime(|| drop(backend));
        }
    }
}

/// Runs `f`, which blocks on a runtime of its own, outside the calling
/// thread's async runtime: on a worker of a multi-threaded runtime (or in
/// its `block_on`) through `block_in_place`; elsewhere as it is.
fn outside_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
