//! The SQLite database: records, per-partition cursors, stream generations
//! and run reports.
//!
//! Invariants:
//! - A page's records and the cursor that follows them are committed in one
//!   transaction, so a killed sync resumes after the last committed page with
//!   nothing lost and nothing doubled (records are upserted by key).
//! - Each full read of a stream has a generation number. Records carry the
//!   generation that last saw them; when every partition of a generation has
//!   finished, records of older generations are marked deleted.
//! - A deleted record says why ([`DeletionReason`]): the source reported the
//!   deletion (a tombstone, applied with the page that carried it), it aged
//!   out of the read's retention window, or a full read no longer returned it.

mod browse;
mod schema;

pub use browse::{Found, KeyedRecord};

use rusqlite::{params, Connection, OptionalExtension};
pub use schema::{OpenError, LATEST_VERSION};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

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
    /// Reads a record's key and embedding parent without building a JSON
    /// tree; keeps the JSON text as the record's data.
    pub fn index(
        stream: &str,
        key_field: &str,
        embed_field: Option<&str>,
        json: String,
    ) -> Result<StoredRecord, String> {
        let fields: BTreeMap<Cow<'_, str>, &serde_json::value::RawValue> =
            serde_json::from_str(&json).map_err(|e| {
                format!(
                    "the component returned a record of `{stream}` that is not a JSON object ({e})"
                )
            })?;
        let text = |field: &str| fields.get(field).and_then(|raw| key_text(raw.get()));
        let key = text(key_field).filter(|k| !k.is_empty()).ok_or_else(|| {
            format!(
                "the component returned a record of `{stream}` without its key field `{key_field}` (a string or an integer)"
            )
        })?;
        let parent = embed_field.and_then(text);
        // `fields` borrows `json`, which moves into the record below.
        drop(fields);
        Ok(StoredRecord {
            key,
            data: json,
            parent,
        })
    }
}

/// A key as stored: a JSON string's text, or an integer's decimal digits
/// (which is also how a tombstone names it). Anything else is no key.
fn key_text(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(raw.to_string());
    }
    serde_json::from_str::<Cow<'_, str>>(raw)
        .ok()
        .map(Cow::into_owned)
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

/// The database of one host.
pub struct Store {
    conn: Connection,
}

/// The current UTC time, RFC 3339 (host clock; bookkeeping only).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .expect("formatting the current time")
}

fn partition_states(
    tx: &Connection,
    connection: &str,
    stream: &str,
) -> rusqlite::Result<Vec<PartitionState>> {
    let mut stmt = tx.prepare(
        "SELECT partition, cursor, done FROM partitions WHERE connection = ?1 AND stream = ?2 ORDER BY partition",
    )?;
    let states = stmt
        .query_map(params![connection, stream], |r| {
            Ok(PartitionState {
                index: r.get(0)?,
                cursor: r.get(1)?,
                done: r.get::<_, i64>(2)? != 0,
            })
        })?
        .collect();
    states
}

