//! The database's schema and its migrations, keyed by `PRAGMA user_version`.
//!
//! Version 1 is the schema as it stood when versions were introduced;
//! databases written before (version 0) may lack columns added since, which
//! the step to version 1 adds. Each later change is one entry of
//! [`MIGRATIONS`], applied in order in one transaction with the version it
//! brings the database to. A database of a newer version than this build
//! knows is refused rather than written with an older idea of its tables.

use super::super::OpenError;
use rusqlite::{params, Connection};

/// The schema of version 1 (every statement idempotent: it also brings a
/// version-0 database to version 1 together with [`ADDED_BEFORE_VERSIONS`]).
const SCHEMA_V1: &str = r#"
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
    deletion_reason TEXT,
    PRIMARY KEY (connection, stream, key)
) WITHOUT ROWID;
-- No index on `parent`: embedded streams arrive in their own key order, so
-- an index by parent would take random-order writes on every page (the
-- costliest thing a sync did). A nested export sorts once instead.
DROP INDEX IF EXISTS records_by_parent;
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
    window_start TEXT,
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
/// Columns added before versions existed, added to version-0 databases
/// that lack them.
const ADDED_BEFORE_VERSIONS: &[(&str, &str, &str)] = &[
    ("records", "deletion_reason", "TEXT"),
    ("partitions", "window_start", "TEXT"),
];

/// Later migrations: entry `i` brings a database from version `i + 1` to
/// `i + 2`. Append only; never edit a released entry.
const MIGRATIONS: &[&str] = &[
    // Version 2: every change of a connection's health, for the console.
    "CREATE TABLE health_history (
        connection TEXT NOT NULL,
        at         TEXT NOT NULL,
        state      TEXT NOT NULL,
        error_kind TEXT,
        message    TEXT
    );
    CREATE INDEX health_history_by_connection ON health_history (connection, at);",
    // Version 3: records keyed by an integer id of their (connection,
    // stream) instead of the two names. Every lookup and every insert
    // compares keys in the b-tree; with the names first, each compare
    // walked two equal strings before it reached the record's key, and each
    // row and interior cell carried them. Writing a page's records took 29 %
    // fewer instructions this way (BENCHMARKS.md, "The store's layout").
    // The records are copied once, in key order.
    "CREATE TABLE stream_ids (
        id         INTEGER PRIMARY KEY,
        connection TEXT NOT NULL,
        stream     TEXT NOT NULL,
        UNIQUE (connection, stream)
    );
    INSERT INTO stream_ids (connection, stream)
        SELECT DISTINCT connection, stream FROM records ORDER BY connection, stream;
    CREATE TABLE records_by_stream_id (
        stream_id       INTEGER NOT NULL,
        key             TEXT NOT NULL,
        data            TEXT NOT NULL,
        parent          TEXT,
        generation      INTEGER NOT NULL,
        first_seen      TEXT NOT NULL,
        changed_at      TEXT NOT NULL,
        deleted_at      TEXT,
        deletion_reason TEXT,
        PRIMARY KEY (stream_id, key)
    ) WITHOUT ROWID;
    INSERT INTO records_by_stream_id
        SELECT s.id, r.key, r.data, r.parent, r.generation, r.first_seen, r.changed_at,
               r.deleted_at, r.deletion_reason
        FROM records r JOIN stream_ids s ON s.connection = r.connection AND s.stream = r.stream
        ORDER BY s.id, r.key;
    DROP TABLE records;
    ALTER TABLE records_by_stream_id RENAME TO records;",
    // Version 4: records in a rowid table, with their key in a unique
    // index. A `WITHOUT ROWID` table is one b-tree of whole rows, each
    // divider a whole row too, and a leaf it appends to is balanced with
    // its two neighbours every few rows (`balance_nonroot` evens the three
    // out, so the last fills up again soon). A rowid table appends through
    // `balance_quick`, one new leaf per leaf filled, and only the index's
    // small entries are balanced the costly way (the index is built after
    // the copy, packed). At 100k devices, writing the 302,597 records from
    // memory took 8.1 % fewer instructions and the whole sync 5.1 % fewer
    // (BENCHMARKS.md, "The store's layout, again"). The records
    // are copied once, in key order.
    "CREATE TABLE records_by_rowid (
        id              INTEGER PRIMARY KEY,
        stream_id       INTEGER NOT NULL,
        key             TEXT NOT NULL,
        data            TEXT NOT NULL,
        parent          TEXT,
        generation      INTEGER NOT NULL,
        first_seen      TEXT NOT NULL,
        changed_at      TEXT NOT NULL,
        deleted_at      TEXT,
        deletion_reason TEXT
    );
    INSERT INTO records_by_rowid (stream_id, key, data, parent, generation, first_seen,
                                  changed_at, deleted_at, deletion_reason)
        SELECT stream_id, key, data, parent, generation, first_seen, changed_at,
               deleted_at, deletion_reason
        FROM records ORDER BY stream_id, key;
    DROP TABLE records;
    ALTER TABLE records_by_rowid RENAME TO records;
    CREATE UNIQUE INDEX records_by_key ON records (stream_id, key);",
    // Version 5: whether a stream had live records when its read started
    // (NULL: not known). A full read that started without any has none
    // left unseen at its end, so its sweep for records not returned is
    // skipped: on a first sync that sweep read every record of the stream
    // once more (BENCHMARKS.md, "The first sync's sweep").
    "ALTER TABLE streams ADD COLUMN live_at_start INTEGER;",
    // Version 6: the deleted records of each stream in an index of their
    // own. A stream's records are counted from `records_by_key`, which
    // holds no `deleted_at`, and its deleted ones from this index, which
    // holds nothing else; live records, nearly all of them, are never in
    // it, so a sync pays nothing for it. Counting read every record's row
    // before: at 100k devices 200 ms for `status` and for each console
    // page, 28 ms this way (BENCHMARKS.md, "Counting a connection's
    // records").
    "CREATE INDEX records_deleted ON records (stream_id) WHERE deleted_at IS NOT NULL;",
    // Version 7: the runs still `running`, in an index of their own. Each
    // run's start marks those of its connection `interrupted` (their
    // process was killed); without it that read the whole `runs` table,
    // one row of about 3 KB per sync: a year of syncs every 5 minutes,
    // 431 MB, took 124 ms from the page cache, 0.2 ms this way
    // (BENCHMARKS.md, "Runs that never ended").
    "CREATE INDEX runs_running ON runs (connection) WHERE status = 'running';",
];

