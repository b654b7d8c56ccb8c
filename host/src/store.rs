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

use rusqlite::{params, Connection, OptionalExtension};
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
}

/// What a sync asks of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRequest {
    /// Partitions to read it in.
    pub partitions: u32,
    /// Read everything even when an incremental read is possible.
    pub force_full: bool,
    /// Whether the component honours watermarks for this stream.
    pub supports_incremental: bool,
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

/// The database of one host.
pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS records (
    connection TEXT NOT NULL,
    stream     TEXT NOT NULL,
    key        TEXT NOT NULL,
    data       TEXT NOT NULL,
    parent     TEXT,
    generation INTEGER NOT NULL,
    first_seen TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    deleted_at TEXT,
    PRIMARY KEY (connection, stream, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_parent
    ON records (connection, stream, parent, key) WHERE parent IS NOT NULL;
CREATE TABLE IF NOT EXISTS streams (
    connection     TEXT NOT NULL,
    stream         TEXT NOT NULL,
    generation     INTEGER NOT NULL,
    partitions     INTEGER NOT NULL,
    complete       INTEGER NOT NULL,
    watermark      TEXT,
    completed_at   TEXT,
    read_mode      TEXT NOT NULL DEFAULT 'full',
    read_watermark TEXT,
    PRIMARY KEY (connection, stream)
);
CREATE TABLE IF NOT EXISTS partitions (
    connection TEXT NOT NULL,
    stream     TEXT NOT NULL,
    partition  INTEGER NOT NULL,
    cursor     TEXT,
    done       INTEGER NOT NULL,
    watermark  TEXT,
    PRIMARY KEY (connection, stream, partition)
);
CREATE TABLE IF NOT EXISTS health (
    connection TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    error_kind TEXT,
    message    TEXT,
    since      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY,
    connection  TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL,
    report      TEXT
);
"#;

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

impl Store {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path) -> rusqlite::Result<Store> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
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
        let partitions = request.partitions;
        let tx = self.conn.transaction()?;
        type Existing = (i64, u32, bool, Option<String>, String, Option<String>);
        let existing: Option<Existing> = tx
            .query_row(
                "SELECT generation, partitions, complete, watermark, read_mode, read_watermark
                 FROM streams WHERE connection = ?1 AND stream = ?2",
                params![connection, stream],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get::<_, i64>(2)? != 0,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()?;
        let resumable = |mode: &str, read_watermark: &Option<String>| match (mode, read_watermark) {
            ("incremental", Some(w)) => Some(ReadMode::Incremental {
                watermark: w.clone(),
            }),
            ("full", _) => Some(ReadMode::Full),
            _ => None,
        };
        let resumed = match &existing {
            Some((generation, count, false, _, mode, read_watermark)) if *count == partitions => {
                let states = partition_states(&tx, connection, stream)?;
                match resumable(mode, read_watermark) {
                    Some(mode) if states.len() == partitions as usize => Some(StreamPlan {
                        generation: *generation,
                        resumed: true,
                        mode,
                        partitions: states,
                    }),
                    _ => None,
                }
            }
            _ => None,
        };
        let plan = match resumed {
            Some(p) => p,
            None => {
                let incremental_from = match &existing {
                    Some((_, _, true, Some(w), _, _))
                        if request.supports_incremental && !request.force_full =>
                    {
                        Some(w.clone())
                    }
                    _ => None,
                };
                let (generation, mode) = match (incremental_from, &existing) {
                    (Some(watermark), Some((g, ..))) => (*g, ReadMode::Incremental { watermark }),
                    _ => (existing.as_ref().map_or(1, |e| e.0 + 1), ReadMode::Full),
                };
                let read_watermark = match &mode {
                    ReadMode::Incremental { watermark } => Some(watermark.clone()),
                    ReadMode::Full => None,
                };
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
                StreamPlan {
                    generation,
                    resumed: false,
                    mode,
                    partitions: (0..partitions)
                        .map(|index| PartitionState {
                            index,
                            cursor: None,
                            done: false,
                        })
                        .collect(),
                }
            }
        };
        tx.commit()?;
        Ok(plan)
    }

    /// Commits one page: its records and the partition's next cursor, atomically.
    #[allow(clippy::too_many_arguments)]
    pub fn commit_page(
        &mut self,
        connection: &str,
        stream: &str,
        generation: i64,
        partition: u32,
        records: &[StoredRecord],
        next_cursor: Option<&str>,
        watermark: Option<&str>,
    ) -> rusqlite::Result<()> {
        let now = now_rfc3339();
        let tx = self.conn.transaction()?;
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
                    deleted_at = NULL",
            )?;
            for r in records {
                upsert.execute(params![
                    connection, stream, r.key, r.data, r.parent, generation, now
                ])?;
            }
        }
        tx.execute(
            "UPDATE partitions SET cursor = ?4, done = ?5, watermark = COALESCE(?6, watermark)
             WHERE connection = ?1 AND stream = ?2 AND partition = ?3",
            params![
                connection,
                stream,
                partition,
                next_cursor,
                next_cursor.is_none(),
                watermark
            ],
        )?;
        tx.commit()
    }

    /// Completes a read once every partition is done: stores the stream's
    /// watermark (the earliest of its partitions') and, after a full read,
    /// marks records not seen in this generation as deleted. Returns the
    /// number newly marked deleted.
    pub fn finish_stream(
        &mut self,
        connection: &str,
        stream: &str,
        plan: &StreamPlan,
    ) -> rusqlite::Result<u64> {
        let generation = plan.generation;
        let now = now_rfc3339();
        let tx = self.conn.transaction()?;
        let pending: i64 = tx.query_row(
            "SELECT COUNT(*) FROM partitions WHERE connection = ?1 AND stream = ?2 AND done = 0",
            params![connection, stream],
            |r| r.get(0),
        )?;
        if pending > 0 {
            return Ok(0);
        }
        let deleted = match plan.mode {
            ReadMode::Full => tx.execute(
                "UPDATE records SET deleted_at = ?4, changed_at = ?4
                 WHERE connection = ?1 AND stream = ?2 AND generation < ?3 AND deleted_at IS NULL",
                params![connection, stream, generation, now],
            )?,
            ReadMode::Incremental { .. } => 0,
        };
        tx.execute(
            "UPDATE streams SET complete = 1, completed_at = ?4,
                watermark = (SELECT MIN(watermark) FROM partitions WHERE connection = ?1 AND stream = ?2)
             WHERE connection = ?1 AND stream = ?2 AND generation = ?3",
            params![connection, stream, generation, now],
        )?;
        tx.commit()?;
        Ok(deleted as u64)
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
        self.conn.execute(
            "INSERT INTO health (connection, state, error_kind, message, since, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (connection) DO UPDATE SET
                since = CASE WHEN health.state = excluded.state THEN health.since ELSE excluded.since END,
                state = excluded.state, error_kind = excluded.error_kind,
                message = excluded.message, updated_at = excluded.updated_at",
            params![connection, health.state.name(), health.error_kind, health.message, now],
        )?;
        Ok(())
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

    /// The last `n` runs, newest first: (id, started, finished, status, report JSON).
    #[allow(clippy::type_complexity)]
    pub fn recent_runs(
        &self,
        connection: &str,
        n: u32,
    ) -> rusqlite::Result<Vec<(i64, String, Option<String>, String, Option<String>)>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, started_at, finished_at, status, report FROM runs
             WHERE connection = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![connection, n], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
        rows.collect()
    }

    /// The records of a stream in key order, passed to `each` with the time
    /// they were marked deleted; deleted ones only with `include_deleted`.
    pub fn for_each_record(
        &self,
        connection: &str,
        stream: &str,
        include_deleted: bool,
        mut each: impl FnMut(&str, &str, Option<&str>) -> std::io::Result<()>,
    ) -> anyhow::Result<u64> {
        let mut stmt = self.conn.prepare(
            "SELECT key, data, deleted_at FROM records
             WHERE connection = ?1 AND stream = ?2 AND (?3 OR deleted_at IS NULL) ORDER BY key",
        )?;
        let mut rows = stmt.query(params![connection, stream, include_deleted])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let data: String = row.get(1)?;
            let deleted_at: Option<String> = row.get(2)?;
            each(&key, &data, deleted_at.as_deref())?;
            n += 1;
        }
        Ok(n)
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

    fn full(partitions: u32) -> StreamRequest {
        StreamRequest {
            partitions,
            force_full: false,
            supports_incremental: true,
        }
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
            1,
            0,
            &[rec("a", "{}"), rec("b", "{}")],
            Some("cur"),
            Some("w1"),
        )
        .unwrap();
        // Interrupted: the next run resumes partition 0 at its cursor.
        let p = s.begin_stream("c", "s", full(2)).unwrap();
        assert!(p.resumed);
        assert_eq!(p.partitions[0].cursor.as_deref(), Some("cur"));
        s.commit_page("c", "s", 1, 0, &[rec("b", "{\"x\":1}")], None, None)
            .unwrap();
        assert_eq!(s.finish_stream("c", "s", &p).unwrap(), 0);
        s.commit_page("c", "s", 1, 1, &[rec("c", "{}")], None, Some("w0"))
            .unwrap();
        assert_eq!(s.finish_stream("c", "s", &p).unwrap(), 0);
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
        s.commit_page("c", "s", 1, 0, &[rec("d", "{}")], None, Some("w5"))
            .unwrap();
        s.commit_page("c", "s", 1, 1, &[], None, Some("w4"))
            .unwrap();
        assert_eq!(s.finish_stream("c", "s", &p).unwrap(), 0);
        assert_eq!(keys(&s), ["a", "b", "c", "d"]);

        // A forced full read is a new generation: `a` and `d`, not seen, are deleted.
        let p = s
            .begin_stream(
                "c",
                "s",
                StreamRequest {
                    force_full: true,
                    ..full(2)
                },
            )
            .unwrap();
        assert_eq!((p.generation, &p.mode), (2, &ReadMode::Full));
        s.commit_page("c", "s", 2, 0, &[rec("b", "{}")], None, None)
            .unwrap();
        s.commit_page("c", "s", 2, 1, &[rec("c", "{}")], None, None)
            .unwrap();
        assert_eq!(s.finish_stream("c", "s", &p).unwrap(), 2);
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
        s.commit_page("c", "s", 1, 0, &[rec("a", "{}")], None, Some("w1"))
            .unwrap();
        s.finish_stream("c", "s", &p).unwrap();
        let p = s.begin_stream("c", "s", full(1)).unwrap();
        s.commit_page("c", "s", 1, 0, &[rec("b", "{}")], Some("cur"), Some("w2"))
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
        s.commit_page("c", "t", p.generation, 0, &[], None, Some("w1"))
            .unwrap();
        s.finish_stream("c", "t", &p).unwrap();
        let again = s.begin_stream("c", "t", never_incremental).unwrap();
        assert_eq!(again.mode, ReadMode::Full);
    }
}
