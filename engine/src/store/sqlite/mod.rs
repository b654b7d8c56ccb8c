//! The SQLite backend, the embedded default: one file, WAL, one writer.

mod browse;
mod lock_wait;
mod schema;

#[cfg(test)]
pub(crate) use schema::migrate_to;
pub use schema::LATEST_VERSION;

use super::lease::FencedPage;
use super::plan::{self, NewRead, PlanTx, StoredStream};
use super::{
    live_and_deleted, now_rfc3339, Backend, Deletion, DeletionReason, EachMerged, EachRecord,
    EmbeddedRow, FinishedStream, Found, Health, HealthState, KeyedRecord, OpenError, PageCommit,
    PartitionState, ReadMode, RowCursor, RowQuery, StatementCanceller, StoreError, StoredRecord,
    StoredRun, StreamPlan, StreamRequest, SyncLock, CONNECTION_TABLES, COUNTS_SQL,
    UPSERT_RECORD_CONFLICT,
};
pub(crate) use lock_wait::SqliteCanceller;
use lock_wait::{LockWait, BUSY_TIMEOUT};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// The page size of a new database, in bytes: SQLite's default. An
/// incremental sync rewrites one page per changed record (its records are
/// scattered among the stored ones), so its writes, its checkpoint and its
/// `fsync`s grow with the page; a full sync appends, and larger pages make
/// its appends a little cheaper. Measured side by side at 1M devices
/// (BENCHMARKS.md, "Page size, again"): a 1 % incremental sync took 0.30 s
/// with 4 KiB pages, 0.37 s with 8 KiB and 0.52 s with 16 KiB, the full
/// sync 7.4 s, 7.1 s and 6.7 s. Incremental syncs are the steady state.
const PAGE_SIZE: u32 = 4096;

/// How much WAL a connection writes before it checkpoints (SQLite's
/// `wal_autocheckpoint`, which counts pages): 16 MiB, what SQLite's default
/// of 1,000 pages is with 16 KiB pages. With 4 KiB pages the default
/// checkpoints four times as often, each with two `fsync`s; a full sync of
/// 1M devices took 7 % longer that way (7.89 s against 7.37 s, "Page size,
/// again").
const CHECKPOINT_WAL_BYTES: u32 = 16 << 20;

/// Puts the database in WAL mode. Changing the journal mode takes a lock
/// for which SQLite calls no busy handler: two stores opening a new file
/// at once (the console's Connect, whose first sync and whose page open it
/// together) had one fail at once with "database is locked", and that
/// connection's first sync then waited for its next turn, hours later. It
/// is tried again, pausing 1 ms, then 2, 4 … at most 50 ms, within
/// [`BUSY_TIMEOUT`], as the busy handler does for other locks.
fn use_wal(conn: &Connection) -> rusqlite::Result<()> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            done => return done,
        }
    }
}

/// A SQLite database file.
pub(crate) struct Sqlite {
    conn: Connection,
    /// What `conn`'s busy handler reads: declared after `conn`, so that
    /// the connection closes before it goes.
    lock_wait: Arc<LockWait>,
}

impl Sqlite {
    /// [`COUNTS_SQL`]'s counts of `connection`'s streams (only `stream`'s
    /// when named).
    fn counts_of(
        &self,
        connection: &str,
        stream: Option<&str>,
    ) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(COUNTS_SQL)?;
        let rows = stmt
            .query_map(params![connection, stream], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(live_and_deleted(rows))
    }

    /// Opens (creating if needed) the database file, brought to the latest schema.
    pub(crate) fn open(path: &Path) -> Result<Sqlite, OpenError> {
        let conn = Connection::open(path)?;
        let lock_wait = Arc::new(LockWait::default());
        // SAFETY: `Sqlite` holds `lock_wait` in a field declared after
        // `conn`, so the connection closes first.
        unsafe { lock_wait::install(&conn, &lock_wait)? };
        // Before anything is written (a database that exists keeps its
        // page size). Larger pages make a full sync's appends cheaper (fewer
        // b-tree pages touched, logged and balanced per page of records) and
        // an incremental sync's scattered updates dearer (each rewrites a
        // whole page into the WAL and the database): see [`PAGE_SIZE`].
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        use_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // In bytes, whatever the page size (an existing database keeps its own).
        let page_size: u32 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            CHECKPOINT_WAL_BYTES / page_size.max(512),
        )?;
        schema::migrate(&conn)?;
        Ok(Sqlite { conn, lock_wait })
    }
}

