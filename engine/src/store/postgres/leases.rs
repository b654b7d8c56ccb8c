//! The lease protocol on PostgreSQL ([`crate::store::lease`] says why):
//! a lease is three columns of its partition's row (holder, token,
//! expiry), claimed with `FOR UPDATE SKIP LOCKED` and an `UPDATE` of that
//! row, tokens from a sequence, expiries on the database's clock, the fence
//! checked in a page's transaction.
//!
//! Because the claim updates the very row it locked, a second worker that
//! reaches the row after the first claim committed has the row re-checked
//! against its new version by PostgreSQL (read committed), sees a live
//! lease, and passes on: two workers never hold one partition.

use super::super::lease::{HeldLease, Lease};
use super::super::{ReadMode, StoreError};
use postgres::{Client, Transaction};
use std::time::Duration;

/// Takes, for `holder` and for `lease`, a partition of a run in progress
/// of one of `connections` that no live lease holds and that did not fail
/// in the run.
pub(super) fn claim(
    client: &mut Client,
    holder: &str,
    lease: Duration,
    connections: &[String],
) -> Result<Option<Lease>, StoreError> {
    let row = client.query_opt(
        "UPDATE partitions p
         SET lease_holder = $1, lease_token = nextval('lease_tokens'), lease_claimed_at = now(),
             lease_expires_at = now() + make_interval(secs => $2)
         FROM streams s, deployment_runs d
         WHERE s.connection = p.connection AND s.stream = p.stream AND d.connection = p.connection
           AND (p.connection, p.stream, p.partition) = (
             SELECT c.connection, c.stream, c.partition
             FROM partitions c
             JOIN streams cs ON cs.connection = c.connection AND cs.stream = c.stream
             JOIN deployment_runs cd ON cd.connection = c.connection
             JOIN run_streams rs ON rs.run_id = cd.run_id AND rs.stream = c.stream
             WHERE c.connection = ANY($3) AND NOT c.done AND NOT cs.complete
               AND c.failed_run IS DISTINCT FROM cd.run_id
               AND (c.lease_token IS NULL OR c.lease_expires_at <= now())
             ORDER BY c.connection, c.stream, c.partition
             LIMIT 1
             FOR UPDATE OF c SKIP LOCKED)
         RETURNING p.connection, p.stream, p.partition, p.lease_token, s.generation, p.cursor,
                   d.run_id, s.read_mode, s.read_watermark, s.partitions, s.watermark",
        &[&holder, &lease.as_secs_f64(), &connections],
    )?;
    Ok(row.map(|r| Lease {
        connection: r.get(0),
        stream: r.get(1),
        partition: r.get::<_, i64>(2) as u32,
        holder: holder.to_string(),
        token: r.get(3),
        generation: r.get(4),
        cursor: r.get(5),
        run: r.get(6),
        mode: match (
            r.get::<_, String>(7).as_str(),
            r.get::<_, Option<String>>(8),
        ) {
            ("incremental", Some(watermark)) => ReadMode::Incremental { watermark },
            _ => ReadMode::Full,
        },
        partitions: r.get::<_, i64>(9).clamp(0, i64::from(u32::MAX)) as u32,
        deletions_since: r.get(10),
        length: lease,
    }))
}

/// Extends `held` by `lease` from now; `false` when it was lost.
pub(super) fn renew(
    client: &mut Client,
    held: &Lease,
    lease: Duration,
) -> Result<bool, StoreError> {
    let renewed = client.execute(
        "UPDATE partitions SET lease_expires_at = now() + make_interval(secs => $5)
         WHERE connection = $1 AND stream = $2 AND partition = $3
           AND lease_token = $4 AND lease_expires_at > now()",
        &[
            &held.connection,
            &held.stream,
            &i64::from(held.partition),
            &held.token,
            &lease.as_secs_f64(),
        ],
    )?;
    Ok(renewed == 1)
}

/// Gives `held` up (its partition is done, or its worker stops).
pub(super) fn release(client: &mut Client, held: &Lease) -> Result<(), StoreError> {
    client.execute(
        "UPDATE partitions
         SET lease_holder = NULL, lease_token = NULL, lease_expires_at = NULL, lease_claimed_at = NULL
         WHERE connection = $1 AND stream = $2 AND partition = $3 AND lease_token = $4",
        &[
            &held.connection,
            &held.stream,
            &i64::from(held.partition),
            &held.token,
        ],
    )?;
    Ok(())
}

