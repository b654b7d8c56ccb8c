//! The PostgreSQL backend: the database a deployment's hosts share.
//!
//! The statements are SQLite's, written for PostgreSQL: a page's records go
//! in one statement (`unnest` over arrays, one round trip per page),
//! records are read through a portal a batch at a time (memory stays flat),
//! and JSON is searched with `jsonb_each_text`.

pub(super) mod abandoned;
mod browse;
pub(super) mod cancel;
mod connect;
mod leases;
mod runs;
mod schema;
#[cfg(test)]
mod session_settings;

pub use connect::PostgresTarget;
#[cfg(test)]
pub(crate) use schema::{migrate_to, LATEST_VERSION};

use super::deployment::{PartitionEnd, RunEnd, RunParts, RunStream};
use super::lease::{FencedPage, HeldLease, Lease};
use super::plan::{self, NewRead, PlanTx, StoredStream};
use super::{
    live_and_deleted, now_rfc3339, Backend, Deletion, DeletionReason, EachMerged, EmbeddedRow,
    FinishedStream, Found, Health, HealthState, KeyedRecord, OpenError, PageCommit, PartitionState,
    ReadMode, RowCursor, RowQuery, StatementCanceller, StoreError, StoredRun, StreamPlan,
    StreamRequest, SyncLock, CONNECTION_TABLES, COUNTS_SQL, UPSERT_RECORD_CONFLICT,
};
use cancel::CancelSlot;
use postgres::types::ToSql;
use postgres::{Client, Transaction};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Records read per round trip by [`Backend::for_each_record`].
const BATCH: i32 = 2000;

/// A PostgreSQL database.
pub(crate) struct Postgres {
    client: Client,
    /// Where the database is: a sync's lock is a session of its own.
    target: PostgresTarget,
    /// Cancels the statement `client` runs, from another thread.
    cancel: Arc<CancelSlot>,
}

impl Postgres {
    /// [`COUNTS_SQL`]'s counts of `connection`'s streams (only `stream`'s
    /// when named).
    fn counts_of(
        &mut self,
        connection: &str,
        stream: Option<&str>,
    ) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let rows = self.client.query(COUNTS_SQL, &[&connection, &stream])?;
        Ok(live_and_deleted(rows.iter().map(|r| {
            (
                r.get(0),
                r.get::<_, i64>(1) as u64,
                r.get::<_, i64>(2) as u64,
            )
        })))
    }

    /// Connects and brings the database to the latest schema.
    pub(crate) fn open(target: &PostgresTarget) -> Result<Postgres, OpenError> {
        let mut client = target.connect()?;
        schema::migrate(&mut client)?;
        Ok(Postgres {
            cancel: CancelSlot::of(&client, target),
            client,
            target: target.clone(),
        })
    }
}

impl PlanTx for Transaction<'_> {
    fn stream(
        &mut self,
        connection: &str,
        stream: &str,
    ) -> Result<Option<StoredStream>, StoreError> {
        let row = self.query_opt(
            "SELECT generation, partitions, complete, watermark, read_mode, read_watermark
             FROM streams WHERE connection = $1 AND stream = $2 FOR UPDATE",
            &[&connection, &stream],
        )?;
        Ok(row.map(|r| StoredStream {
            generation: r.get(0),
            partitions: r.get::<_, i64>(1) as u32,
            complete: r.get(2),
            watermark: r.get(3),
            read_mode: r.get(4),
            read_watermark: r.get(5),
        }))
    }

    fn partition_states(
        &mut self,
        connection: &str,
        stream: &str,
    ) -> Result<Vec<PartitionState>, StoreError> {
        let rows = self.query(
            "SELECT partition, cursor, done FROM partitions
             WHERE connection = $1 AND stream = $2 ORDER BY partition",
            &[&connection, &stream],
        )?;
        Ok(rows
            .iter()
            .map(|r| PartitionState {
                index: r.get::<_, i64>(0) as u32,
                cursor: r.get(1),
                done: r.get(2),
            })
            .collect())
    }

    fn start(&mut self, connection: &str, stream: &str, read: &NewRead) -> Result<(), StoreError> {
        // `live_at_start`: whether any record of the stream is live as the
        // read starts (the first live one found ends the search).
        self.execute(
            "INSERT INTO streams (connection, stream, generation, partitions, complete, read_mode,
                                  read_watermark, live_at_start)
             VALUES ($1, $2, $3, $4, FALSE, $5, $6, EXISTS (SELECT 1 FROM records
                WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = $1 AND stream = $2)
                  AND deleted_at IS NULL))
             ON CONFLICT (connection, stream) DO UPDATE SET
                generation = excluded.generation, partitions = excluded.partitions, complete = FALSE,
                read_mode = excluded.read_mode, read_watermark = excluded.read_watermark,
                live_at_start = excluded.live_at_start",
            &[
                &connection,
                &stream,
                &read.generation,
                &i64::from(read.partitions),
                &read.mode.name(),
                &read.read_watermark(),
            ],
        )?;
        self.execute(
            "DELETE FROM partitions WHERE connection = $1 AND stream = $2",
            &[&connection, &stream],
        )?;
        self.execute(
            "INSERT INTO partitions (connection, stream, partition, cursor, done)
             SELECT $1, $2, p, NULL, FALSE FROM generate_series(0, $3::bigint - 1) AS p",
            &[&connection, &stream, &i64::from(read.partitions)],
        )?;
        Ok(())
    }
}