impl PlanTx for Transaction<'_> {
    fn stream(
        &mut self,
        connection: &str,
        stream: &str,
    ) -> Result<Option<StoredStream>, StoreError> {
        Ok(self
            .query_row(
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
            .optional()?)
    }

    fn partition_states(
        &mut self,
        connection: &str,
        stream: &str,
    ) -> Result<Vec<PartitionState>, StoreError> {
        let mut stmt = self.prepare(
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
            .collect::<rusqlite::Result<_>>()?;
        Ok(states)
    }

    fn start(&mut self, connection: &str, stream: &str, read: &NewRead) -> Result<(), StoreError> {
        // `live_at_start`: whether any record of the stream is live as the
        // read starts (the first live one found ends the search).
        self.execute(
            "INSERT INTO streams (connection, stream, generation, partitions, complete, read_mode,
                                  read_watermark, live_at_start)
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, EXISTS (SELECT 1 FROM records
                WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = ?1 AND stream = ?2)
                  AND deleted_at IS NULL))
             ON CONFLICT (connection, stream) DO UPDATE SET
                generation = excluded.generation, partitions = excluded.partitions, complete = 0,
                read_mode = excluded.read_mode, read_watermark = excluded.read_watermark,
                live_at_start = excluded.live_at_start",
            params![
                connection,
                stream,
                read.generation,
                read.partitions,
                read.mode.name(),
                read.read_watermark()
            ],
        )?;
        self.execute(
            "DELETE FROM partitions WHERE connection = ?1 AND stream = ?2",
            params![connection, stream],
        )?;
        for index in 0..read.partitions {
            self.execute(
                "INSERT INTO partitions (connection, stream, partition, cursor, done) VALUES (?1, ?2, ?3, NULL, 0)",
                params![connection, stream, index],
            )?;
        }
        Ok(())
    }
}

/// A JSON path to a top-level field, for `json_extract`; `None` for names
/// that would need escaping.
fn json_field_path(field: &str) -> Option<String> {
    let plain =
        !field.is_empty() && !field.contains(['"', '\\']) && !field.chars().any(char::is_control);
    plain.then(|| format!("$.\"{field}\""))
}

/// Records per statement of [`upsert_records`]. One statement of many rows
/// spares SQLite a statement's start and reset, and the host a bind of the
/// shared values, per record: the writing of 302,597 records took 22 % fewer
/// instructions than with a statement per record (BENCHMARKS.md, "The
/// store's statements"). Such a statement keeps a statement journal, kept
/// in memory (SQLite built with `SQLITE_STMTJRNL_SPILL` of 4 MiB: see
/// `.cargo/config.toml` and BENCHMARKS.md, "SQLite's statement journals").
const UPSERT_ROWS: usize = 64;

/// Marks the runs of connection `?1` still `running` as `interrupted`,
/// through the partial index `runs_running` (schema version 7), not a
/// scan of every run.
const INTERRUPT_RUNS_SQL: &str =
    "UPDATE runs SET status = 'interrupted' WHERE connection = ?1 AND status = 'running'";

/// The upsert of `rows` records: `?1` the stream's id, `?2` generation,
/// `?3` now, then key, data and parent for each row.
fn upsert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| {
            let first = 4 + 3 * i;
            format!(
                "(?1, ?{first}, ?{}, ?{}, ?2, ?3, ?3, NULL)",
                first + 1,
                first + 2
            )
        })
        .collect();
    format!(
        "INSERT INTO records (stream_id, key, data, parent, generation, first_seen, changed_at, deleted_at)
         VALUES {} {UPSERT_RECORD_CONFLICT}",
        values.join(", ")
    )
}

/// The id of `connection`'s `stream` in `stream_ids`, given to it on its
/// first page: the first part of its records' keys.
fn stream_id(tx: &Transaction<'_>, connection: &str, stream: &str) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO stream_ids (connection, stream) VALUES (?1, ?2)
         ON CONFLICT (connection, stream) DO NOTHING",
    )?
    .execute(params![connection, stream])?;
    tx.prepare_cached("SELECT id FROM stream_ids WHERE connection = ?1 AND stream = ?2")?
        .query_row(params![connection, stream], |r| r.get(0))
}

/// Upserts a page's records in their order ([`UPSERT_ROWS`] to a statement,
/// the rest one by one): a record seen again keeps its `changed_at` when its
/// data is unchanged and it was not deleted.
fn upsert_records(
    tx: &Transaction<'_>,
    stream_id: i64,
    page: &PageCommit<'_>,
    now: &str,
) -> Result<(), StoreError> {
    static UPSERT_MANY: LazyLock<String> = LazyLock::new(|| upsert_sql(UPSERT_ROWS));
    static UPSERT_ONE: LazyLock<String> = LazyLock::new(|| upsert_sql(1));
    let mut chunks = page.records.chunks_exact(UPSERT_ROWS);
    let mut many = tx.prepare_cached(&UPSERT_MANY)?;
    for chunk in chunks.by_ref() {
        bind_upsert(&mut many, stream_id, page.generation, now, chunk)?;
        many.raw_execute()?;
    }
    let mut one = tx.prepare_cached(&UPSERT_ONE)?;
    for record in chunks.remainder() {
        bind_upsert(
            &mut one,
            stream_id,
            page.generation,
            now,
            std::slice::from_ref(record),
        )?;
        one.raw_execute()?;
    }
    Ok(())
}

