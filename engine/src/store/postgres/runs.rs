//! Deployment runs on PostgreSQL ([`crate::store::deployment`] says how a
//! run goes): each step one transaction under the lock of the row it
//! decides on.

use super::super::deployment::{
    PartitionEnd, PartitionParts, RunEnd, RunParts, RunStream, StreamParts,
};
use super::super::lease::Lease;
use super::super::{now_rfc3339, plan, ReadMode, StoreError};
use super::{finish_stream_in, leases, set_health_in, ReadToFinish};
use postgres::{Client, Transaction};

/// Starts a run of `connection` reading `streams` if none is in progress
/// and the next is due; returns its id.
pub(super) fn start_due(
    client: &mut Client,
    connection: &str,
    streams: &[RunStream],
) -> Result<Option<i64>, StoreError> {
    // Most calls find a run in progress or none due: a read, no lock.
    let busy: Option<bool> = client
        .query_opt(
            "SELECT run_id IS NOT NULL OR COALESCE(next_due_at > now(), FALSE)
             FROM deployment_runs WHERE connection = $1",
            &[&connection],
        )?
        .map(|r| r.get(0));
    if busy == Some(true) {
        return Ok(None);
    }
    let mut tx = bounded_transaction(client)?;
    tx.execute(
        "INSERT INTO deployment_runs (connection) VALUES ($1) ON CONFLICT (connection) DO NOTHING",
        &[&connection],
    )?;
    let due: bool = tx
        .query_one(
            "SELECT run_id IS NULL AND (next_due_at IS NULL OR next_due_at <= now())
             FROM deployment_runs WHERE connection = $1 FOR UPDATE",
            &[&connection],
        )?
        .get(0);
    if !due {
        return Ok(None);
    }
    let run: i64 = tx
        .query_one(
            "INSERT INTO runs (connection, started_at, status) VALUES ($1, $2, 'running') RETURNING id",
            &[&connection, &now_rfc3339()],
        )?
        .get(0);
    for stream in streams {
        let plan = plan::plan(&mut tx, connection, &stream.name, &stream.request)?;
        tx.execute(
            "INSERT INTO run_streams (run_id, stream, mode, resumed) VALUES ($1, $2, $3, $4)",
            &[&run, &stream.name, &plan.mode.name(), &plan.resumed],
        )?;
    }
    tx.execute(
        "UPDATE deployment_runs SET run_id = $2, started_at = now() WHERE connection = $1",
        &[&connection, &run],
    )?;
    // No request of this connection is in flight while no run was: counts
    // left by a killed worker go.
    tx.execute(
        "UPDATE pacing SET state = jsonb_set(state::jsonb, '{in_flight}', '0', false)::text
         WHERE connection = $1",
        &[&connection],
    )?;
    tx.commit()?;
    Ok(Some(run))
}

/// Records the report of `held`'s read and gives the lease up, under the
/// fence; a failed read is not taken again in this run.
pub(super) fn end_partition(
    client: &mut Client,
    held: &Lease,
    report: &str,
    end: PartitionEnd,
) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    leases::fence(&mut tx, held)?;
    let partition = i64::from(held.partition);
    record_part(&mut tx, held, report)?;
    let failed_run = (end == PartitionEnd::Failed).then_some(held.run);
    tx.execute(
        "UPDATE partitions
         SET lease_holder = NULL, lease_token = NULL, lease_expires_at = NULL, lease_claimed_at = NULL,
             failed_run = COALESCE($5, failed_run)
         WHERE connection = $1 AND stream = $2 AND partition = $3 AND lease_token = $4",
        &[
            &held.connection,
            &held.stream,
            &partition,
            &held.token,
            &failed_run,
        ],
    )?;
    tx.commit()?;
    Ok(())
}

/// Records `report` as `held`'s part of its run's report, in place of
/// the part it recorded with its last page.
pub(super) fn record_part(
    tx: &mut Transaction<'_>,
    held: &Lease,
    report: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO run_partitions (run_id, stream, partition, token, report)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (run_id, stream, partition, token) DO UPDATE SET report = excluded.report",
        &[
            &held.run,
            &held.stream,
            &i64::from(held.partition),
            &held.token,
            &report,
        ],
    )?;
    Ok(())
}

