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
pub(super) fn fence(tx: &mut Transaction<'_>, held: &Lease) -> Result<(), StoreError> {
    let current = tx.query_opt(
        "SELECT 1 FROM partitions
         WHERE connection = $1 AND stream = $2 AND partition = $3
           AND lease_token = $4 AND lease_expires_at > now()
         FOR UPDATE",
        &[
            &held.connection,
            &held.stream,
            &i64::from(held.partition),
            &held.token,
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