/// A health row's columns as a [`Health`] and its time.
fn health_of(row: &postgres::Row) -> (Health, String) {
    let state: String = row.get(0);
    (
        Health {
            state: HealthState::from_name(&state),
            error_kind: row.get(1),
            message: row.get(2),
        },
        row.get(3),
    )
}

/// The id of `connection`'s `stream` in `stream_ids`, given to it on its
/// first page: the first part of its records' keys. Workers starting a
/// stream together both insert; the second waits for the first's commit
/// and then finds its row.
fn stream_id(tx: &mut Transaction<'_>, connection: &str, stream: &str) -> Result<i64, StoreError> {
    let find = "SELECT id FROM stream_ids WHERE connection = $1 AND stream = $2";
    if let Some(row) = tx.query_opt(find, &[&connection, &stream])? {
        return Ok(row.get(0));
    }
    tx.execute(
        "INSERT INTO stream_ids (connection, stream) VALUES ($1, $2)
         ON CONFLICT (connection, stream) DO NOTHING",
        &[&connection, &stream],
    )?;
    Ok(tx.query_one(find, &[&connection, &stream])?.get(0))
}

/// Keys, JSON texts and parents, one array each.
type RecordColumns<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<Option<&'a str>>);

/// A page's records as the columns of one `unnest`: the last of records
/// sharing a key wins, as it does when SQLite upserts them one by one.
fn record_columns<'a>(page: &PageCommit<'a>) -> RecordColumns<'a> {
    let mut last = std::collections::HashMap::with_capacity(page.records.len());
    for (i, r) in page.records.iter().enumerate() {
        last.insert(r.key.as_str(), i);
    }
    let kept = page
        .records
        .iter()
        .enumerate()
        .filter(|(i, r)| last.get(r.key.as_str()) == Some(i))
        .map(|(_, r)| r);
    let mut columns = (Vec::new(), Vec::new(), Vec::new());
    for r in kept {
        columns.0.push(r.key.as_str());
        columns.1.push(r.data.as_str());
        columns.2.push(r.parent.as_deref());
    }
    columns
}

impl Backend for Postgres {
    fn reconnect_if_lost(&mut self) {
        if !self.client.is_closed() {
            return;
        }
        // A failed attempt leaves the closed client: the call fails with
        // "connection closed", and the next call tries again.
        match self.target.connect() {
            Ok(client) => {
                self.cancel.replace(&client);
                self.client = client;
                tracing::info!("connected to PostgreSQL again after the connection was lost");
            }
            Err(e) => tracing::debug!("connecting to PostgreSQL again failed: {e}"),
        }
    }

    fn begin_stream(
        &mut self,
        connection: &str,
        stream: &str,
        request: StreamRequest,
    ) -> Result<StreamPlan, StoreError> {
        let mut tx = self.client.transaction()?;
        let plan = plan::plan(&mut tx, connection, stream, &request)?;
        tx.commit()?;
        Ok(plan)
    }