/// The schema version [`Store::open`](crate::store::Store::open) brings a database to.
pub const LATEST_VERSION: u32 = 1 + MIGRATIONS.len() as u32;

/// Brings the database to [`LATEST_VERSION`], or refuses a newer one.
pub fn migrate(conn: &Connection) -> Result<(), OpenError> {
    migrate_to(conn, LATEST_VERSION)
}

/// Brings the database to `target` (at most [`LATEST_VERSION`]), or
/// refuses a newer one than this build knows. Tests stop short of the
/// latest to write data as an earlier release did.
pub(crate) fn migrate_to(conn: &Connection, target: u32) -> Result<(), OpenError> {
    let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > LATEST_VERSION {
        return Err(OpenError::Newer {
            found,
            known: LATEST_VERSION,
        });
    }
    if found == 0 {
        step_to(conn, 1, to_version_1)?;
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as u32 + 2;
        if found < version && version <= target {
            if found > 0 {
                tracing::info!(
                    from = found,
                    to = version,
                    "bringing the database's schema to a newer version"
                );
            }
            step_to(conn, version, |conn| conn.execute_batch(sql))?;
        }
    }
    if found > 0 && found < target {
        give_back_freed_pages(conn);
    }
    Ok(())
}

/// Runs `step` in one transaction with the version it brings the database
/// to, unless another process brought it there while this one waited for
/// the write lock.
fn step_to(
    conn: &Connection,
    version: u32,
    step: impl FnOnce(&Connection) -> rusqlite::Result<()>,
) -> Result<(), OpenError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let now: u32 = match conn.pragma_query_value(None, "user_version", |r| r.get(0)) {
        Ok(now) => now,
        Err(e) => return finish(conn, Err(e), version),
    };
    if now >= version {
        conn.execute_batch("COMMIT")?;
        return Ok(());
    }
    let done = step(conn);
    finish(conn, done, version)
}

/// After migrations: a step that copied a table (version 3 copies every
/// record) leaves the old table's pages free in the file, which would keep
/// twice the records' size on disk. When more than a quarter of the file
/// is free, VACUUM gives it back (at 100k devices, 0.7 s for a 267 MB file
/// that became 114 MB). It is only housekeeping: if it cannot run, the
/// file keeps its size and its free pages are reused as records are written.
fn give_back_freed_pages(conn: &Connection) {
    let pages = |name| conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0));
    let (Ok(free), Ok(total)) = (pages("freelist_count"), pages("page_count")) else {
        return;
    };
    if free * 4 <= total {
        return;
    }
    tracing::info!(
        free_pages = free,
        total_pages = total,
        "giving back the pages the migration freed (VACUUM)"
    );
    if let Err(e) = conn.execute_batch("VACUUM") {
        tracing::warn!(error = %e, "VACUUM after the migration failed; the file keeps its free pages for later writes");
    }
}

/// Commits a migration step with the version it reached, or rolls it back.
fn finish(conn: &Connection, step: rusqlite::Result<()>, version: u32) -> Result<(), OpenError> {
    match step.and_then(|()| conn.pragma_update(None, "user_version", version)) {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e.into())
        }
    }
}