/// Finishes the stream `held` read a partition of, if every partition is
/// done and nobody finished it yet.
pub(super) fn finish_stream(
    client: &mut Client,
    held: &Lease,
    updated_field: Option<&str>,
) -> Result<(), StoreError> {
    let mut tx = bounded_transaction(client)?;
    finish_run_stream(&mut tx, held.run, &read_of(held, updated_field))?;
    tx.commit()?;
    Ok(())
}

fn read_of<'a>(held: &'a Lease, updated_field: Option<&'a str>) -> ReadToFinish<'a> {
    ReadToFinish {
        connection: &held.connection,
        stream: &held.stream,
        generation: held.generation,
        mode: &held.mode,
        updated_field,
    }
}

/// [`finish_stream_in`], with what it marked kept for the run's report.
fn finish_run_stream(
    tx: &mut Transaction<'_>,
    run: i64,
    read: &ReadToFinish<'_>,
) -> Result<(), StoreError> {
    if let Some(finished) = finish_stream_in(tx, read)? {
        tx.execute(
            "UPDATE run_streams SET aged_out = $3, not_returned = $4 WHERE run_id = $1 AND stream = $2",
            &[
                &run,
                &read.stream,
                &(finished.aged_out as i64),
                &(finished.not_returned as i64),
            ],
        )?;
    }
    Ok(())
}