/// A JSON path to a top-level field, for `json_extract`; `None` for names
/// that would need escaping.
fn json_field_path(field: &str) -> Option<String> {
    let plain =
        !field.is_empty() && !field.contains(['"', '\\']) && !field.chars().any(char::is_control);
    plain.then(|| format!("$.\"{field}\""))
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

/// A stream's row in `streams`: where its reads stand.
struct StoredStream {
    generation: i64,
    partitions: u32,
    complete: bool,
    /// The last complete read's watermark.
    watermark: Option<String>,
    /// `full` or `incremental`: the current (or interrupted) read.
    read_mode: String,
    /// The watermark an incremental read started from.
    read_watermark: Option<String>,
}

impl StoredStream {
    fn read(tx: &Connection, connection: &str, stream: &str) -> rusqlite::Result<Option<Self>> {
        tx.query_row(
            "SELECT generation, partitions, complete, watermark, read_mode, read_watermark
             FROM streams WHERE connection = ?1 AND stream = ?2",
            params![connection, stream],
            |r| {
                Ok(StoredStream {
                    generation: r.get(0)?,
                    partitions: r.get(1)?,
                    complete: r.get::<_, i64>(2)? != 0,
                    watermark: r.get(3)?,
                    read_mode: r.get(4)?,
                    read_watermark: r.get(5)?,
                })
            },
        )
        .optional()
    }

    /// The plan to resume this stream's interrupted read, when it was
    /// partitioned as a read would be now and every partition is stored.
    fn resume(
        &self,
        tx: &Connection,
        connection: &str,
        stream: &str,
        request: &StreamRequest,
    ) -> rusqlite::Result<Option<StreamPlan>> {
        let incremental = self.read_mode == "incremental";
        if self.complete || self.partitions != request.partitions_for(incremental) {
            return Ok(None);
        }
        let mode = match (self.read_mode.as_str(), &self.read_watermark) {
            ("incremental", Some(w)) => ReadMode::Incremental {
                watermark: w.clone(),
            },
            ("full", _) => ReadMode::Full,
            _ => return Ok(None),
        };
        let states = partition_states(tx, connection, stream)?;
        if states.len() != self.partitions as usize {
            return Ok(None);
        }
        Ok(Some(StreamPlan {
            generation: self.generation,
            resumed: true,
            mode,
            partitions: states,
            deletions_since: self.watermark.clone(),
        }))
    }
}

/// Starts a new read of `stream`: incremental from the last complete read's
/// watermark when the stream supports it and the run allows it, else full
/// (a new generation); its partitions start without a cursor.
fn start_read(
    tx: &Connection,
    connection: &str,
    stream: &str,
    existing: Option<&StoredStream>,
    request: &StreamRequest,
) -> rusqlite::Result<StreamPlan> {
    let incremental_from = existing
        .filter(|e| e.complete && request.supports_incremental && !request.force_full)
        .and_then(|e| e.watermark.clone());
    let (generation, mode) = match (incremental_from, existing) {
        (Some(watermark), Some(e)) => (e.generation, ReadMode::Incremental { watermark }),
        _ => (existing.map_or(1, |e| e.generation + 1), ReadMode::Full),
    };
    let read_watermark = match &mode {
        ReadMode::Incremental { watermark } => Some(watermark.clone()),
        ReadMode::Full => None,
    };
    let partitions = request.partitions_for(read_watermark.is_some());
    tx.execute(
        "INSERT INTO streams (connection, stream, generation, partitions, complete, read_mode, read_watermark)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)
         ON CONFLICT (connection, stream) DO UPDATE SET
            generation = excluded.generation, partitions = excluded.partitions, complete = 0,
            read_mode = excluded.read_mode, read_watermark = excluded.read_watermark",
        params![connection, stream, generation, partitions, mode.name(), read_watermark],
    )?;
    tx.execute(
        "DELETE FROM partitions WHERE connection = ?1 AND stream = ?2",
        params![connection, stream],
    )?;
    for index in 0..partitions {
        tx.execute(
            "INSERT INTO partitions (connection, stream, partition, cursor, done) VALUES (?1, ?2, ?3, NULL, 0)",
            params![connection, stream, index],
        )?;
    }
    Ok(StreamPlan {
        generation,
        resumed: false,
        deletions_since: existing.and_then(|e| e.watermark.clone()),
        mode,
        partitions: (0..partitions)
            .map(|index| PartitionState {
                index,
                cursor: None,
                done: false,
            })
            .collect(),
    })
}

impl Store {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path) -> Result<Store, OpenError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        schema::migrate(&conn)?;
        Ok(Store { conn })
    }

    /// Starts or resumes the read of a stream: resumes an interrupted read
    /// with the same partitioning; otherwise reads incrementally from the
    /// last complete read's watermark when allowed, else fully (a new generation).
    pub fn begin_stream(
        &mut self,
        connection: &str,
        stream: &str,
        request: StreamRequest,
    ) -> rusqlite::Result<StreamPlan> {
        let tx = self.conn.transaction()?;
        let existing = StoredStream::read(&tx, connection, stream)?;
        let resumed = match &existing {
            Some(e) => e.resume(&tx, connection, stream, &request)?,
            None => None,
        };
        let plan = match resumed {
            Some(plan) => plan,
            None => start_read(&tx, connection, stream, existing.as_ref(), &request)?,
        };
        tx.commit()?;
        Ok(plan)
    }

    /// Commits one page atomically: its records, its tombstones and the
    /// partition's next cursor. Returns the number of records the tombstones
    /// newly marked deleted.
    pub fn commit_page(
        &mut self,
        connection: &str,
        stream: &str,
        page: PageCommit<'_>,
    ) -> rusqlite::Result<u64> {
        let now = now_rfc3339();
        let tx = self.conn.transaction()?;
        let mut tombstoned = 0;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO records (connection, stream, key, data, parent, generation, first_seen, changed_at, deleted_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, NULL)
                 ON CONFLICT (connection, stream, key) DO UPDATE SET
                    changed_at = CASE WHEN records.data IS excluded.data AND records.deleted_at IS NULL
                                      THEN records.changed_at ELSE excluded.changed_at END,
                    data = excluded.data,
                    parent = excluded.parent,
                    generation = excluded.generation,
                    deleted_at = NULL,
                    deletion_reason = NULL",
            )?;
            for r in page.records {
                upsert.execute(params![
                    connection,
                    stream,
                    r.key,
                    r.data,
                    r.parent,
                    page.generation,
                    now
                ])?;
            }
            let mut tombstone = tx.prepare_cached(
                "UPDATE records SET deleted_at = COALESCE(?4, ?5), changed_at = ?5, deletion_reason = ?6
                 WHERE connection = ?1 AND stream = ?2 AND key = ?3
                   AND (deleted_at IS NULL OR deletion_reason IS NOT ?6)",
            )?;
            for t in page.tombstones {
                tombstoned += tombstone.execute(params![
                    connection,
                    stream,
                    t.key,
                    t.deleted_at,
                    now,
                    DeletionReason::DeletedAtSource.name()
                ])? as u64;
            }
        }
        tx.execute(
            "UPDATE partitions SET cursor = ?4, done = ?5, watermark = COALESCE(?6, watermark),
                window_start = COALESCE(?7, window_start)
             WHERE connection = ?1 AND stream = ?2 AND partition = ?3",
            params![
                connection,
                stream,
                page.partition,
                page.next_cursor,
                page.next_cursor.is_none(),
                page.watermark,
                page.window_start
            ],
        )?;
        tx.commit()?;
        Ok(tombstoned)
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
    ) -> rusqlite::Result<FinishedStream> {
        let generation = plan.generation;
        let now = now_rfc3339();
        let tx = self.conn.transaction()?;
        let pending: i64 = tx.query_row(
            "SELECT COUNT(*) FROM partitions WHERE connection = ?1 AND stream = ?2 AND done = 0",
            params![connection, stream],
            |r| r.get(0),
        )?;
        if pending > 0 {
            return Ok(FinishedStream::default());
        }
        // The earliest partition's window: nothing a partition returned is
        // older than it.
        let window_start: Option<String> = tx.query_row(
            "SELECT MIN(window_start) FROM partitions WHERE connection = ?1 AND stream = ?2",
            params![connection, stream],
            |r| r.get(0),
        )?;
        let mut finished = FinishedStream::default();
        if let (Some(start), Some(path)) = (window_start, updated_field.and_then(json_field_path)) {
            finished.aged_out = tx.execute(
                "UPDATE records SET deleted_at = ?5, changed_at = ?5, deletion_reason = ?6
                 WHERE connection = ?1 AND stream = ?2
                   AND (deleted_at IS NULL OR deletion_reason = ?7)
                   AND json_extract(data, ?3) < ?4",
                params![
                    connection,
                    stream,
                    path,
                    start,
                    now,
                    DeletionReason::AgedOut.name(),
                    DeletionReason::NotReturned.name()
                ],
            )? as u64;
        }
        if plan.mode == ReadMode::Full {
            finished.not_returned = tx.execute(
                "UPDATE records SET deleted_at = ?4, changed_at = ?4, deletion_reason = ?5
                 WHERE connection = ?1 AND stream = ?2 AND generation < ?3 AND deleted_at IS NULL",
                params![
                    connection,
                    stream,
                    generation,
                    now,
                    DeletionReason::NotReturned.name()
                ],
            )? as u64;
        }
        tx.execute(
            "UPDATE streams SET complete = 1, completed_at = ?4,
                watermark = (SELECT MIN(watermark) FROM partitions WHERE connection = ?1 AND stream = ?2)
             WHERE connection = ?1 AND stream = ?2 AND generation = ?3",
            params![connection, stream, generation, now],
        )?;
        tx.commit()?;
        Ok(finished)
    }

    /// Records the start of a run; returns its id.
    pub fn start_run(&mut self, connection: &str) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO runs (connection, started_at, status) VALUES (?1, ?2, 'running')",
            params![connection, now_rfc3339()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records the end of a run with its report (JSON).
    pub fn finish_run(&mut self, run: i64, status: &str, report: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE runs SET finished_at = ?2, status = ?3, report = ?4 WHERE id = ?1",
            params![run, now_rfc3339(), status, report],
        )?;
        Ok(())
    }

    /// Records the connection's health after a run; `since` changes only
    /// when the state does.
    pub fn set_health(&mut self, connection: &str, health: &Health) -> rusqlite::Result<()> {
        let now = now_rfc3339();
        let tx = self.conn.transaction()?;
        // A change of state, case or message goes into the history.
        let unchanged: bool = tx
            .query_row(
                "SELECT COUNT(*) FROM health WHERE connection = ?1 AND state = ?2
                 AND error_kind IS ?3 AND message IS ?4",
                params![
                    connection,
                    health.state.name(),
                    health.error_kind,
                    health.message
                ],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        if !unchanged {
            tx.execute(
                "INSERT INTO health_history (connection, at, state, error_kind, message)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    connection,
                    now,
                    health.state.name(),
                    health.error_kind,
                    health.message
                ],
            )?;
        }
        tx.execute(
            "INSERT INTO health (connection, state, error_kind, message, since, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (connection) DO UPDATE SET
                since = CASE WHEN health.state = excluded.state THEN health.since ELSE excluded.since END,
                state = excluded.state, error_kind = excluded.error_kind,
                message = excluded.message, updated_at = excluded.updated_at",
            params![connection, health.state.name(), health.error_kind, health.message, now],
        )?;
        tx.commit()
    }

    /// The connection's last `n` changes of health, newest first: each
    /// health and when it began.
    pub fn health_history(
        &self,
        connection: &str,
        n: u32,
    ) -> rusqlite::Result<Vec<(Health, String)>> {
        let mut statement = self.conn.prepare(
            "SELECT state, error_kind, message, at FROM health_history
             WHERE connection = ?1 ORDER BY at DESC, rowid DESC LIMIT ?2",
        )?;
        let rows = statement.query_map(params![connection, n], |row| {
            let state: String = row.get(0)?;
            Ok((
                Health {
                    state: HealthState::from_name(&state),
                    error_kind: row.get(1)?,
                    message: row.get(2)?,
                },
                row.get(3)?,
            ))
        })?;
        rows.collect()
    }

    /// The connection's health and when it entered that state.
    pub fn health(&self, connection: &str) -> rusqlite::Result<Option<(Health, String)>> {
        self.conn
            .query_row(
                "SELECT state, error_kind, message, since FROM health WHERE connection = ?1",
                params![connection],
                |r| {
                    let state: String = r.get(0)?;
                    Ok((
                        Health {
                            state: HealthState::from_name(&state),
                            error_kind: r.get(1)?,
                            message: r.get(2)?,
                        },
                        r.get(3)?,
                    ))
                },
            )
            .optional()
    }

    /// The last `n` runs, newest first.
    pub fn recent_runs(&self, connection: &str, n: u32) -> rusqlite::Result<Vec<StoredRun>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, started_at, finished_at, status, report FROM runs
             WHERE connection = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![connection, n], |r| {
            Ok(StoredRun {
                id: r.get(0)?,
                started_at: r.get(1)?,
                finished_at: r.get(2)?,
                status: r.get(3)?,
                report: r.get(4)?,
            })
        })?;
        rows.collect()
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
        let mut stmt = self.conn.prepare(
            "SELECT key, data, deleted_at, COALESCE(deletion_reason, ?4) FROM records
             WHERE connection = ?1 AND stream = ?2 AND (?3 OR deleted_at IS NULL) ORDER BY key",
        )?;
        let mut rows = stmt.query(params![
            connection,
            stream,
            include_deleted,
            DeletionReason::NotReturned.name()
        ])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let key: &str = row.get_ref(0)?.as_str()?;
            let data: &str = row.get_ref(1)?.as_str()?;
            let deletion = match row.get_ref(2)?.as_str_or_null()? {
                Some(at) => Some(Deletion {
                    at,
                    reason: row.get_ref(3)?.as_str()?,
                }),
                None => None,
            };
            each(key, data, deletion)?;
            n += 1;
        }
        Ok(n)
    }

    /// Deletes everything stored for `connection` (records, the state of
    /// its streams and partitions, its health and runs) in one
    /// transaction; returns the records deleted. Other connections in the
    /// same file are untouched.
    pub fn delete_connection(&mut self, connection: &str) -> rusqlite::Result<u64> {
        let tx = self.conn.transaction()?;
        let records = tx.execute("DELETE FROM records WHERE connection = ?1", [connection])?;
        for table in ["streams", "partitions", "health", "health_history", "runs"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE connection = ?1"),
                [connection],
            )?;
        }
        tx.commit()?;
        Ok(records as u64)
    }

    /// Number of live records per stream.
    pub fn counts(&self, connection: &str) -> rusqlite::Result<Vec<(String, u64, u64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT stream, SUM(deleted_at IS NULL), SUM(deleted_at IS NOT NULL) FROM records
             WHERE connection = ?1 GROUP BY stream ORDER BY stream",
        )?;
        let rows = stmt.query_map(params![connection], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        rows.collect()
    }

    /// The underlying connection (for queries in tests and tools).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, data: &str) -> StoredRecord {
        StoredRecord {
            key: key.into(),
            data: data.into(),
            parent: None,
        }
    }

    fn keys(s: &Store) -> Vec<String> {
        let mut out = Vec::new();
        s.for_each_record("c", "s", false, |k, _, _| {
            out.push(k.to_string());
            Ok(())
        })
        .unwrap();
        out
    }

    fn page<'a>(
        generation: i64,
        partition: u32,
        records: &'a [StoredRecord],
        next_cursor: Option<&'a str>,
        watermark: Option<&'a str>,
    ) -> PageCommit<'a> {
        PageCommit {
            generation,
            partition,
            records,
            tombstones: &[],
            next_cursor,
            watermark,
            window_start: None,
        }
    }

    fn forced_full(partitions: u32) -> StreamRequest {
        StreamRequest {
            force_full: true,
            ..full(partitions)
        }
    }

    fn full(partitions: u32) -> StreamRequest {
        StreamRequest {
            partitions,
            incremental_partitions: partitions,
            force_full: false,
            supports_incremental: true,
        }
    }

    #[test]
    fn health_changes_are_kept_newest_first_and_repeats_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("db")).unwrap();
        let health = |state, message: Option<&str>| Health {
            state,
            error_kind: message.map(|_| "unauthenticated".to_string()),
            message: message.map(str::to_string),
        };
        s.set_health("c", &health(HealthState::Connected, None))
            .unwrap();
        s.set_health("c", &health(HealthState::Connected, None))
            .unwrap();
        s.set_health("c", &health(HealthState::Failed, Some("wrong password")))
            .unwrap();
        s.set_health("c", &health(HealthState::Failed, Some("wrong password")))
            .unwrap();
        s.set_health("c", &health(HealthState::Connected, None))
            .unwrap();
        let history = s.health_history("c", 10).unwrap();
        let states: Vec<(HealthState, Option<&str>)> = history
            .iter()
            .map(|(h, _)| (h.state, h.message.as_deref()))
            .collect();
        assert_eq!(
            states,
            vec![
                (HealthState::Connected, None),
                (HealthState::Failed, Some("wrong password")),
                (HealthState::Connected, None),
            ]
        );
        assert_eq!(s.health_history("c", 1).unwrap().len(), 1);
        assert!(s.health_history("other", 10).unwrap().is_empty());
    }

    #[test]
    fn deleting_a_connection_leaves_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("db")).unwrap();
        for connection in ["c", "other"] {
            let p = s.begin_stream(connection, "s", full(1)).unwrap();
            s.commit_page(
                connection,
                "s",
                page(1, 0, &[rec("a", "{}"), rec("b", "{}")], None, None),
            )
            .unwrap();
            s.finish_stream(connection, "s", &p, None).unwrap();
            let run = s.start_run(connection).unwrap();
            s.finish_run(run, "complete", "{}").unwrap();
            s.set_health(
                connection,
                &Health {
                    state: HealthState::Connected,
                    error_kind: None,
                    message: None,
                },
            )
            .unwrap();
        }
        assert_eq!(s.delete_connection("c").unwrap(), 2);
        assert!(s.counts("c").unwrap().is_empty());
        assert!(s.health("c").unwrap().is_none());
        assert!(s.health_history("c", 5).unwrap().is_empty());
        assert!(s.recent_runs("c", 5).unwrap().is_empty());
        // The other connection keeps everything.
        assert_eq!(s.counts("other").unwrap(), vec![("s".to_string(), 2, 0)]);
        assert!(s.health("other").unwrap().is_some());
        assert_eq!(s.recent_runs("other", 5).unwrap().len(), 1);
        // A later sync of the deleted connection starts afresh.
        let p = s.begin_stream("c", "s", full(1)).unwrap();
        assert!(!p.resumed);
    }

    #[test]
    fn resume_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("db")).unwrap();
        let p = s.begin_stream("c", "s", full(2)).unwrap();
        assert_eq!(
            (p.generation, p.resumed, &p.mode),
            (1, false, &ReadMode::Full)
        );
        s.commit_page(
            "c",
            "s",
            page(
                1,
                0,
                &[rec("a", "{}"), rec("b", "{}")],
                Some("cur"),
                Some("w1"),
            ),
        )
        .unwrap();
        // Interrupted: the next run resumes partition 0 at its cursor.
        let p = s.begin_stream("c", "s", full(2)).unwrap();
        assert!(p.resumed);
        assert_eq!(p.partitions[0].cursor.as_deref(), Some("cur"));
        s.commit_page("c", "s", page(1, 0, &[rec("b", "{\"x\":1}")], None, None))
            .unwrap();
        assert_eq!(s.finish_stream("c", "s", &p, None).unwrap().not_returned, 0);
        s.commit_page("c", "s", page(1, 1, &[rec("c", "{}")], None, Some("w0")))
            .unwrap();
        assert_eq!(s.finish_stream("c", "s", &p, None).unwrap().not_returned, 0);
        assert_eq!(keys(&s), ["a", "b", "c"]);
        // The stream's watermark is the earliest of its partitions'.
        let wm: Option<String> = s
            .connection()
            .query_row("SELECT watermark FROM streams", [], |r| r.get(0))
            .unwrap();
        assert_eq!(wm.as_deref(), Some("w0"));

        // The next read is incremental from that watermark and deletes nothing.
        let p = s.begin_stream("c", "s", full(2)).unwrap();
        assert_eq!(
            (p.generation, &p.mode),
            (
                1,
                &ReadMode::Incremental {
                    watermark: "w0".into()
                }
            )
        );
        s.commit_page("c", "s", page(1, 0, &[rec("d", "{}")], None, Some("w5")))
            .unwrap();
        s.commit_page("c", "s", page(1, 1, &[], None, Some("w4")))
            .unwrap();
        assert_eq!(s.finish_stream("c", "s", &p, None).unwrap().not_returned, 0);
        assert_eq!(keys(&s), ["a", "b", "c", "d"]);

        // A forced full read is a new generation: `a` and `d`, not seen, are deleted.
        let p = s.begin_stream("c", "s", forced_full(2)).unwrap();
        assert_eq!((p.generation, &p.mode), (2, &ReadMode::Full));
        s.commit_page("c", "s", page(2, 0, &[rec("b", "{}")], None, None))
            .unwrap();
        s.commit_page("c", "s", page(2, 1, &[rec("c", "{}")], None, None))
            .unwrap();
        assert_eq!(s.finish_stream("c", "s", &p, None).unwrap().not_returned, 2);
        assert_eq!(keys(&s), ["b", "c"]);
        // No watermark from that read: the next one is full again.
        assert_eq!(
            s.begin_stream("c", "s", full(2)).unwrap().mode,
            ReadMode::Full
        );
    }

    #[test]
    fn an_interrupted_incremental_read_resumes_as_incremental() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("db")).unwrap();
        let p = s.begin_stream("c", "s", full(1)).unwrap();
        s.commit_page("c", "s", page(1, 0, &[rec("a", "{}")], None, Some("w1")))
            .unwrap();
        s.finish_stream("c", "s", &p, None).unwrap();
        let p = s.begin_stream("c", "s", full(1)).unwrap();
        s.commit_page(
            "c",
            "s",
            page(1, 0, &[rec("b", "{}")], Some("cur"), Some("w2")),
        )
        .unwrap();
        let resumed = s.begin_stream("c", "s", full(1)).unwrap();
        assert!(resumed.resumed);
        assert_eq!(resumed.mode, p.mode);
        // Streams that cannot read incrementally always read fully.
        let never_incremental = StreamRequest {
            supports_incremental: false,
            ..full(1)
        };
        let p = s.begin_stream("c", "t", never_incremental).unwrap();
        s.commit_page("c", "t", page(p.generation, 0, &[], None, Some("w1")))
            .unwrap();
        s.finish_stream("c", "t", &p, None).unwrap();
        let again = s.begin_stream("c", "t", never_incremental).unwrap();
        assert_eq!(again.mode, ReadMode::Full);
    }

    fn reasons(s: &Store) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        s.for_each_record("c", "s", true, |k, _, d| {
            out.push((k.to_string(), d.map(|d| d.reason.to_string())));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn records_are_indexed_without_trees() {
        let r = StoredRecord::index(
            "a",
            "sysId",
            Some("deviceSysId"),
            r#"{"sysId":"k\"1","deviceSysId":"d","n":[1]}"#.into(),
        )
        .unwrap();
        assert_eq!((r.key.as_str(), r.parent.as_deref()), ("k\"1", Some("d")));
        let r = StoredRecord::index(
            "s",
            "id",
            Some("deviceId"),
            r#"{"id":17,"deviceId":-3}"#.into(),
        )
        .unwrap();
        assert_eq!((r.key.as_str(), r.parent.as_deref()), ("17", Some("-3")));
        for not_a_key in [
            r#"{"id":1.5}"#,
            r#"{"id":true}"#,
            r#"{"id":null}"#,
            r#"{"id":[1]}"#,
        ] {
            assert!(
                StoredRecord::index("s", "id", None, not_a_key.into()).is_err(),
                "{not_a_key}"
            );
        }
        assert!(
            StoredRecord::index("a", "sysId", None, r#"{"name":"x"}"#.into())
                .unwrap_err()
                .contains("sysId")
        );
        assert!(StoredRecord::index("a", "sysId", None, "[1]".into()).is_err());
    }

    #[test]
    fn deletions_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("db")).unwrap();
        let updated = |k: &str, at: &str| rec(k, &format!(r#"{{"sysId":"{k}","updated":"{at}"}}"#));
        let p = s.begin_stream("c", "s", full(1)).unwrap();
        assert_eq!(p.deletions_since, None);
        let first = [
            updated("a", "2026-01-01T00:00:00Z"),
            updated("b", "2026-11-01T00:00:00Z"),
            updated("c", "2026-11-02T00:00:00Z"),
            updated("d", "2026-11-03T00:00:00Z"),
        ];
        s.commit_page(
            "c",
            "s",
            page(1, 0, &first, None, Some("2026-11-27 00:00:00")),
        )
        .unwrap();
        s.finish_stream("c", "s", &p, Some("updated")).unwrap();

        // The next full read: `b` is reported deleted at the source, `c` is
        // simply not returned, `a` is older than the window.
        let p = s.begin_stream("c", "s", forced_full(1)).unwrap();
        assert_eq!(p.deletions_since.as_deref(), Some("2026-11-27 00:00:00"));
        let tombstones = [
            StoredTombstone {
                key: "b".into(),
                deleted_at: Some("2026-11-27T10:00:00Z".into()),
            },
            StoredTombstone {
                key: "never-stored".into(),
                deleted_at: None,
            },
        ];
        let marked = s
            .commit_page(
                "c",
                "s",
                PageCommit {
                    tombstones: &tombstones,
                    window_start: Some("2026-10-28T00:00:00Z"),
                    ..page(
                        p.generation,
                        0,
                        &first[3..],
                        None,
                        Some("2026-11-28 00:00:00"),
                    )
                },
            )
            .unwrap();
        assert_eq!(marked, 1);
        let finished = s.finish_stream("c", "s", &p, Some("updated")).unwrap();
        assert_eq!(
            finished,
            FinishedStream {
                aged_out: 1,
                not_returned: 1
            }
        );
        assert_eq!(
            reasons(&s),
            [
                ("a".to_string(), Some("aged-out".to_string())),
                ("b".to_string(), Some("deleted-at-source".to_string())),
                ("c".to_string(), Some("not-returned".to_string())),
                ("d".to_string(), None),
            ]
        );
        // The source's deletion time is kept.
        s.for_each_record("c", "s", true, |k, _, d| {
            if k == "b" {
                assert_eq!(d.unwrap().at, "2026-11-27T10:00:00Z");
            }
            Ok(())
        })
        .unwrap();
        // A record that comes back is live again, without a reason.
        let p = s.begin_stream("c", "s", forced_full(1)).unwrap();
        s.commit_page("c", "s", page(p.generation, 0, &first[2..], None, None))
            .unwrap();
        assert_eq!(reasons(&s)[2], ("c".to_string(), None));
    }

    #[test]
    fn databases_of_the_first_release_gain_the_new_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE records (connection TEXT NOT NULL, stream TEXT NOT NULL, key TEXT NOT NULL,
                data TEXT NOT NULL, parent TEXT, generation INTEGER NOT NULL, first_seen TEXT NOT NULL,
                changed_at TEXT NOT NULL, deleted_at TEXT, PRIMARY KEY (connection, stream, key)) WITHOUT ROWID;
             CREATE TABLE partitions (connection TEXT NOT NULL, stream TEXT NOT NULL, partition INTEGER NOT NULL,
                cursor TEXT, done INTEGER NOT NULL, watermark TEXT, PRIMARY KEY (connection, stream, partition));
             INSERT INTO records VALUES ('c', 's', 'gone', '{}', NULL, 1, 'x', 'x', '2026-01-01T00:00:00Z');",
        )
        .unwrap();
        drop(old);
        let s = Store::open(&path).unwrap();
        assert_eq!(
            reasons(&s),
            [("gone".to_string(), Some("not-returned".to_string()))]
        );
    }

    #[test]
    fn incremental_reads_use_their_own_partitioning() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("db")).unwrap();
        let request = StreamRequest {
            incremental_partitions: 1,
            ..full(4)
        };
        let p = s.begin_stream("c", "s", request).unwrap();
        assert_eq!(p.partitions.len(), 4);
        for i in 0..4 {
            s.commit_page("c", "s", page(1, i, &[], None, Some("w1")))
                .unwrap();
        }
        s.finish_stream("c", "s", &p, None).unwrap();
        let p = s.begin_stream("c", "s", request).unwrap();
        assert_eq!((p.partitions.len(), p.mode.name()), (1, "incremental"));
        s.commit_page("c", "s", page(1, 0, &[], Some("cur"), Some("w2")))
            .unwrap();
        // Interrupted, it resumes with its one partition.
        let resumed = s.begin_stream("c", "s", request).unwrap();
        assert!(resumed.resumed);
        assert_eq!(resumed.partitions.len(), 1);
        assert_eq!(resumed.partitions[0].cursor.as_deref(), Some("cur"));
    }
}
