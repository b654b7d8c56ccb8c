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

/// The plan for reading one stream in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    /// Generation of this full read.
    pub generation: i64,
    /// Whether an interrupted read is being resumed.
    pub resumed: bool,
    /// Partition states.
    pub partitions: Vec<PartitionState>,
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

    /// Starts (or resumes) a full read of a stream with `partitions` partitions.
    pub fn begin_stream(
        &mut self,
        connection: &str,
        stream: &str,
        partitions: u32,
    ) -> rusqlite::Result<StreamPlan> {
        let tx = self.conn.transaction()?;
        let existing: Option<(i64, u32, bool)> = tx
            .query_row(
                "SELECT generation, partitions, complete FROM streams WHERE connection = ?1 AND stream = ?2",
                params![connection, stream],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0)),
            )
            .optional()?;
        let plan = match existing {
            Some((generation, count, false)) if count == partitions => {
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
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                drop(stmt);
                if states.len() == partitions as usize {
                    Some(StreamPlan {
                        generation,
                        resumed: true,
                        partitions: states,
                    })
                } else {
                    None
                }
            }
            _ => None,
        };
        let plan = match plan {
            Some(p) => p,
            None => {
                let generation = existing.map_or(1, |(g, _, _)| g + 1);
                tx.execute(
                    "INSERT INTO streams (connection, stream, generation, partitions, complete)
                     VALUES (?1, ?2, ?3, ?4, 0)
                     ON CONFLICT (connection, stream) DO UPDATE SET
                        generation = excluded.generation, partitions = excluded.partitions, complete = 0",
                    params![connection, stream, generation, partitions],
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

    /// Completes a full read once every partition is done: marks records not
    /// seen in this generation as deleted and stores the stream's watermark
    /// (the earliest of its partitions'). Returns the number newly marked deleted.
    pub fn finish_stream(
        &mut self,
        connection: &str,
        stream: &str,
        generation: i64,
    ) -> rusqlite::Result<u64> {
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
        let deleted = tx.execute(
            "UPDATE records SET deleted_at = ?4, changed_at = ?4
             WHERE connection = ?1 AND stream = ?2 AND generation < ?3 AND deleted_at IS NULL",
            params![connection, stream, generation, now],
        )?;
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

    /// Live (not deleted) records of a stream in key order, passed to `each`.
    pub fn for_each_record(
        &self,
        connection: &str,
        stream: &str,
        mut each: impl FnMut(&str, &str) -> std::io::Result<()>,
    ) -> anyhow::Result<u64> {
        let mut stmt = self.conn.prepare(
            "SELECT key, data FROM records WHERE connection = ?1 AND stream = ?2 AND deleted_at IS NULL ORDER BY key",
        )?;
        let mut rows = stmt.query(params![connection, stream])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let data: String = row.get(1)?;
            each(&key, &data)?;
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
        s.for_each_record("c", "s", |k, _| {
            out.push(k.to_string());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn resume_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("db")).unwrap();
        let p = s.begin_stream("c", "s", 2).unwrap();
        assert_eq!((p.generation, p.resumed), (1, false));
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
        let p = s.begin_stream("c", "s", 2).unwrap();
        assert!(p.resumed);
        assert_eq!(p.partitions[0].cursor.as_deref(), Some("cur"));
        s.commit_page("c", "s", 1, 0, &[rec("b", "{\"x\":1}")], None, None)
            .unwrap();
        assert_eq!(s.finish_stream("c", "s", 1).unwrap(), 0);
        s.commit_page("c", "s", 1, 1, &[rec("c", "{}")], None, Some("w0"))
            .unwrap();
        assert_eq!(s.finish_stream("c", "s", 1).unwrap(), 0);
        assert_eq!(keys(&s), ["a", "b", "c"]);
        // The stream's watermark is the earliest of its partitions'.
        let wm: Option<String> = s
            .connection()
            .query_row("SELECT watermark FROM streams", [], |r| r.get(0))
            .unwrap();
        assert_eq!(wm.as_deref(), Some("w0"));
        // The next full read does not see `a`: it is marked deleted.
        let p = s.begin_stream("c", "s", 2).unwrap();
        assert_eq!((p.generation, p.resumed), (2, false));
        s.commit_page("c", "s", 2, 0, &[rec("b", "{}")], None, None)
            .unwrap();
        s.commit_page("c", "s", 2, 1, &[rec("c", "{}")], None, None)
            .unwrap();
        assert_eq!(s.finish_stream("c", "s", 2).unwrap(), 1);
        assert_eq!(keys(&s), ["b", "c"]);
    }
}
