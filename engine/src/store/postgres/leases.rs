//! The lease protocol on PostgreSQL ([`crate::store::lease`] says why):
//! claims with `FOR UPDATE SKIP LOCKED`, tokens from a sequence, expiries
//! on the database's clock, the fence checked in a page's transaction.

use super::super::lease::Lease;
use super::super::StoreError;
use postgres::{Client, Transaction};
use std::time::Duration;

/// The lease's interval, for `now() + $n`.
fn seconds(lease: Duration) -> f64 {
    lease.as_secs_f64()
}

/// Takes a partition no live lease holds, for `holder`, for `lease`.
pub(super) fn claim(
    client: &mut Client,
    holder: &str,
    lease: Duration,
) -> Result<Option<Lease>, StoreError> {
    let mut tx = client.transaction()?;
    let candidate = tx.query_opt(
        "SELECT p.connection, p.stream, p.partition, s.generation, p.cursor
         FROM partitions p
         JOIN streams s ON s.connection = p.connection AND s.stream = p.stream
         LEFT JOIN leases l ON l.connection = p.connection AND l.stream = p.stream
                           AND l.partition = p.partition
         WHERE NOT p.done AND NOT s.complete AND (l.token IS NULL OR l.expires_at <= now())
         ORDER BY p.connection, p.stream, p.partition
         LIMIT 1
         FOR UPDATE OF p SKIP LOCKED",
        &[],
    )?;
    let Some(row) = candidate else {
        return Ok(None);
    };
    let (connection, stream, partition): (String, String, i64) =
        (row.get(0), row.get(1), row.get(2));
    let token: i64 = tx
        .query_one(
            "INSERT INTO leases (connection, stream, partition, holder, token, expires_at)
             VALUES ($1, $2, $3, $4, nextval('lease_tokens'), now() + make_interval(secs => $5))
             ON CONFLICT (connection, stream, partition) DO UPDATE SET
                holder = excluded.holder, token = excluded.token, expires_at = excluded.expires_at
             RETURNING token",
            &[&connection, &stream, &partition, &holder, &seconds(lease)],
        )?
        .get(0);
    tx.commit()?;
    Ok(Some(Lease {
        connection,
        stream,
        partition: partition as u32,
        holder: holder.to_string(),
        token,
        generation: row.get(3),
        cursor: row.get(4),
    }))
}

/// Extends `held` by `lease` from now; `false` when it was lost.
pub(super) fn renew(
    client: &mut Client,
    held: &Lease,
    lease: Duration,
) -> Result<bool, StoreError> {
    let renewed = client.execute(
        "UPDATE leases SET expires_at = now() + make_interval(secs => $5)
         WHERE connection = $1 AND stream = $2 AND partition = $3 AND token = $4 AND expires_at > now()",
        &[
            &held.connection,
            &held.stream,
            &i64::from(held.partition),
            &held.token,
            &seconds(lease),
        ],
    )?;
    Ok(renewed == 1)
}

/// Gives `held` up (its partition is done, or its worker stops).
pub(super) fn release(client: &mut Client, held: &Lease) -> Result<(), StoreError> {
    client.execute(
        "DELETE FROM leases WHERE connection = $1 AND stream = $2 AND partition = $3 AND token = $4",
        &[&held.connection, &held.stream, &i64::from(held.partition), &held.token],
    )?;
    Ok(())
}

/// In a page's transaction: locks `held`'s row and checks it still carries
/// its token, unexpired; [`StoreError::Fenced`] otherwise.
pub(super) fn fence(tx: &mut Transaction<'_>, held: &Lease) -> Result<(), StoreError> {
    let current = tx.query_opt(
        "SELECT 1 FROM leases
         WHERE connection = $1 AND stream = $2 AND partition = $3 AND token = $4 AND expires_at > now()
         FOR UPDATE",
        &[&held.connection, &held.stream, &i64::from(held.partition), &held.token],
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