/// The live leases on `connection`'s partitions, by stream and partition.
pub(super) fn held(client: &mut Client, connection: &str) -> Result<Vec<HeldLease>, StoreError> {
    let rows = client.query(
        "SELECT stream, partition, lease_holder,
                to_char(lease_claimed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                to_char(lease_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
         FROM partitions
         WHERE connection = $1 AND lease_token IS NOT NULL AND lease_expires_at > now()
         ORDER BY stream, partition",
        &[&connection],
    )?;
    Ok(rows
        .iter()
        .map(|r| HeldLease {
            stream: r.get(0),
            partition: r.get::<_, i64>(1) as u32,
            holder: r.get(2),
            since: r.get(3),
            until: r.get(4),
        })
        .collect())
}

/// In a page's transaction: locks `held`'s partition row and checks it
/// still carries its token, unexpired; [`StoreError::Fenced`] otherwise.
///
/// The same statement bounds how long the rest of the transaction may sit
/// idle: the lease's length, unless the session has a bound already. A
/// worker frozen between two of the transaction's statements (a paused VM)
/// would otherwise keep the row locked until it woke, and no claim takes a
/// locked row (`SKIP LOCKED`): its partition, and the run, would wait for
/// it. Idle that long, its lease has expired; the server ends the session,
/// the transaction is rolled back, and another worker claims the partition.
pub(super) fn fence(tx: &mut Transaction<'_>, held: &Lease) -> Result<(), StoreError> {
    let idle_ms = held
        .length
        .as_millis()
        .clamp(1, i32::MAX as u128)
        .to_string();
    let current = tx.query_opt(
        "SELECT set_config('idle_in_transaction_session_timeout',
                           CASE current_setting('idle_in_transaction_session_timeout')
                               WHEN '0' THEN $5
                               ELSE current_setting('idle_in_transaction_session_timeout')
                           END,
                           true)
         FROM partitions
         WHERE connection = $1 AND stream = $2 AND partition = $3
           AND lease_token = $4 AND lease_expires_at > now()
         FOR UPDATE",
        &[
            &held.connection,
            &held.stream,
            &i64::from(held.partition),
            &held.token,
            &idle_ms,
        ],
    )?;
    match current {
        Some(_) => Ok(()),
        None => Err(StoreError::Fenced {
            connection: held.connection.clone(),
            stream: held.stream.clone(),
            partition: held.partition,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::deployment::RunStream;
    use crate::store::testing::{idle_bound, postgres, TestStore};
    use crate::store::StreamRequest;

    /// A deadline for a test's wait, not a measurement.
    const DEADLINE: Duration = Duration::from_secs(60);

    /// The one partition of a run of connection `c`, claimed for `length`.
    fn claimed(db: &mut TestStore, length: Duration) -> Lease {
        let stream = [RunStream {
            name: "s".into(),
            request: StreamRequest {
                partitions: 1,
                incremental_partitions: 1,
                force_full: false,
                supports_incremental: true,
            },
        }];
        db.store.start_due_run("c", &stream).unwrap().unwrap();
        db.store
            .claim_partition("frozen", length, &["c".to_string()])
            .unwrap()
            .expect("the run's partition")
    }

    #[test]
    #[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
    fn a_page_transaction_left_idle_past_the_lease_is_ended_and_its_partition_claimed_again() {
        let mut db = postgres();
        let lease = claimed(&mut db, Duration::from_secs(1));
        let mut worker = db.target().connect().unwrap();
        let pid: i32 = worker
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        let mut tx = worker.transaction().unwrap();
        fence(&mut tx, &lease).unwrap();
        assert_eq!(idle_bound(&mut tx), "1s", "the lease's length");
        // The worker freezes here, inside the page's transaction, holding
        // the partition's row.
        db.wait_until_session_ended(
            pid,
            DEADLINE,
            "the session idle inside its page's transaction was not ended: it keeps the partition locked",
        );
        let next = db
            .store
            .claim_partition("next", Duration::from_secs(30), &["c".to_string()])
            .unwrap();
        assert_eq!(
            next.map(|l| (l.partition, l.cursor)),
            Some((lease.partition, None)),
            "the partition is claimed again from its last committed cursor"
        );
        // The worker wakes to a session that is gone (how the client says
        // so depends on when it reads the server's goodbye).
        assert!(
            tx.commit().is_err(),
            "the frozen worker's page was committed after its session was ended"
        );
    }

    #[test]
    #[ignore = "needs the PostgreSQL cluster tests/run-all.sh starts"]
    fn a_session_that_bounds_idle_transactions_keeps_its_bound() {
        let mut db = postgres();
        let lease = claimed(&mut db, Duration::from_secs(30));
        let mut worker = db.target().connect().unwrap();
        worker
            .batch_execute("SET idle_in_transaction_session_timeout = '1h'")
            .unwrap();
        let mut tx = worker.transaction().unwrap();
        fence(&mut tx, &lease).unwrap();
        assert_eq!(idle_bound(&mut tx), "1h");
        tx.rollback().unwrap();
    }
}