/// The connections among `connections` with a run in progress.
pub(super) fn in_progress(
    client: &mut Client,
    connections: &[String],
) -> Result<Vec<String>, StoreError> {
    let rows = client.query(
        "SELECT connection FROM deployment_runs WHERE connection = ANY($1) AND run_id IS NOT NULL
         ORDER BY connection",
        &[&connections],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The run in progress of a connection, as its row says.
struct RunInProgress {
    id: i64,
    seconds: f64,
    temporary_failures: u32,
}

/// Ends `connection`'s run once no partition is left to read: finishes the
/// streams left to finish (`updated_fields` names each stream's field of
/// last change), has `end` make the report from the parts, and stores it
/// with the health and when the next run is due. `None` while the run
/// goes on (or when none is in progress).
pub(super) fn finish_run_if_over(
    client: &mut Client,
    connection: &str,
    updated_fields: &[(String, Option<String>)],
    end: &mut dyn FnMut(&RunParts) -> RunEnd,
) -> Result<Option<RunEnd>, StoreError> {
    // Most calls find the run going on: reads, no lock.
    let running: Option<i64> = client
        .query_opt(
            "SELECT run_id FROM deployment_runs WHERE connection = $1 AND run_id IS NOT NULL",
            &[&connection],
        )?
        .map(|r| r.get(0));
    match running {
        Some(run) if partitions_left(client, connection, run)? == 0 => {}
        _ => return Ok(None),
    }
    let mut tx = bounded_transaction(client)?;
    let Some(run) = run_in_progress(&mut tx, connection)? else {
        return Ok(None);
    };
    if partitions_left(&mut tx, connection, run.id)? > 0 {
        return Ok(None);
    }
    finish_left_streams(&mut tx, connection, run.id, updated_fields)?;
    let parts = RunParts {
        run_id: run.id,
        seconds: run.seconds,
        temporary_failures: run.temporary_failures,
        streams: stream_parts(&mut tx, connection, run.id)?,
    };
    let ended = end(&parts);
    tx.execute(
        "UPDATE runs SET finished_at = $2, status = $3, report = $4 WHERE id = $1",
        &[&run.id, &now_rfc3339(), &ended.status, &ended.report],
    )?;
    set_health_in(&mut tx, connection, &ended.health)?;
    tx.execute(
        "UPDATE deployment_runs
         SET run_id = NULL, next_due_at = now() + make_interval(secs => $2),
             temporary_failures = CASE WHEN $3 THEN temporary_failures + 1 ELSE 0 END
         WHERE connection = $1",
        &[
            &connection,
            &ended.next_run_in.as_secs_f64(),
            &ended.temporary_failure,
        ],
    )?;
    tx.commit()?;
    Ok(Some(ended))
}

/// Partitions of `run` still to read: not done, and not failed in it.
fn partitions_left(
    client: &mut impl postgres::GenericClient,
    connection: &str,
    run: i64,
) -> Result<i64, StoreError> {
    Ok(client
        .query_one(
            "SELECT COUNT(*) FROM partitions c
             JOIN streams cs ON cs.connection = c.connection AND cs.stream = c.stream
             JOIN run_streams rs ON rs.run_id = $2 AND rs.stream = c.stream
             WHERE c.connection = $1 AND NOT c.done AND NOT cs.complete
               AND c.failed_run IS DISTINCT FROM $2",
            &[&connection, &run],
        )?
        .get(0))
}

/// The connection's run in progress, its row locked.
fn run_in_progress(
    tx: &mut Transaction<'_>,
    connection: &str,
) -> Result<Option<RunInProgress>, StoreError> {
    let row = tx.query_opt(
        "SELECT run_id, EXTRACT(EPOCH FROM now() - started_at)::float8, temporary_failures
         FROM deployment_runs WHERE connection = $1 AND run_id IS NOT NULL FOR UPDATE",
        &[&connection],
    )?;
    Ok(row.map(|r| RunInProgress {
        id: r.get(0),
        seconds: r.get::<_, Option<f64>>(1).unwrap_or_default(),
        temporary_failures: r.get::<_, i64>(2).clamp(0, i64::from(u32::MAX)) as u32,
    }))
}

/// Finishes the run's streams whose partitions are all done and that no
/// worker finished (the one that would have was stopped first).
fn finish_left_streams(
    tx: &mut Transaction<'_>,
    connection: &str,
    run: i64,
    updated_fields: &[(String, Option<String>)],
) -> Result<(), StoreError> {
    let rows = tx.query(
        "SELECT rs.stream, s.generation, s.read_mode FROM run_streams rs
         JOIN streams s ON s.connection = $1 AND s.stream = rs.stream
         WHERE rs.run_id = $2 AND NOT s.complete ORDER BY rs.stream",
        &[&connection, &run],
    )?;
    for row in rows {
        let stream: String = row.get(0);
        let mode = match row.get::<_, String>(2).as_str() {
            "incremental" => ReadMode::Incremental {
                watermark: String::new(),
            },
            _ => ReadMode::Full,
        };
        let updated_field = updated_fields
            .iter()
            .find(|(name, _)| *name == stream)
            .and_then(|(_, field)| field.as_deref());
        let read = ReadToFinish {
            connection,
            stream: &stream,
            generation: row.get(1),
            mode: &mode,
            updated_field,
        };
        finish_run_stream(tx, run, &read)?;
    }
    Ok(())
}

/// The run's streams with their partitions and the reports recorded.
fn stream_parts(
    tx: &mut Transaction<'_>,
    connection: &str,
    run: i64,
) -> Result<Vec<StreamParts>, StoreError> {
    let mut streams: Vec<StreamParts> = tx
        .query(
            "SELECT rs.stream, rs.mode, rs.resumed, COALESCE(s.complete, FALSE), rs.aged_out, rs.not_returned
             FROM run_streams rs LEFT JOIN streams s ON s.connection = $1 AND s.stream = rs.stream
             WHERE rs.run_id = $2 ORDER BY rs.stream",
            &[&connection, &run],
        )?
        .iter()
        .map(|r| StreamParts {
            name: r.get(0),
            mode: r.get(1),
            resumed: r.get(2),
            complete: r.get(3),
            aged_out: r.get::<_, i64>(4).max(0) as u64,
            not_returned: r.get::<_, i64>(5).max(0) as u64,
            partitions: Vec::new(),
        })
        .collect();
    for stream in &mut streams {
        stream.partitions = tx
            .query(
                "SELECT p.partition, p.done,
                        COALESCE(array_agg(rp.report ORDER BY rp.token) FILTER (WHERE rp.report IS NOT NULL), '{}')
                 FROM partitions p
                 LEFT JOIN run_partitions rp
                   ON rp.run_id = $3 AND rp.stream = p.stream AND rp.partition = p.partition
                 WHERE p.connection = $1 AND p.stream = $2
                 GROUP BY p.partition, p.done ORDER BY p.partition",
                &[&connection, &stream.name, &run],
            )?
            .iter()
            .map(|r| PartitionParts {
                index: r.get::<_, i64>(0).clamp(0, i64::from(u32::MAX)) as u32,
                done: r.get(1),
                reports: r.get(2),
            })
            .collect();
    }
    Ok(streams)
}

/// How long a deployment's transaction may sit idle, unless the session
/// has a bound already. Each locks a row every worker serving the
/// connection waits for: its `deployment_runs` row (a run's start and
/// end), its `streams` row (a stream's finish), its `pacing` row (before
/// and after each request). Between their statements the host only
/// computes; a transaction idle this long belongs to a frozen host (a
/// paused VM, SIGSTOP), which would hold that row, and the other workers
/// with it, until it woke. The server ends the session instead, and the
/// row is free. (A page's transaction is bounded by its lease instead,
/// [`leases::fence`].)
const IDLE_BOUND: std::time::Duration = std::time::Duration::from_secs(10);

/// The statement that bounds the current transaction's idle time by
/// [`IDLE_BOUND`], unless the session has a bound already.
fn bound_idle_sql() -> String {
    format!(
        "SELECT set_config('idle_in_transaction_session_timeout', '{}', true)
         WHERE current_setting('idle_in_transaction_session_timeout') = '0'",
        IDLE_BOUND.as_millis()
    )
}

/// A transaction of the deployment's steps, its idle time bounded by
/// [`IDLE_BOUND`].
fn bounded_transaction(client: &mut Client) -> Result<Transaction<'_>, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.batch_execute(&bound_idle_sql())?;
    Ok(tx)
}

/// Runs `update` on `connection`'s shared pacing state (`{}` at first)
/// under its row's lock, with the database's clock in Unix milliseconds;
/// stores what it returns.
pub(super) fn update_pacing(
    client: &mut Client,
    connection: &str,
    update: &mut dyn FnMut(&str, u64) -> String,
) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    // Two transactions per request: not worth a wait for the disk. A state
    // lost in a crash of the server only forgets some recent requests, and
    // the server's own headers and 429s correct that.
    tx.batch_execute(&format!(
        "SET LOCAL synchronous_commit = off; {}",
        bound_idle_sql()
    ))?;
    tx.execute(
        "INSERT INTO pacing (connection, state) VALUES ($1, '{}') ON CONFLICT (connection) DO NOTHING",
        &[&connection],
    )?;
    let row = tx.query_one(
        "SELECT state, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint
         FROM pacing WHERE connection = $1 FOR UPDATE",
        &[&connection],
    )?;
    let (state, now): (String, i64) = (row.get(0), row.get(1));
    let next = update(&state, now.max(0) as u64);
    tx.execute(
        "UPDATE pacing SET state = $2 WHERE connection = $1",
        &[&connection, &next],
    )?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{idle_bound, postgres};
    use std::sync::mpsc::channel;
    use std::time::Duration;

    /// A deadline for a test's wait, not a measurement.
    const DEADLINE: Duration = Duration::from_secs(60);

    #[test]
    #[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
    fn a_deployment_step_bounds_its_idle_time_unless_the_session_has_a_bound() {
        let db = postgres();
        let mut host = db.target().connect().unwrap();
        let mut tx = bounded_transaction(&mut host).unwrap();
        assert_eq!(idle_bound(&mut tx), "10s");
        tx.rollback().unwrap();
        // For the transaction only.
        assert_eq!(idle_bound(&mut host), "0");
        host.batch_execute("SET idle_in_transaction_session_timeout = '1h'")
            .unwrap();
        let mut tx = bounded_transaction(&mut host).unwrap();
        assert_eq!(idle_bound(&mut tx), "1h");
    }

    #[test]
    #[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
    fn a_host_frozen_inside_the_pacing_update_holds_the_row_only_until_the_idle_bound() {
        let db = postgres();
        let mut frozen = db.target().connect().unwrap();
        let pid: i32 = frozen
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        let (inside, is_inside) = channel();
        let (wake, woken) = channel::<()>();
        // The host freezes inside `update`, between the row's lock and the
        // transaction's end.
        let host = std::thread::spawn(move || {
            update_pacing(&mut frozen, "c", &mut |_, _| {
                inside.send(()).unwrap();
                woken.recv().unwrap();
                r#"{"frozen":true}"#.to_string()
            })
        });
        is_inside.recv().unwrap();
        db.wait_until_session_ended(
            pid,
            DEADLINE,
            "the session idle inside the pacing update was not ended: it keeps the connection's pacing row locked",
        );
        // Another worker's update goes through.
        let mut other = db.target().connect().unwrap();
        update_pacing(&mut other, "c", &mut |_, _| r#"{"other":true}"#.to_string()).unwrap();
        // The frozen host wakes to a session that is gone; its state is not written.
        wake.send(()).unwrap();
        assert!(host.join().unwrap().is_err());
        let state: String = other
            .query_one("SELECT state FROM pacing WHERE connection = 'c'", &[])
            .unwrap()
            .get(0);
        assert_eq!(state, r#"{"other":true}"#);
    }
}