    fn commit_page(
        &mut self,
        connection: &str,
        stream: &str,
        page: PageCommit<'_>,
        fence: Option<FencedPage<'_>>,
    ) -> Result<u64, StoreError> {
        let now = now_rfc3339();
        let (keys, data, parents) = record_columns(&page);
        let mut tx = self.client.transaction()?;
        if let Some(fenced) = &fence {
            leases::fence(&mut tx, fenced.lease)?;
        }
        let stream_id = stream_id(&mut tx, connection, stream)?;
        tx.execute(
            &format!(
                "INSERT INTO records (stream_id, key, data, parent, generation, first_seen, changed_at, deleted_at)
                 SELECT $1, r.key, r.data, r.parent, $5, $6, $6, NULL
                 FROM unnest($2::text[], $3::text[], $4::text[]) AS r(key, data, parent)
                 {UPSERT_RECORD_CONFLICT}"
            ),
            &[&stream_id, &keys, &data, &parents, &page.generation, &now],
        )?;
        let tombstoned = if page.tombstones.is_empty() {
            0
        } else {
            let keys: Vec<&str> = page.tombstones.iter().map(|t| t.key.as_str()).collect();
            let at: Vec<Option<&str>> = page
                .tombstones
                .iter()
                .map(|t| t.deleted_at.as_deref())
                .collect();
            tx.execute(
                "UPDATE records SET deleted_at = COALESCE(t.at, $4), changed_at = $4, deletion_reason = $5
                 FROM (SELECT DISTINCT ON (key) key, at FROM unnest($2::text[], $3::text[]) AS u(key, at)) AS t
                 WHERE records.stream_id = $1 AND records.key = t.key
                   AND (records.deleted_at IS NULL OR records.deletion_reason IS DISTINCT FROM $5)",
                &[&stream_id, &keys, &at, &now, &DeletionReason::DeletedAtSource.name()],
            )?
        };
        tx.execute(
            "UPDATE partitions SET cursor = $4, done = $5, watermark = COALESCE($6, watermark),
                window_start = COALESCE($7, window_start)
             WHERE connection = $1 AND stream = $2 AND partition = $3",
            &[
                &connection,
                &stream,
                &i64::from(page.partition),
                &page.next_cursor,
                &page.next_cursor.is_none(),
                &page.watermark,
                &page.window_start,
            ],
        )?;
        if let Some(fenced) = &fence {
            runs::record_part(&mut tx, fenced.lease, &(fenced.report)(tombstoned))?;
        }
        tx.commit()?;
        Ok(tombstoned)
    }

    fn claim(
        &mut self,
        holder: &str,
        lease: Duration,
        connections: &[String],
    ) -> Result<Option<Lease>, StoreError> {
        leases::claim(&mut self.client, holder, lease, connections)
    }

    fn start_due_run(
        &mut self,
        connection: &str,
        streams: &[RunStream],
    ) -> Result<Option<i64>, StoreError> {
        runs::start_due(&mut self.client, connection, streams)
    }

    fn end_partition(
        &mut self,
        held: &Lease,
        report: &str,
        end: PartitionEnd,
    ) -> Result<(), StoreError> {
        runs::end_partition(&mut self.client, held, report, end)
    }

    fn finish_run_stream(
        &mut self,
        held: &Lease,
        updated_field: Option<&str>,
    ) -> Result<(), StoreError> {
        runs::finish_stream(&mut self.client, held, updated_field)
    }

    fn runs_in_progress(&mut self, connections: &[String]) -> Result<Vec<String>, StoreError> {
        runs::in_progress(&mut self.client, connections)
    }

    fn finish_run_if_over(
        &mut self,
        connection: &str,
        updated_fields: &[(String, Option<String>)],
        end: &mut dyn FnMut(&RunParts) -> RunEnd,
    ) -> Result<Option<RunEnd>, StoreError> {
        runs::finish_run_if_over(&mut self.client, connection, updated_fields, end)
    }

    fn update_pacing(
        &mut self,
        connection: &str,
        update: &mut dyn FnMut(&str, u64) -> String,
    ) -> Result<(), StoreError> {
        runs::update_pacing(&mut self.client, connection, update)
    }

    fn renew(&mut self, held: &Lease, lease: Duration) -> Result<bool, StoreError> {
        leases::renew(&mut self.client, held, lease)
    }

    fn release(&mut self, held: &Lease) -> Result<(), StoreError> {
        leases::release(&mut self.client, held)
    }

    fn leases(&mut self, connection: &str) -> Result<Vec<HeldLease>, StoreError> {
        leases::held(&mut self.client, connection)
    }

