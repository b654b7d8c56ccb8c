//! Leases: how workers sharing a PostgreSQL store share the partitions of
//! the streams being read, and why a worker that lost its partition can
//! never write to it.
//!
//! - **Claim.** A worker takes one partition that is not done, of a stream
//!   whose read is not complete, and that no live lease holds: the
//!   partition's row is locked with `FOR UPDATE SKIP LOCKED` (neither
//!   worker waits for the other) and updated in the same statement with a
//!   new **token** from a sequence and an expiry on the database's clock.
//!   The lease lives in the partition's row, so a worker that locks the row
//!   after another's claim committed has it re-checked against the claimed
//!   version and passes on: two workers never take the same partition.
//! - **Heartbeat.** The holder renews the lease before it expires; a renewal
//!   succeeds only with the current token, before expiry.
//! - **Fence.** Every page is committed with the lease: in the page's own
//!   transaction the lease row is locked and must still carry the token and
//!   be unexpired, or nothing of the page is written
//!   ([`StoreError::Fenced`](super::StoreError::Fenced)). A worker paused
//!   past its lease (or cut off from the database) has lost it: its token
//!   was replaced by the next claim, or its expiry passed. A worker paused
//!   *inside* that transaction (a frozen VM) would keep the row locked, and
//!   no claim takes a locked row: so the transaction may sit idle for at
//!   most the lease's length, after which the server ends its session and
//!   the lock goes with it (unless the server, role or database bounds idle
//!   transactions already).
//! - **Expiry.** A killed worker's leases expire; another worker claims the
//!   partition and resumes from its last committed cursor: nothing lost
//!   (the cursor moves only with its page), nothing doubled (records are
//!   upserted by key).
//!
//! - **Runs.** A partition is claimable only while its connection has a
//!   deployment run in progress ([`super::deployment`]) and the stream is
//!   part of that run; a partition whose read failed in the run is not
//!   taken again in it (the next run resumes it).
//!
//! Leases need PostgreSQL; a SQLite store has one writer and none.

/// A live lease as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    /// The stream.
    pub stream: String,
    /// The partition.
    pub partition: u32,
    /// The worker holding it.
    pub holder: String,
    /// When it was claimed (RFC 3339, the database's clock).
    pub since: String,
    /// When it expires unless renewed.
    pub until: String,
}

/// A worker's hold on one partition of a stream's current read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The connection.
    pub connection: String,
    /// The stream.
    pub stream: String,
    /// The partition.
    pub partition: u32,
    /// Who holds it (a worker's name).
    pub holder: String,
    /// The fencing token: each claim of the partition gets a greater one.
    pub token: i64,
    /// The read's generation, for the pages committed under the lease.
    pub generation: i64,
    /// Where the partition's read stands: the cursor to continue from.
    pub cursor: Option<String>,
    /// The deployment's run the read belongs to.
    pub run: i64,
    /// How the stream is being read.
    pub mode: super::ReadMode,
    /// Partitions of the stream's read.
    pub partitions: u32,
    /// The last complete read's watermark (deletions are reported since).
    pub deletions_since: Option<String>,
    /// How long the lease lasts from its claim or its last renewal.
    pub length: std::time::Duration,
}

/// A page committed under a lease, with the holder's part of the run's
/// report as it stands once the page is written: recorded in the page's
/// transaction, so that a worker killed or cut off after the page leaves
/// its counts behind for the run's report, exact to the last page written.
pub struct FencedPage<'a> {
    /// The lease the page is committed under.
    pub lease: &'a Lease,
    /// The holder's report part, given how many records the page's
    /// tombstones newly marked deleted (known only in the transaction).
    pub report: &'a dyn Fn(u64) -> String,
}