/// Binds the parameters of [`upsert_sql`] for `records`.
fn bind_upsert(
    statement: &mut rusqlite::Statement<'_>,
    stream_id: i64,
    generation: i64,
    now: &str,
    records: &[StoredRecord],
) -> rusqlite::Result<()> {
    statement.raw_bind_parameter(1, stream_id)?;
    statement.raw_bind_parameter(2, generation)?;
    statement.raw_bind_parameter(3, now)?;
    for (i, r) in records.iter().enumerate() {
        let first = 4 + 3 * i;
        statement.raw_bind_parameter(first, r.key.as_str())?;
        statement.raw_bind_parameter(first + 1, r.data.as_str())?;
        statement.raw_bind_parameter(first + 2, r.parent.as_deref())?;
    }
    Ok(())
}

/// A transaction that writes, holding the write lock from its start
/// (`BEGIN IMMEDIATE`), waited for up to [`BUSY_TIMEOUT`]. A deferred one
/// that has read first and then writes while another connection holds the
/// lock fails at once with "database is locked": SQLite calls no busy
/// handler for a read transaction's upgrade, whose snapshot the other
/// writer may be about to make stale. The console's Connect met it: its
/// first sync failed within a second while the page shown next opened the
/// new database (each step of that open's migration check takes the write
/// lock for a moment).
fn write_transaction(conn: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// The transaction of [`Backend::commit_page`]: the page's records, its
/// tombstones and the partition's next cursor.
fn commit_page_in(
    conn: &mut Connection,
    connection: &str,
    stream: &str,
    page: &PageCommit<'_>,
    now: &str,
) -> Result<u64, StoreError> {
    let tx = write_transaction(conn)?;
    let stream_id = stream_id(&tx, connection, stream)?;
    let mut tombstoned = 0;
    {
        upsert_records(&tx, stream_id, page, now)?;
        let mut tombstone = tx.prepare_cached(
            "UPDATE records SET deleted_at = COALESCE(?3, ?4), changed_at = ?4, deletion_reason = ?5
             WHERE stream_id = ?1 AND key = ?2
               AND (deleted_at IS NULL OR deletion_reason IS NOT ?5)",
        )?;
        for t in page.tombstones {
            tombstoned += tombstone.execute(params![
                stream_id,
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

/// Marks the stream's records whose updated field (at the JSON `path`) is
/// older than the read's retention window `start` as aged out; a record
/// already marked as no longer returned is aged out instead. Returns how
/// many were marked.
fn mark_aged_out(
    tx: &Transaction<'_>,
    connection: &str,
    stream: &str,
    path: &str,
    start: &str,
    now: &str,
) -> rusqlite::Result<u64> {
    Ok(tx.execute(
        "UPDATE records SET deleted_at = ?5, changed_at = ?5, deletion_reason = ?6
         WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = ?1 AND stream = ?2)
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
    )? as u64)
}

/// Whether the stream's read started without live records: then it has
/// seen every live record it ends with, and none is left to mark.
fn started_without_live(
    tx: &Transaction<'_>,
    connection: &str,
    stream: &str,
) -> rusqlite::Result<bool> {
    let live_at_start: Option<i64> = tx.query_row(
        "SELECT live_at_start FROM streams WHERE connection = ?1 AND stream = ?2",
        params![connection, stream],
        |r| r.get(0),
    )?;
    Ok(live_at_start == Some(0))
}

/// Marks the stream's live records that the full read of `generation` did
/// not return as no longer returned; returns how many.
fn mark_not_returned(
    tx: &Transaction<'_>,
    connection: &str,
    stream: &str,
    generation: i64,
    now: &str,
) -> rusqlite::Result<u64> {
    Ok(tx.execute(
        "UPDATE records SET deleted_at = ?4, changed_at = ?4, deletion_reason = ?5
         WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = ?1 AND stream = ?2)
           AND generation < ?3 AND deleted_at IS NULL",
        params![
            connection,
            stream,
            generation,
            now,
            DeletionReason::NotReturned.name()
        ],
    )? as u64)
}

impl Backend for Sqlite {
    /// Starts or resumes the read of a stream: resumes an interrupted read
    /// with the same partitioning; otherwise reads incrementally from the
    /// last complete read's watermark when allowed, else fully (a new generation).
    fn begin_stream(
        &mut self,
        connection: &str,
        stream: &str,
        request: StreamRequest,
    ) -> Result<StreamPlan, StoreError> {
        let mut tx = write_transaction(&mut self.conn)?;
        let plan = plan::plan(&mut tx, connection, stream, &request)?;
        tx.commit()?;
        Ok(plan)
    }

    /// Commits one page atomically: its records, its tombstones and the
    /// partition's next cursor. Returns the number of records the tombstones
    /// newly marked deleted.
    fn commit_page(
        &mut self,
        connection: &str,
        stream: &str,
        page: PageCommit<'_>,
        fence: Option<FencedPage<'_>>,
    ) -> Result<u64, StoreError> {
        if fence.is_some() {
            return Err(StoreError::NeedsPostgres("a lease"));
        }
        let now = now_rfc3339();
        commit_page_in(&mut self.conn, connection, stream, &page, &now)
    }

    /// Completes a read once every partition is done: stores the stream's
    /// watermark (the earliest of its partitions'), marks records whose
    /// `updated_field` is older than the read's retention window as aged out
    /// and, after a full read, records not seen in this generation as no
    /// longer returned. Returns the numbers newly marked.
    fn finish_stream(
        &mut self,
        connection: &str,
        stream: &str,
        plan: &StreamPlan,
        updated_field: Option<&str>,
    ) -> Result<FinishedStream, StoreError> {
        let generation = plan.generation;
        let now = now_rfc3339();
        let tx = write_transaction(&mut self.conn)?;
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
            finished.aged_out = mark_aged_out(&tx, connection, stream, &path, &start, &now)?;
        }
        if plan.mode == ReadMode::Full && !started_without_live(&tx, connection, stream)? {
            finished.not_returned = mark_not_returned(&tx, connection, stream, generation, &now)?;
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

    /// Takes the connection's sync lock: a lock file beside the database,
    /// none for a database in memory.
    fn lock_syncs(&mut self, connection: &str) -> Result<Option<SyncLock>, StoreError> {
        match self.conn.path().filter(|p| !p.is_empty()) {
            Some(file) => super::sync_lock::lock(Path::new(file), connection),
            None => Ok(Some(SyncLock::private())),
        }
    }

    fn start_run(&mut self, connection: &str) -> Result<i64, StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        tx.execute(INTERRUPT_RUNS_SQL, params![connection])?;
        tx.execute(
            "INSERT INTO runs (connection, started_at, status) VALUES (?1, ?2, 'running')",
            params![connection, now_rfc3339()],
        )?;
        let run = tx.last_insert_rowid();
        tx.commit()?;
        Ok(run)
    }

    /// Records the end of a run with its report (JSON).
    fn finish_run(&mut self, run: i64, status: &str, report: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE runs SET finished_at = ?2, status = ?3, report = ?4 WHERE id = ?1",
            params![run, now_rfc3339(), status, report],
        )?;
        Ok(())
    }

    /// Records the connection's health after a run; `since` changes only
    /// when the state does.
    fn set_health(&mut self, connection: &str, health: &Health) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let tx = write_transaction(&mut self.conn)?;
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
        Ok(tx.commit()?)
    }

    /// The connection's last `n` changes of health, newest first: each
    /// health and when it began.
    fn health_history(
        &mut self,
        connection: &str,
        n: u32,
    ) -> Result<Vec<(Health, String)>, StoreError> {
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
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The connection's health and when it entered that state.
    fn health(&mut self, connection: &str) -> Result<Option<(Health, String)>, StoreError> {
        Ok(self
            .conn
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
            .optional()?)
    }

    /// The last `n` runs, newest first.
    fn recent_runs(&mut self, connection: &str, n: u32) -> Result<Vec<StoredRun>, StoreError> {
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
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn merged_read(
        &mut self,
        connection: &str,
        stream: &str,
        include_deleted: bool,
        queries: &[RowQuery],
        each: &mut EachMerged<'_>,
    ) -> anyhow::Result<u64> {
        let mut statements = queries
            .iter()
            .map(|q| self.conn.prepare(&q.sql))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut cursors: Vec<Box<dyn RowCursor + '_>> = Vec::with_capacity(queries.len());
        for (statement, query) in statements.iter_mut().zip(queries) {
            let rows = statement.query_map(
                rusqlite::params_from_iter(query.params.iter()),
                embedded_row as RowMapper,
            )?;
            cursors.push(Box::new(SqliteRows(rows)));
        }
        records_in_key_order(
            &self.conn,
            connection,
            stream,
            include_deleted,
            &mut |key, data, deletion| each(key, data, deletion, &mut cursors),
        )
    }

    /// Deletes everything stored for `connection` (records, the state of
    /// its streams and partitions, its health and runs) in one
    /// transaction; returns the records deleted. Other connections in the
    /// same file are untouched.
    fn delete_connection(&mut self, connection: &str) -> Result<u64, StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        let records = tx.execute(
            "DELETE FROM records WHERE stream_id IN (SELECT id FROM stream_ids WHERE connection = ?1)",
            [connection],
        )?;
        for table in CONNECTION_TABLES {
            tx.execute(
                &format!("DELETE FROM {table} WHERE connection = ?1"),
                [connection],
            )?;
        }
        tx.commit()?;
        Ok(records as u64)
    }

    /// Live and deleted records per stream that has any ([`COUNTS_SQL`]).
    fn counts(&mut self, connection: &str) -> Result<Vec<(String, u64, u64)>, StoreError> {
        self.counts_of(connection, None)
    }

    fn search(
        &mut self,
        connection: &str,
        stream: &str,
        embedded: &[String],
        term: &str,
        limit: u32,
        offset: u64,
    ) -> Result<Found, StoreError> {
        self.search_records(connection, stream, embedded, term, limit, offset)
    }

    fn record(
        &mut self,
        connection: &str,
        stream: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        self.record_by_key(connection, stream, key)
    }

    fn embedded_in(
        &mut self,
        connection: &str,
        stream: &str,
        parent: &str,
        limit: u32,
    ) -> Result<Vec<KeyedRecord>, StoreError> {
        self.embedded_records(connection, stream, parent, limit)
    }

    #[cfg(test)]
    fn sqlite(&mut self) -> Option<&mut Connection> {
        Some(&mut self.conn)
    }

    /// Interrupts the connection's running statement, which fails and
    /// whose transaction is rolled back, and ends every wait for another
    /// connection's write lock from then on ([`lock_wait`]).
    fn canceller(&self) -> StatementCanceller {
        StatementCanceller::sqlite(Arc::new(SqliteCanceller::of(&self.conn, &self.lock_wait)))
    }
}

/// The records of a stream in key order, passed to `each` with when and
/// why they were marked deleted; deleted ones only with `include_deleted`.
fn records_in_key_order(
    conn: &Connection,
    connection: &str,
    stream: &str,
    include_deleted: bool,
    each: &mut EachRecord<'_>,
) -> anyhow::Result<u64> {
    let mut stmt = conn.prepare(
        "SELECT key, data, deleted_at, COALESCE(deletion_reason, ?4) FROM records
         WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = ?1 AND stream = ?2)
           AND (?3 OR deleted_at IS NULL) ORDER BY key",
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

/// How a row of an embedded query becomes an [`EmbeddedRow`].
type RowMapper = fn(&rusqlite::Row<'_>) -> rusqlite::Result<EmbeddedRow>;

/// The ancestor keys, then the key and the data.
fn embedded_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EmbeddedRow> {
    let depth = row.as_ref().column_count() - 2;
    let path = (0..depth)
        .map(|c| row.get::<_, String>(c))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(EmbeddedRow {
        path,
        key: row.get(depth)?,
        data: row.get(depth + 1)?,
    })
}

/// An embedded query's rows, as SQLite steps through them.
struct SqliteRows<'s>(rusqlite::MappedRows<'s, RowMapper>);

impl RowCursor for SqliteRows<'_> {
    fn next_row(&mut self) -> anyhow::Result<Option<EmbeddedRow>> {
        Ok(self.0.next().transpose()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_opened_by_many_at_once_opens_for_each() {
        // The console's Connect: the first sync and the connection's page
        // open the new file together.
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("new.db");
            let start = std::sync::Arc::new(std::sync::Barrier::new(4));
            let opens: Vec<_> = (0..4)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Sqlite::open(&path).err().map(|e| e.to_string())
                    })
                })
                .collect();
            for open in opens {
                assert_eq!(open.join().unwrap(), None, "round {round}");
            }
        }
    }

    #[test]
    fn sqlite_is_built_with_this_workspaces_options() {
        let conn = Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Each of `.cargo/config.toml`'s LIBSQLITE3_FLAGS, and why.
        for (option, why) in [
            (
                "DEFAULT_MEMSTATUS=0",
                "memory statistics take a global mutex on every allocation",
            ),
            (
                "DEFAULT_LOOKASIDE=1200,512",
                "a 64-row upsert's bound strings outnumber the default 30 lookaside slots",
            ),
            (
                "STMTJRNL_SPILL=4194304",
                "a statement journal would be spilled to a temporary file past 64 KiB",
            ),
        ] {
            assert!(
                options.iter().any(|o| o == option),
                "SQLite was compiled without {option} ({why}): build inside this \
                 workspace, whose .cargo/config.toml sets LIBSQLITE3_FLAGS; its \
                 options: {options:?}"
            );
        }
    }

    fn page_size(path: &Path) -> u32 {
        let conn = Connection::open(path).unwrap();
        conn.pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap()
    }

    /// A row of `records` as the upsert left it.
    #[derive(Debug)]
    struct Row {
        key: String,
        data: String,
        parent: Option<String>,
        generation: i64,
        changed_at: String,
        deleted_at: Option<String>,
    }

    /// Every row of `records`, in key order.
    fn stored(conn: &Connection) -> Vec<Row> {
        let mut stmt = conn
            .prepare("SELECT key, data, parent, generation, changed_at, deleted_at FROM records ORDER BY key")
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok(Row {
                    key: r.get(0)?,
                    data: r.get(1)?,
                    parent: r.get(2)?,
                    generation: r.get(3)?,
                    changed_at: r.get(4)?,
                    deleted_at: r.get(5)?,
                })
            })
            .unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    fn commit(db: &mut Sqlite, generation: i64, records: &[StoredRecord]) {
        let page = PageCommit::of_records(generation, 0, records, None);
        db.commit_page("c", "s", page, None).unwrap();
    }

    #[test]
    fn a_page_the_database_refuses_leaves_nothing_of_itself() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Sqlite::open(&dir.path().join("journals.db")).unwrap();
        let records: Vec<StoredRecord> = (0..3 * UPSERT_ROWS)
            .map(|i| StoredRecord {
                key: format!("k{i:04}"),
                data: format!("{{\"pad\":\"{:4000}\"}}", i),
                parent: None,
            })
            .collect();
        commit(&mut db, 1, &records);
        assert_eq!(stored(&db.conn).len(), records.len());
        // A page the database refuses: nothing of it is kept.
        db.conn
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.key = 'bad'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let mut refused = records.clone();
        refused[0].data = "{}".into();
        refused.push(StoredRecord {
            key: "bad".into(),
            data: "{}".into(),
            parent: None,
        });
        let page = PageCommit::of_records(2, 0, &refused, None);
        let e = db.commit_page("c", "s", page, None).unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
        assert_ne!(
            stored(&db.conn)[0].data,
            "{}",
            "nothing of the refused page was kept"
        );
    }

    /// A full read of stream `s` (one partition, never incremental).
    fn full_read(db: &mut Sqlite) -> StreamPlan {
        let request = StreamRequest {
            partitions: 1,
            incremental_partitions: 1,
            force_full: false,
            supports_incremental: false,
        };
        db.begin_stream("c", "s", request).unwrap()
    }

    #[test]
    fn a_stream_planned_while_another_connection_writes_waits_for_its_lock() {
        // Planning reads the stream's state, then writes the new read. As
        // a deferred transaction that write failed at once while another
        // connection held the write lock, without waiting for it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.db");
        let mut db = Sqlite::open(&path).unwrap();
        let lock_wait = db.lock_wait.clone();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let planning = std::thread::spawn(move || {
            let request = StreamRequest {
                partitions: 1,
                incremental_partitions: 1,
                force_full: false,
                supports_incremental: false,
            };
            db.begin_stream("c", "s", request).map(|_| ())
        });
        // A deadline for the test, not a measurement.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !lock_wait.waited.load(std::sync::atomic::Ordering::SeqCst) {
            if planning.is_finished() {
                let outcome = planning.join().unwrap();
                panic!("planning did not wait for the other connection's write lock: {outcome:?}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "planning neither waited nor ended"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        other.execute_batch("COMMIT").unwrap();
        planning
            .join()
            .unwrap()
            .expect("planned once the other connection let its lock go");
    }

    /// A commit on a thread of its own: its outcome, and the thread, which
    /// gives the store and the plan back.
    type BackgroundCommit = (
        std::sync::mpsc::Receiver<Result<u64, StoreError>>,
        std::thread::JoinHandle<(Sqlite, StreamPlan)>,
    );

    /// Commits `keys` as a page of `plan`'s read on a thread of its own.
    fn commit_in_background(
        mut db: Sqlite,
        plan: StreamPlan,
        keys: &'static [&'static str],
    ) -> BackgroundCommit {
        let (done, outcome) = std::sync::mpsc::channel();
        let committing = std::thread::spawn(move || {
            let page_records = records(keys);
            let page = PageCommit::of_records(plan.generation, 0, &page_records, None);
            done.send(db.commit_page("c", "s", page, None)).unwrap();
            (db, plan)
        });
        (outcome, committing)
    }

    /// The outcome of a commit waiting for another connection's lock,
    /// cancelled until it gives up. A cancel while nothing runs ends no
    /// wait yet, so it is repeated until the commit has started. Fails
    /// once the commit waited half of [`BUSY_TIMEOUT`] (a deadline for the
    /// test, not a measurement).
    fn outcome_once_cancelled(
        canceller: &StatementCanceller,
        outcome: &std::sync::mpsc::Receiver<Result<u64, StoreError>>,
    ) -> Result<u64, StoreError> {
        let deadline = Instant::now() + BUSY_TIMEOUT / 2;
        loop {
            canceller.cancel();
            match outcome.recv_timeout(Duration::from_millis(20)) {
                Ok(committed) => return committed,
                Err(_) => assert!(
                    Instant::now() < deadline,
                    "the cancelled commit still waited for the other connection's lock after {} s",
                    (BUSY_TIMEOUT / 2).as_secs()
                ),
            }
        }
    }

    #[test]
    fn a_commit_waiting_for_another_connections_lock_gives_up_when_cancelled_and_so_do_later_ones()
    {
        // A stopped sync cancels a commit still waiting after a grace.
        // SQLite's own busy handler slept on through `sqlite3_interrupt`
        // until its 30 s were up, and the stop waited with it, then as
        // long again for each statement after it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cancel.db");
        let mut db = Sqlite::open(&path).unwrap();
        let plan = full_read(&mut db);
        let canceller = db.canceller();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (outcome, committing) = commit_in_background(db, plan, &["a", "b"]);
        let e = outcome_once_cancelled(&canceller, &outcome)
            .expect_err("committed while another connection held the write lock");
        assert!(e.is_given_up(), "{e}");
        other.execute_batch("COMMIT").unwrap();
        let (db, plan) = committing.join().unwrap();
        assert!(
            stored(&db.conn).is_empty(),
            "nothing of the cancelled page was written"
        );

        // The store's sync was stopped: no later statement waits either.
        // (A deadline for the test, not a measurement: half of what a
        // commit waits for the lock unless it gives up.)
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (outcome, committing) = commit_in_background(db, plan, &["a"]);
        let later = outcome
            .recv_timeout(BUSY_TIMEOUT / 2)
            .expect("a commit after the cancel still waited for the other connection's lock");
        assert!(later.expect_err("committed under the lock").is_given_up());
        other.execute_batch("COMMIT").unwrap();
        // Without another connection's lock in the way, it writes as before.
        let (db, plan) = committing.join().unwrap();
        let (outcome, committing) = commit_in_background(db, plan, &["a"]);
        outcome.recv().unwrap().expect("no lock to wait for");
        let (db, _) = committing.join().unwrap();
        assert_eq!(stored(&db.conn).len(), 1);
    }

    fn live_at_start(db: &Sqlite) -> Option<i64> {
        db.conn
            .query_row(
                "SELECT live_at_start FROM streams WHERE stream = 's'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn records(keys: &[&str]) -> Vec<StoredRecord> {
        keys.iter()
            .map(|k| StoredRecord {
                key: k.to_string(),
                data: "{}".into(),
                parent: None,
            })
            .collect()
    }

    #[test]
    fn a_full_read_that_started_without_live_records_skips_the_sweep_and_no_other_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Sqlite::open(&dir.path().join("sweep.db")).unwrap();
        let plan = full_read(&mut db);
        assert_eq!(live_at_start(&db), Some(0), "an empty stream");
        commit(&mut db, plan.generation, &records(&["a", "b", "c"]));
        assert_eq!(
            db.finish_stream("c", "s", &plan, None)
                .unwrap()
                .not_returned,
            0
        );
        // The next full read starts with live records: `c`, unseen, goes.
        let plan = full_read(&mut db);
        assert_eq!(live_at_start(&db), Some(1));
        commit(&mut db, plan.generation, &records(&["a", "b"]));
        assert_eq!(
            db.finish_stream("c", "s", &plan, None)
                .unwrap()
                .not_returned,
            1
        );
        // A stream row from before version 5 (not known) is swept, and
        // the flag is what spares the sweep: told (falsely) that the read
        // started empty, it leaves the unseen `a` live.
        for (flag, seen, marked) in [(None, &["a"][..], 1), (Some(0), &[][..], 0)] {
            let plan = full_read(&mut db);
            commit(&mut db, plan.generation, &records(seen));
            db.conn
                .execute("UPDATE streams SET live_at_start = ?1", [flag])
                .unwrap();
            let finished = db.finish_stream("c", "s", &plan, None).unwrap();
            assert_eq!(finished.not_returned, marked, "flag {flag:?}");
        }
        // With every record deleted, a read starts without live records.
        db.conn
            .execute("UPDATE records SET deleted_at = 'gone'", [])
            .unwrap();
        full_read(&mut db);
        assert_eq!(live_at_start(&db), Some(0));
    }

    /// What SQLite's plan for `sql` (its parameters `c` and NULL) says of
    /// each step.
    fn query_plan(db: &Sqlite, sql: &str) -> Vec<String> {
        let mut stmt = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let values: [&dyn rusqlite::ToSql; 2] = [&"c", &None::<&str>];
        stmt.query_map(&values[..stmt.parameter_count()], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Counting a connection's records reads two indexes and no record's
    /// row (at 100k devices 28 ms against 200 ms, BENCHMARKS.md).
    #[test]
    fn counting_a_connections_records_reads_indexes_not_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("counts.db")).unwrap();
        let plan = query_plan(&db, COUNTS_SQL);
        for step in [
            "USING COVERING INDEX records_by_key (stream_id=?)",
            "USING INDEX records_deleted (stream_id=?)",
        ] {
            assert!(
                plan.iter().any(|p| p.ends_with(step)),
                "no step {step:?} in {plan:?}"
            );
        }
        assert!(
            !plan.iter().any(|p| p.starts_with("SCAN r")),
            "a scan of the records in {plan:?}"
        );
    }

    /// A run's start finds its connection's runs that never ended in a
    /// partial index: a scan read every run ever recorded (a year of syncs
    /// every 5 minutes: 124 ms against 0.2 ms, BENCHMARKS.md).
    #[test]
    fn a_runs_start_finds_the_runs_still_running_in_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("runs.db")).unwrap();
        let plan = query_plan(&db, INTERRUPT_RUNS_SQL);
        assert_eq!(
            plan,
            ["SEARCH runs USING INDEX runs_running (connection=?)"],
            "{plan:?}"
        );
    }

    #[test]
    fn a_page_upserts_each_record_in_order_whether_in_a_statement_of_many_or_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Sqlite::open(&dir.path().join("upsert.db")).unwrap();
        db.begin_stream(
            "c",
            "s",
            StreamRequest {
                partitions: 1,
                incremental_partitions: 1,
                force_full: false,
                supports_incremental: false,
            },
        )
        .unwrap();
        // Two full statements and a remainder, so both statements run.
        let n = 2 * UPSERT_ROWS + 7;
        let record = |i: usize, data: &str| StoredRecord {
            key: format!("k{i:04}"),
            data: data.to_string(),
            parent: i.is_multiple_of(2).then(|| format!("p{i}")),
        };
        let first: Vec<StoredRecord> = (0..n).map(|i| record(i, "{\"v\":1}")).collect();
        commit(&mut db, 1, &first);
        // Every record as if written long ago, one deleted since.
        db.conn
            .execute_batch("UPDATE records SET changed_at = 'before'; UPDATE records SET deleted_at = 'gone' WHERE key = 'k0003'")
            .unwrap();
        // Again: k0001 changed, k0005 changed twice within the first
        // statement (the later one wins), k0003 back, the last one (in the
        // remainder) changed, a new key at the end.
        let mut again: Vec<StoredRecord> = (0..n).map(|i| record(i, "{\"v\":1}")).collect();
        again[1].data = "{\"v\":2}".into();
        again.insert(6, record(5, "{\"v\":3}"));
        again.last_mut().unwrap().data = "{\"v\":4}".into();
        again.push(record(n, "{\"v\":5}"));
        commit(&mut db, 2, &again);

        let rows = stored(&db.conn);
        assert_eq!(rows.len(), n + 1, "one row per key, the repeated key once");
        let changed: Vec<&str> = rows
            .iter()
            .filter(|r| r.changed_at != "before")
            .map(|r| r.key.as_str())
            .collect();
        let last = format!("k{:04}", n - 1);
        let new = format!("k{n:04}");
        assert_eq!(
            changed,
            ["k0001", "k0003", "k0005", last.as_str(), new.as_str()]
        );
        assert_eq!(rows[5].data, "{\"v\":3}");
        assert_eq!(rows[n - 1].data, "{\"v\":4}");
        assert!(
            rows.iter()
                .all(|r| r.generation == 2 && r.deleted_at.is_none()),
            "every record of generation 2, none deleted"
        );
        let parents: Vec<Option<String>> = rows.iter().map(|r| r.parent.clone()).collect();
        let expected: Vec<Option<String>> = (0..=n)
            .map(|i| i.is_multiple_of(2).then(|| format!("p{i}")))
            .collect();
        assert_eq!(parents, expected);
    }

    /// The WAL's checkpoint interval of the store's connection, in bytes.
    fn checkpoint_interval_bytes(store: &Sqlite, page_size: u32) -> u32 {
        let pages: u32 = store
            .conn
            .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))
            .unwrap();
        pages * page_size
    }

    #[test]
    fn a_new_database_has_4_kib_pages_and_an_existing_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.db");
        let store = Sqlite::open(&new).unwrap();
        assert_eq!(page_size(&new), PAGE_SIZE);
        assert_eq!(
            checkpoint_interval_bytes(&store, PAGE_SIZE),
            CHECKPOINT_WAL_BYTES,
            "a new database checkpoints every 16 MiB of WAL, not SQLite's 1,000 pages"
        );
        drop(store);

        // A database written by an earlier release, with 16 KiB pages.
        let old = dir.path().join("old.db");
        let conn = Connection::open(&old).unwrap();
        conn.pragma_update(None, "page_size", 16384).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE kept (x); INSERT INTO kept VALUES (1);")
            .unwrap();
        drop(conn);
        let store = Sqlite::open(&old).unwrap();
        assert_eq!(page_size(&old), 16384);
        assert_eq!(
            checkpoint_interval_bytes(&store, 16384),
            CHECKPOINT_WAL_BYTES,
            "a database with 16 KiB pages checkpoints every 16 MiB of WAL too"
        );
        drop(store);
        let conn = Connection::open(&old).unwrap();
        let kept: i64 = conn
            .query_row("SELECT x FROM kept", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1);
    }
}