    fn finish_stream(
        &mut self,
        connection: &str,
        stream: &str,
        plan: &StreamPlan,
        updated_field: Option<&str>,
    ) -> Result<FinishedStream, StoreError> {
        let mut tx = self.client.transaction()?;
        let read = ReadToFinish {
            connection,
            stream,
            generation: plan.generation,
            mode: &plan.mode,
            updated_field,
        };
        let finished = finish_stream_in(&mut tx, &read)?;
        tx.commit()?;
        Ok(finished.unwrap_or_default())
    }

    fn lock_syncs(&mut self, connection: &str) -> Result<Option<SyncLock>, StoreError> {
        let mut session = self
            .target
            .connect()
            .map_err(|e| StoreError::SyncLockSession(e.to_string()))?;
        let locked: bool = session
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&super::sync_lock::SYNC_LOCK_CLASS, &connection],
            )?
            .get(0);
        Ok(locked.then(|| SyncLock::session(session)))
    }

    fn start_run(&mut self, connection: &str) -> Result<i64, StoreError> {
        let mut tx = self.client.transaction()?;
        // A deployment's run in progress is the workers' to end.
        tx.execute(
            "UPDATE runs SET status = 'interrupted'
             WHERE connection = $1 AND status = 'running'
               AND id NOT IN (SELECT run_id FROM deployment_runs WHERE run_id IS NOT NULL)",
            &[&connection],
        )?;
        let row = tx.query_one(
            "INSERT INTO runs (connection, started_at, status) VALUES ($1, $2, 'running') RETURNING id",
            &[&connection, &now_rfc3339()],
        )?;
        tx.commit()?;
        Ok(row.get(0))
    }

    fn finish_run(&mut self, run: i64, status: &str, report: &str) -> Result<(), StoreError> {
        self.client.execute(
            "UPDATE runs SET finished_at = $2, status = $3, report = $4 WHERE id = $1",
            &[&run, &now_rfc3339(), &status, &report],
        )?;
        Ok(())
    }

    fn set_health(&mut self, connection: &str, health: &Health) -> Result<(), StoreError> {
        let mut tx = self.client.transaction()?;
        set_health_in(&mut tx, connection, health)?;
        tx.commit()?;
        Ok(())
    }

    fn health_history(
        &mut self,
        connection: &str,
        n: u32,
    ) -> Result<Vec<(Health, String)>, StoreError> {
        let rows = self.client.query(
            "SELECT state, error_kind, message, at FROM health_history
             WHERE connection = $1 ORDER BY at DESC, id DESC LIMIT $2",
            &[&connection, &i64::from(n)],
        )?;
        Ok(rows.iter().map(health_of).collect())
    }

    fn health(&mut self, connection: &str) -> Result<Option<(Health, String)>, StoreError> {
        let row = self.client.query_opt(
            "SELECT state, error_kind, message, since FROM health WHERE connection = $1",
            &[&connection],
        )?;
        Ok(row.as_ref().map(health_of))
    }

    fn recent_runs(&mut self, connection: &str, n: u32) -> Result<Vec<StoredRun>, StoreError> {
        let rows = self.client.query(
            "SELECT id, started_at, finished_at, status, report FROM runs
             WHERE connection = $1 ORDER BY id DESC LIMIT $2",
            &[&connection, &i64::from(n)],
        )?;
        Ok(rows
            .iter()
            .map(|r| StoredRun {
                id: r.get(0),
                started_at: r.get(1),
                finished_at: r.get(2),
                status: r.get(3),
                report: r.get(4),
            })
            .collect())
    }

    fn merged_read(
        &mut self,
        connection: &str,
        stream: &str,
        include_deleted: bool,
        queries: &[RowQuery],
        each: &mut EachMerged<'_>,
    ) -> anyhow::Result<u64> {
        let tx = RefCell::new(self.client.transaction()?);
        let mut cursors: Vec<Box<dyn RowCursor + '_>> = Vec::with_capacity(queries.len());
        for query in queries {
            let params: Vec<&(dyn ToSql + Sync)> = query
                .params
                .iter()
                .map(|p| p as &(dyn ToSql + Sync))
                .collect();
            let portal = tx.borrow_mut().bind(&numbered(&query.sql), &params)?;
            cursors.push(Box::new(PortalRows {
                tx: &tx,
                portal,
                buffer: VecDeque::new(),
                done: false,
            }));
        }
        let records = tx.borrow_mut().bind(
            "SELECT key, data, deleted_at, COALESCE(deletion_reason, $4) FROM records
             WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = $1 AND stream = $2)
               AND ($3 OR deleted_at IS NULL) ORDER BY key",
            &[
                &connection,
                &stream,
                &include_deleted,
                &DeletionReason::NotReturned.name(),
            ],
        )?;
        let mut n = 0;
        loop {
            let rows = tx.borrow_mut().query_portal(&records, BATCH)?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let deletion = row.get::<_, Option<&str>>(2).map(|at| Deletion {
                    at,
                    reason: row.get(3),
                });
                each(row.get(0), row.get(1), deletion, &mut cursors)?;
                n += 1;
            }
        }
        drop(cursors);
        tx.into_inner().commit()?;
        Ok(n)
    }

    fn delete_connection(&mut self, connection: &str) -> Result<u64, StoreError> {
        let mut tx = self.client.transaction()?;
        let records = tx.execute(
            "DELETE FROM records WHERE stream_id IN (SELECT id FROM stream_ids WHERE connection = $1)",
            &[&connection],
        )?;
        for table in ["run_streams", "run_partitions"] {
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE run_id IN (SELECT id FROM runs WHERE connection = $1)"
                ),
                &[&connection],
            )?;
        }
        let deployment_tables = ["deployment_runs", "pacing"];
        for table in CONNECTION_TABLES.into_iter().chain(deployment_tables) {
            tx.execute(
                &format!("DELETE FROM {table} WHERE connection = $1"),
                &[&connection],
            )?;
        }
        tx.commit()?;
        Ok(records)
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

    fn canceller(&self) -> StatementCanceller {
        StatementCanceller::postgres(self.cancel.clone())
    }

    #[cfg(test)]
    fn sqlite(&mut self) -> Option<&mut rusqlite::Connection> {
        None
    }
}

