//! Runs a deployment's workers share (PostgreSQL): one run at a time per
//! connection, whoever starts it, and its report assembled from what each
//! worker recorded.
//!
//! - **Start.** A worker that finds a connection due locks the connection's
//!   row in `deployment_runs`, and if no run is in progress and the next
//!   run is due (on the database's clock), in the same transaction records
//!   the run, plans every stream (resume, incremental or full, as `sync`
//!   does) and lists them in `run_streams`. Two workers finding it due at
//!   once start one run.
//! - **Read.** The run's partitions are claimed under leases
//!   ([`super::lease`]), read and committed page by page under the fence.
//! - **End of a partition.** Its worker records its report in
//!   `run_partitions` (in place of the part its last page recorded) and
//!   gives the lease up, in one transaction under the
//!   fence; a partition whose read failed is marked so that no worker takes
//!   it again in this run. The worker that completes a stream's last
//!   partition finishes the stream (watermark, records aged out or no longer
//!   returned), under the stream row's lock, once.
//! - **End of the run.** Once no partition of the run is left to read
//!   (each done or failed in it), whichever worker notices finishes what
//!   streams are left to finish, assembles the run's report from the
//!   recorded parts, stores it with the connection's health, and sets when
//!   the next run is due: all in one transaction under the connection row's
//!   lock, so it happens once.
//! - **A killed worker** leaves a lease that expires; the partition is
//!   claimed again and resumed from its last committed cursor. Its report
//!   part is the one it recorded with its last page (every page under a
//!   lease records the holder's part in its transaction,
//!   [`super::lease::FencedPage`]), so the run's counters hold its pages
//!   exactly, and its requests up to its last page.

use super::lease::Lease;
use super::{Health, Store, StoreError, StreamRequest};
use std::time::Duration;

/// A stream a run reads, and how it asks to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStream {
    /// The stream.
    pub name: String,
    /// What the run asks of it.
    pub request: StreamRequest,
}

/// How a worker ends its hold on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionEnd {
    /// Its last page was committed.
    Complete,
    /// Its read failed (an error the engine does not retry): no worker takes
    /// it again in this run.
    Failed,
    /// The worker stopped (a signal) after a committed page: another worker
    /// may take it over at once.
    Released,
}

/// What the store knows of a run once no partition is left to read: the
/// parts its workers recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RunParts {
    /// The run.
    pub run_id: i64,
    /// Seconds since it started (the database's clock).
    pub seconds: f64,
    /// Runs in a row, before this one, that ended in a temporary failure.
    pub temporary_failures: u32,
    /// Its streams, by name.
    pub streams: Vec<StreamParts>,
}

/// One stream of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamParts {
    /// The stream.
    pub name: String,
    /// `full` or `incremental`.
    pub mode: String,
    /// Whether the run resumed an interrupted read.
    pub resumed: bool,
    /// Whether the read completed (the stream was finished).
    pub complete: bool,
    /// Records its finishing marked aged out.
    pub aged_out: u64,
    /// Records its finishing marked no longer returned.
    pub not_returned: u64,
    /// Its partitions, by index.
    pub partitions: Vec<PartitionParts>,
}

/// One partition of a run's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionParts {
    /// The partition.
    pub index: u32,
    /// Whether its read is done.
    pub done: bool,
    /// The reports its workers recorded in this run (JSON), oldest first;
    /// none when an earlier run finished it (or its worker was killed).
    pub reports: Vec<String>,
}

/// What ends a run: its report and status, the connection's health, and
/// when the next run is due.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    /// `complete` or `incomplete`.
    pub status: String,
    /// The run report (JSON).
    pub report: String,
    /// The connection's health it shows.
    pub health: Health,
    /// Whether it ended in a failure that passes by itself.
    pub temporary_failure: bool,
    /// Time from now until the next run is due.
    pub next_run_in: Duration,
}

impl Store {
    /// Starts a run of `connection` reading `streams`, planned as `sync`
    /// plans them, if no run of it is in progress and the next is due;
    /// returns the run's id. PostgreSQL only.
    pub fn start_due_run(
        &mut self,
        connection: &str,
        streams: &[RunStream],
    ) -> Result<Option<i64>, StoreError> {
        self.with(|b| b.start_due_run(connection, streams))
    }

    /// Records the report (JSON) of the read under `held` and gives the
    /// lease up, under the fence ([`StoreError::Fenced`] when it was lost,
    /// and nothing recorded).
    pub fn end_partition(
        &mut self,
        held: &Lease,
        report: &str,
        end: PartitionEnd,
    ) -> Result<(), StoreError> {
        self.with(|b| b.end_partition(held, report, end))
    }

    /// Finishes the stream of `held`'s partition if all its partitions are
    /// done and nobody finished it yet ([`Store::finish_stream`]).
    pub fn finish_run_stream(
        &mut self,
        held: &Lease,
        updated_field: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|b| b.finish_run_stream(held, updated_field))
    }

    /// Which of `connections` have a run in progress.
    pub fn runs_in_progress(&self, connections: &[String]) -> Result<Vec<String>, StoreError> {
        self.with(|b| b.runs_in_progress(connections))
    }

    /// Ends `connection`'s run if no partition is left to read in it: see
    /// the module's documentation. `end` makes the report from the parts;
    /// `None` while the run goes on.
    pub fn finish_run_if_over(
        &mut self,
        connection: &str,
        updated_fields: &[(String, Option<String>)],
        mut end: impl FnMut(&RunParts) -> RunEnd,
    ) -> Result<Option<RunEnd>, StoreError> {
        self.with(|b| b.finish_run_if_over(connection, updated_fields, &mut end))
    }

    /// Runs `update` on `connection`'s rate-limit state that every worker
    /// serving it shares (text it wrote before, `{}` at first), under a
    /// lock, with the database's clock in Unix milliseconds; stores what it
    /// returns.
    pub fn update_pacing(
        &self,
        connection: &str,
        mut update: impl FnMut(&str, u64) -> String,
    ) -> Result<(), StoreError> {
        self.with(|b| b.update_pacing(connection, &mut update))
    }
}
