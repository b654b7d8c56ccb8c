//! The PostgreSQL schema and its migrations, versioned in the table
//! `connector_schema`: each entry of [`MIGRATIONS`] runs once, in order, in
//! one transaction with the version it brings the database to, under an
//! advisory lock so that hosts starting together migrate once. A database
//! of a newer version than this build knows is refused.
//!
//! The tables mirror SQLite's; text that is compared or ordered (keys,
//! connection and stream names, timestamps) uses the `C` collation, so
//! keys come back in byte order as they do from SQLite, whatever the
//! database's locale.

use super::super::OpenError;
use postgres::Client;

/// Migration `i` brings a database from version `i` to `i + 1`. Append
/// only; never edit a released entry.
const MIGRATIONS: &[&str] = &[
    // Version 1: the tables of SQLite's version 2.
    r#"
CREATE TABLE records (
    connection      TEXT COLLATE "C" NOT NULL,
    stream          TEXT COLLATE "C" NOT NULL,
    key             TEXT COLLATE "C" NOT NULL,
    data            TEXT NOT NULL,
    parent          TEXT COLLATE "C",
    generation      BIGINT NOT NULL,
    first_seen      TEXT COLLATE "C" NOT NULL,
    changed_at      TEXT COLLATE "C" NOT NULL,
    deleted_at      TEXT COLLATE "C",
    deletion_reason TEXT,
    PRIMARY KEY (connection, stream, key)
);
CREATE TABLE streams (
    connection     TEXT COLLATE "C" NOT NULL,
    stream         TEXT COLLATE "C" NOT NULL,
    generation     BIGINT NOT NULL,
    partitions     BIGINT NOT NULL,
    complete       BOOLEAN NOT NULL,
    watermark      TEXT COLLATE "C",
    completed_at   TEXT COLLATE "C",
    read_mode      TEXT NOT NULL DEFAULT 'full',
    read_watermark TEXT COLLATE "C",
    PRIMARY KEY (connection, stream)
);
CREATE TABLE partitions (
    connection   TEXT COLLATE "C" NOT NULL,
    stream       TEXT COLLATE "C" NOT NULL,
    partition    BIGINT NOT NULL,
    cursor       TEXT,
    done         BOOLEAN NOT NULL,
    watermark    TEXT COLLATE "C",
    window_start TEXT COLLATE "C",
    PRIMARY KEY (connection, stream, partition)
);
CREATE TABLE health (
    connection TEXT COLLATE "C" PRIMARY KEY,
    state      TEXT NOT NULL,
    error_kind TEXT,
    message    TEXT,
    since      TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE health_history (
    id         BIGSERIAL PRIMARY KEY,
    connection TEXT COLLATE "C" NOT NULL,
    at         TEXT COLLATE "C" NOT NULL,
    state      TEXT NOT NULL,
    error_kind TEXT,
    message    TEXT
);
CREATE INDEX health_history_by_connection ON health_history (connection, at);
CREATE TABLE runs (
    id          BIGSERIAL PRIMARY KEY,
    connection  TEXT COLLATE "C" NOT NULL,
    started_at  TEXT COLLATE "C" NOT NULL,
    finished_at TEXT COLLATE "C",
    status      TEXT NOT NULL,
    report      TEXT
);
CREATE INDEX runs_by_connection ON runs (connection, id);
"#,
    // Version 2: leases, for workers sharing the partitions of reads. They
    // are columns of the partition's row, so that a claim updates the row it
    // locks: a worker that locks it after another's claim committed sees
    // that claim when PostgreSQL re-checks the row (a lease in a table of
    // its own let two workers take one partition).
    r#"
CREATE SEQUENCE lease_tokens;
ALTER TABLE partitions
    ADD COLUMN lease_holder     TEXT,
    ADD COLUMN lease_token      BIGINT,
    ADD COLUMN lease_expires_at TIMESTAMPTZ,
    ADD COLUMN lease_claimed_at TIMESTAMPTZ;
"#,
    // Version 3: runs a deployment's workers share: the run in progress per
    // connection and when the next is due, the streams each run reads and
    // the report parts its workers record, the partitions a run gave up on,
    // and the rate-limit state the workers serving a connection share.
    r#"
CREATE TABLE deployment_runs (
    connection         TEXT COLLATE "C" PRIMARY KEY,
    run_id             BIGINT,
    started_at         TIMESTAMPTZ,
    next_due_at        TIMESTAMPTZ,
    temporary_failures BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE run_streams (
    run_id       BIGINT NOT NULL,
    stream       TEXT COLLATE "C" NOT NULL,
    mode         TEXT NOT NULL,
    resumed      BOOLEAN NOT NULL,
    aged_out     BIGINT NOT NULL DEFAULT 0,
    not_returned BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, stream)
);
CREATE TABLE run_partitions (
    run_id    BIGINT NOT NULL,
    stream    TEXT COLLATE "C" NOT NULL,
    partition BIGINT NOT NULL,
    token     BIGINT NOT NULL,
    report    TEXT NOT NULL,
    PRIMARY KEY (run_id, stream, partition, token)
);
ALTER TABLE partitions ADD COLUMN failed_run BIGINT;
CREATE TABLE pacing (
    connection TEXT COLLATE "C" PRIMARY KEY,
    state      TEXT NOT NULL
);
"#,
    // Version 4: records keyed by an integer id of their (connection,
    // stream), as in SQLite's version 3, so that the statements both
    // backends share (the nested export's) name the same columns. The
    // records are copied once.
    r#"
CREATE TABLE stream_ids (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection TEXT COLLATE "C" NOT NULL,
    stream     TEXT COLLATE "C" NOT NULL,
    UNIQUE (connection, stream)
);
INSERT INTO stream_ids (connection, stream)
    SELECT DISTINCT connection, stream FROM records ORDER BY connection, stream;
CREATE TABLE records_by_stream_id (
    stream_id       BIGINT NOT NULL,
    key             TEXT COLLATE "C" NOT NULL,
    data            TEXT NOT NULL,
    parent          TEXT COLLATE "C",
    generation      BIGINT NOT NULL,
    first_seen      TEXT COLLATE "C" NOT NULL,
    changed_at      TEXT COLLATE "C" NOT NULL,
    deleted_at      TEXT COLLATE "C",
    deletion_reason TEXT,
    CONSTRAINT records_by_stream_id_pkey PRIMARY KEY (stream_id, key)
);
INSERT INTO records_by_stream_id
    SELECT s.id, r.key, r.data, r.parent, r.generation, r.first_seen, r.changed_at,
           r.deleted_at, r.deletion_reason
    FROM records r JOIN stream_ids s ON s.connection = r.connection AND s.stream = r.stream
    ORDER BY s.id, r.key;
DROP TABLE records;
ALTER TABLE records_by_stream_id RENAME TO records;
ALTER TABLE records RENAME CONSTRAINT records_by_stream_id_pkey TO records_pkey;
"#,
    // Version 5: whether a stream had live records when its read started
    // (NULL: not known), as in SQLite's version 5. A full read that started
    // without any has none left unseen at its end, so its sweep for records
    // not returned, which visits every record of the stream, is skipped.
    "ALTER TABLE streams ADD COLUMN live_at_start BOOLEAN;",
    // Version 6: the deleted records of each stream in an index of their
    // own, as in SQLite's version 6. A stream's records are counted from
    // the primary key, its deleted ones from this index; counting read
    // every record's row before (at 100k devices 187-208 ms, 56 ms this
    // way once autovacuum has marked the pages all-visible).
    "CREATE INDEX records_deleted ON records (stream_id) WHERE deleted_at IS NOT NULL;",
    // Version 7: the runs still `running`, in an index of their own, as in
    // SQLite's version 7: each run's start looks for its connection's runs
    // that never ended, and `runs_by_connection` led it through every run
    // the connection ever had (10,000 runs of 3 KB: 5.9 ms, 0.04 ms this
    // way).
    "CREATE INDEX runs_running ON runs (connection) WHERE status = 'running';",
];

/// The schema version [`migrate`] brings a database to.
pub const LATEST_VERSION: i32 = MIGRATIONS.len() as i32;

/// The advisory lock migrations hold (an arbitrary constant: "cnct").
pub(super) const MIGRATION_LOCK: i64 = 0x636e_6374;

/// Brings the database to [`LATEST_VERSION`], or refuses a newer one.
pub fn migrate(client: &mut Client) -> Result<(), OpenError> {
    migrate_to(client, LATEST_VERSION)
}

/// Brings the database to `target` (at most [`LATEST_VERSION`]), or
/// refuses a newer one than this build knows. Tests stop short of the
/// latest to write data as an earlier release did.
pub(crate) fn migrate_to(client: &mut Client, target: i32) -> Result<(), OpenError> {
    let mut tx = client.transaction()?;
    // A migration copies whole tables and must end, however long it takes
    // (the session's `statement_timeout` is for a sync's statements); the
    // hosts starting beside it wait for it on the advisory lock.
    tx.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS connector_schema (version INTEGER NOT NULL)")?;
    let found: i32 = match tx.query_opt("SELECT version FROM connector_schema", &[])? {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO connector_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    if found > LATEST_VERSION {
        return Err(OpenError::Newer {
            found: found as u32,
            known: LATEST_VERSION as u32,
        });
    }
    let upto = target.clamp(0, LATEST_VERSION) as usize;
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(upto)
        .skip(found as usize)
    {
        tx.batch_execute(sql)?;
        tx.execute(
            "UPDATE connector_schema SET version = $1",
            &[&(i as i32 + 1)],
        )?;
    }
    tx.commit()?;
    Ok(())
}