/// `sql` with SQLite's `?N` placeholders written as PostgreSQL's `$N`.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// An embedded query's rows, fetched from its portal a batch at a time.
struct PortalRows<'t, 'c> {
    tx: &'t RefCell<Transaction<'c>>,
    portal: postgres::Portal,
    buffer: VecDeque<EmbeddedRow>,
    done: bool,
}

impl RowCursor for PortalRows<'_, '_> {
    fn next_row(&mut self) -> anyhow::Result<Option<EmbeddedRow>> {
        if self.buffer.is_empty() && !self.done {
            let rows = self.tx.borrow_mut().query_portal(&self.portal, BATCH)?;
            self.done = rows.is_empty();
            self.buffer.extend(rows.iter().map(|row| {
                let depth = row.len() - 2;
                EmbeddedRow {
                    path: (0..depth).map(|c| row.get(c)).collect(),
                    key: row.get(depth),
                    data: row.get(depth + 1),
                }
            }));
        }
        Ok(self.buffer.pop_front())
    }
}

/// A read whose partitions may all be done, to finish.
pub(super) struct ReadToFinish<'a> {
    pub(super) connection: &'a str,
    pub(super) stream: &'a str,
    pub(super) generation: i64,
    pub(super) mode: &'a ReadMode,
    pub(super) updated_field: Option<&'a str>,
}