/// Version 0 (no version, any earlier schema, or an empty file) to 1.
fn to_version_1(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA_V1)?;
    for (table, column, kind) in ADDED_BEFORE_VERSIONS {
        let present: bool = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
            params![table, column],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> u32 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .unwrap();
        stmt.query_map([table], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_new_database_gets_the_latest_version() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        assert_eq!(version(&conn), LATEST_VERSION);
        // Opening again changes nothing.
        migrate(&conn).unwrap();
        assert_eq!(version(&conn), LATEST_VERSION);
    }

    #[test]
    fn a_database_from_before_versions_gains_the_columns_added_since() {
        let conn = Connection::open_in_memory().unwrap();
        // The first release's tables: no deletion reason, no window start.
        conn.execute_batch(
            "CREATE TABLE records (connection TEXT NOT NULL, stream TEXT NOT NULL, key TEXT NOT NULL,
                data TEXT NOT NULL, parent TEXT, generation INTEGER NOT NULL, first_seen TEXT NOT NULL,
                changed_at TEXT NOT NULL, deleted_at TEXT, PRIMARY KEY (connection, stream, key)) WITHOUT ROWID;
             CREATE TABLE partitions (connection TEXT NOT NULL, stream TEXT NOT NULL,
                partition INTEGER NOT NULL, cursor TEXT, done INTEGER NOT NULL, watermark TEXT,
                PRIMARY KEY (connection, stream, partition));
             INSERT INTO records VALUES ('c', 's', 'k', '{}', NULL, 1, 't', 't', NULL);",
        )
        .unwrap();
        assert!(!columns(&conn, "records").contains(&"deletion_reason".to_string()));
        migrate(&conn).unwrap();
        assert!(columns(&conn, "records").contains(&"deletion_reason".to_string()));
        assert!(columns(&conn, "partitions").contains(&"window_start".to_string()));
        assert_eq!(version(&conn), LATEST_VERSION);
        let kept: i64 = conn
            .query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1, "the records were kept");
    }

    #[test]
    fn the_copy_of_the_records_gives_its_freed_pages_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        migrate_to(&conn, 2).unwrap();
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO records (connection, stream, key, data, generation, first_seen, changed_at)
             SELECT 'c', 's', printf('k%05d', i), printf('{\"pad\":\"%1000d\"}', i), 1, 't', 't' FROM n;",
        )
        .unwrap();
        let pages = |name| -> i64 { conn.pragma_query_value(None, name, |r| r.get(0)).unwrap() };
        let before = pages("page_count");
        migrate(&conn).unwrap();
        assert_eq!(
            pages("freelist_count"),
            0,
            "the old table's pages were given back"
        );
        assert!(
            pages("page_count") <= before,
            "{} pages, {before} before",
            pages("page_count")
        );
        let kept: i64 = conn
            .query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 2000);
    }

    /// Every column of every record, in key order.
    fn all_records(conn: &Connection) -> Vec<Vec<Option<String>>> {
        let mut stmt = conn
            .prepare(
                "SELECT CAST(stream_id AS TEXT), key, data, parent, CAST(generation AS TEXT),
                        first_seen, changed_at, deleted_at, deletion_reason
                 FROM records ORDER BY stream_id, key",
            )
            .unwrap();
        stmt.query_map([], |r| (0..9).map(|i| r.get(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn the_rowid_layout_keeps_every_record_and_one_record_per_key() {
        let conn = Connection::open_in_memory().unwrap();
        migrate_to(&conn, 3).unwrap();
        conn.execute_batch(
            "INSERT INTO stream_ids (connection, stream) VALUES ('c', 'a'), ('c', 'b');
             INSERT INTO records VALUES
                (2, 'k2', '{\"v\":2}', 'p', 3, 'f', 'c', NULL, NULL),
                (1, 'k9', '{\"v\":9}', NULL, 1, 'f', 'c', 'd', 'not-returned'),
                (1, 'k1', '{\"v\":1}', NULL, 2, 'f', 'c', NULL, NULL);",
        )
        .unwrap();
        let before = all_records(&conn);
        migrate(&conn).unwrap();
        assert_eq!(all_records(&conn), before, "every record kept as it was");
        // The host's upsert names (stream_id, key) as its conflict target.
        conn.execute(
            "INSERT INTO records (stream_id, key, data, generation, first_seen, changed_at)
             VALUES (1, 'k1', '{\"v\":3}', 4, 'f', 'c')
             ON CONFLICT (stream_id, key) DO UPDATE SET data = excluded.data",
            [],
        )
        .unwrap();
        let doubled = conn.execute(
            "INSERT INTO records (stream_id, key, data, generation, first_seen, changed_at)
             VALUES (2, 'k2', '{}', 4, 'f', 'c')",
            [],
        );
        assert!(doubled.is_err(), "a second record of one key was refused");
        let records = all_records(&conn);
        assert_eq!(records.len(), 3);
        assert_eq!(records[0][2].as_deref(), Some("{\"v\":3}"));
    }

    #[test]
    fn a_step_another_process_already_took_is_not_taken_again() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        // As if this process read an older version, then waited for the
        // write lock while another migrated.
        step_to(&conn, LATEST_VERSION, |_| {
            panic!("the step ran on a database already at its version")
        })
        .unwrap();
        assert_eq!(version(&conn), LATEST_VERSION);
        assert!(conn.is_autocommit(), "no transaction is left open");
    }

    #[test]
    fn a_database_of_a_newer_release_is_refused_untouched() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST_VERSION + 1)
            .unwrap();
        let e = migrate(&conn).unwrap_err().to_string();
        assert!(e.contains("newer release"), "{e}");
        assert!(columns(&conn, "records").is_empty(), "nothing was created");
    }
}