/// In `tx`: completes `read` once every partition is done, under the
/// stream row's lock (so two workers finishing together finish it once);
/// `None` when a partition is pending or the read is already complete.
pub(super) fn finish_stream_in(
    tx: &mut Transaction<'_>,
    read: &ReadToFinish<'_>,
) -> Result<Option<FinishedStream>, StoreError> {
    let (connection, stream) = (read.connection, read.stream);
    let Some((complete, live_at_start)) = tx
        .query_opt(
            "SELECT complete, live_at_start FROM streams
             WHERE connection = $1 AND stream = $2 AND generation = $3 FOR UPDATE",
            &[&connection, &stream, &read.generation],
        )?
        .map(|r| (r.get::<_, bool>(0), r.get::<_, Option<bool>>(1)))
    else {
        return Ok(None);
    };
    if complete {
        return Ok(None);
    }
    let pending: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM partitions WHERE connection = $1 AND stream = $2 AND NOT done",
            &[&connection, &stream],
        )?
        .get(0);
    if pending > 0 {
        return Ok(None);
    }
    let now = now_rfc3339();
    let window_start: Option<String> = tx
        .query_one(
            "SELECT MIN(window_start) FROM partitions WHERE connection = $1 AND stream = $2",
            &[&connection, &stream],
        )?
        .get(0);
    let mut finished = FinishedStream::default();
    if let (Some(start), Some(field)) = (window_start, read.updated_field) {
        finished.aged_out = mark_aged_out(tx, read, field, &start, &now)?;
    }
    // A read that started without live records has seen every live record
    // it ends with: none is left to mark.
    if *read.mode == ReadMode::Full && live_at_start != Some(false) {
        finished.not_returned = mark_not_returned(tx, read, &now)?;
    }
    tx.execute(
        "UPDATE streams SET complete = TRUE, completed_at = $4,
            watermark = (SELECT MIN(watermark) FROM partitions WHERE connection = $1 AND stream = $2)
         WHERE connection = $1 AND stream = $2 AND generation = $3",
        &[&connection, &stream, &read.generation, &now],
    )?;
    Ok(Some(finished))
}

/// In `tx`: marks the records of `read`'s stream whose updated `field` is
/// older than the retention window `start` as aged out (a record already
/// marked as no longer returned is aged out instead); returns how many.
fn mark_aged_out(
    tx: &mut Transaction<'_>,
    read: &ReadToFinish<'_>,
    field: &str,
    start: &str,
    now: &str,
) -> Result<u64, StoreError> {
    Ok(tx.execute(
        "UPDATE records SET deleted_at = $5, changed_at = $5, deletion_reason = $6
         WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = $1 AND stream = $2)
           AND (deleted_at IS NULL OR deletion_reason = $7)
           AND (data::jsonb ->> $3) COLLATE \"C\" < $4",
        &[
            &read.connection,
            &read.stream,
            &field,
            &start,
            &now,
            &DeletionReason::AgedOut.name(),
            &DeletionReason::NotReturned.name(),
        ],
    )?)
}

/// In `tx`: marks the live records of `read`'s stream that its full read
/// did not return as no longer returned; returns how many.
fn mark_not_returned(
    tx: &mut Transaction<'_>,
    read: &ReadToFinish<'_>,
    now: &str,
) -> Result<u64, StoreError> {
    Ok(tx.execute(
        "UPDATE records SET deleted_at = $4, changed_at = $4, deletion_reason = $5
         WHERE stream_id = (SELECT id FROM stream_ids WHERE connection = $1 AND stream = $2)
           AND generation < $3 AND deleted_at IS NULL",
        &[
            &read.connection,
            &read.stream,
            &read.generation,
            &now,
            &DeletionReason::NotReturned.name(),
        ],
    )?)
}

/// In `tx`: records the connection's health; `since` changes only when
/// the state does, and each change goes into its history.
pub(super) fn set_health_in(
    tx: &mut Transaction<'_>,
    connection: &str,
    health: &Health,
) -> Result<(), StoreError> {
    let now = now_rfc3339();
    let state = health.state.name();
    let unchanged: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM health WHERE connection = $1 AND state = $2
                 AND error_kind IS NOT DISTINCT FROM $3 AND message IS NOT DISTINCT FROM $4",
            &[&connection, &state, &health.error_kind, &health.message],
        )?
        .get(0);
    if unchanged == 0 {
        tx.execute(
            "INSERT INTO health_history (connection, at, state, error_kind, message)
                 VALUES ($1, $2, $3, $4, $5)",
            &[
                &connection,
                &now,
                &state,
                &health.error_kind,
                &health.message,
            ],
        )?;
    }
    tx.execute(
            "INSERT INTO health (connection, state, error_kind, message, since, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (connection) DO UPDATE SET
                since = CASE WHEN health.state = excluded.state THEN health.since ELSE excluded.since END,
                state = excluded.state, error_kind = excluded.error_kind,
                message = excluded.message, updated_at = excluded.updated_at",
            &[&connection, &state, &health.error_kind, &health.message, &now],
        )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered_the_postgresql_way() {
        assert_eq!(
            super::numbered("a = ?1 AND b = ?12 AND c = '?'"),
            "a = $1 AND b = $12 AND c = '?'"
        );
    }
}
