//! Reading one partition to its end: one component instance, page after
//! page, each committed with its cursor; retries and waits between calls.

use super::credential_gate::Admission;
use super::report::PartitionReport;
use super::retry::{decide, error_kind, Next};
use super::{on_store, unless_stuck_after_stop, PartitionTask, RetryRecord, RunShared, SyncJob};
use crate::priority::{StoreCall, StoreCallPanicked};
use crate::store::lease::{FencedPage, Lease};
use crate::store::{PageCommit, Store, StoreError, StoredRecord, StoredTombstone};
use connector_sandbox::egress::{EgressCounters, EgressPolicy};
use connector_sandbox::runtime::{
    connector_error_kind, connector_error_message, CallError, ConnectorError, ConnectorInstance,
    Page, Partition, ReadRequest,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The error kind of a partition whose lease was lost: its page was not
/// written, and another worker reads it now.
pub(crate) const FENCED: &str = "fenced";

/// The error kind of a partition whose page met a database that went away
/// (restarted, failed over): it passes by itself.
pub(crate) const DATABASE_UNAVAILABLE: &str = "database-unavailable";

/// Why a partition stopped when the run was stopped.
const STOPPED: &str =
    "stopped by a signal after the last committed page; the next sync resumes there";

/// Why a partition ended before its last page: the report's error case and
/// the operator's message.
struct Ended {
    kind: String,
    message: String,
}

impl Ended {
    fn new(kind: &str, message: impl Into<String>) -> Ended {
        Ended {
            kind: kind.to_string(),
            message: message.into(),
        }
    }

    fn stopped() -> Ended {
        Ended::new("stopped", STOPPED)
    }
}

/// Reads the partition `task` with an instance of its own; the report says
/// how far it got and why it stopped there.
pub(crate) async fn read_partition(
    job: &SyncJob,
    shared: RunShared,
    task: PartitionTask,
) -> PartitionReport {
    let started = Instant::now();
    let counters = EgressCounters::child(&shared.counters);
    let egress = EgressPolicy::new(
        job.origin.clone(),
        job.sender.clone(),
        job.credential.clone(),
        job.egress_limits,
        counters.clone(),
        shared.pacer.clone(),
    )
    .with_stop(job.options.stop.clone())
    .with_max_budget_wait(job.options.max_retry_after);
    let mut report = PartitionReport {
        index: task.index,
        ..Default::default()
    };
    let outcome = match job
        .runtime
        .instantiate(&job.component, egress, &job.limits)
        .await
    {
        Ok(mut instance) => {
            let reader = PartitionReader {
                job,
                shared: &shared,
                task: &task,
                counters: &counters,
                started,
            };
            let outcome = reader.read_to_end(&mut instance, &mut report).await;
            report.warnings = warnings(instance.logs());
            outcome
        }
        Err(e) => Err(Ended::new("trap", format!("{e:#}"))),
    };
    if let Err(ended) = outcome {
        report.error_kind = Some(ended.kind);
        report.error = Some(ended.message);
    }
    report.requests = counters.requests.load(Ordering::Relaxed);
    report.bytes = counters.bytes.load(Ordering::Relaxed);
    report.seconds = started.elapsed().as_secs_f64();
    report
}

/// The distinct warnings and errors among a component's log lines.
fn warnings(logs: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (level, message) in logs {
        if (level == "warn" || level == "error") && !out.contains(message) {
            out.push(message.clone());
        }
    }
    out
}

/// What one partition's read works with (its instance is passed along:
/// it is not `Sync`, and this is shared across awaits).
struct PartitionReader<'a> {
    job: &'a SyncJob,
    shared: &'a RunShared,
    task: &'a PartitionTask,
    counters: &'a Arc<EgressCounters>,
    /// When the partition's read started.
    started: Instant,
}

impl PartitionReader<'_> {
    /// Reads and commits pages until the component returns no cursor. A
    /// page's commit runs while the next page is asked for (keyset paging
    /// needs only the cursor), so a partition does not wait for the
    /// database between requests; commits stay in page order, and the page
    /// in flight is committed (or fails) before the partition ends, stopped
    /// or not.
    async fn read_to_end(
        &self,
        instance: &mut ConnectorInstance,
        report: &mut PartitionReport,
    ) -> Result<(), Ended> {
        let mut cursor = self.task.cursor.clone();
        let mut committing: Option<PendingCommit> = None;
        let mut first = true;
        let outcome = loop {
            let read = self.next_page(instance, &cursor, first, report).await;
            first = false;
            let page = match read {
                Ok(page) => page,
                Err(ended) => break Err(ended),
            };
            if let Some(previous) = committing.take() {
                if let Err(ended) = self.settle(previous, report).await {
                    break Err(ended);
                }
            }
            let next = page.next_cursor.clone();
            match self.start_commit(page, report) {
                Ok(pending) => committing = Some(pending),
                Err(ended) => break Err(ended),
            }
            match next {
                Some(next) => cursor = Some(next),
                None => break Ok(()),
            }
        };
        if let Some(last) = committing {
            self.settle(last, report).await?;
        }
        outcome?;
        report.complete = true;
        report.hidden_by_acl = report
            .server_total
            .map(|total| total.saturating_sub(report.rows_returned));
        Ok(())
    }

    /// The page after `cursor` (a stop or the request cap ends the
    /// partition first), counted in the report (`first`: the run's first
    /// page of the partition).
    async fn next_page(
        &self,
        instance: &mut ConnectorInstance,
        cursor: &Option<String>,
        first: bool,
        report: &mut PartitionReport,
    ) -> Result<Page, Ended> {
        if self.job.options.stop.is_triggered() {
            return Err(Ended::stopped());
        }
        self.check_request_cap()?;
        let request = self.request(cursor.clone());
        let page = self.read_with_retries(instance, &request, report).await?;
        self.count(&page, first, report);
        if page.next_cursor.is_some() && page.next_cursor == *cursor {
            return Err(Ended::new(
                "internal",
                format!(
                    "the component returned the same cursor twice for `{}`; stopped to avoid an endless loop",
                    self.task.stream.name
                ),
            ));
        }
        Ok(page)
    }

    /// Waits for a page's commit and adds it to the report and progress.
    async fn settle(
        &self,
        pending: PendingCommit,
        report: &mut PartitionReport,
    ) -> Result<(), Ended> {
        let marked_deleted = self
            .committed(pending.commit)
            .await
            .map_err(|e| Ended::new("host", format!("the page's commit failed: {e}")))?
            .map_err(|e| match e {
                fenced @ StoreError::Fenced { .. } => Ended::new(FENCED, fenced.to_string()),
                cancelled
                    if self.job.options.stop.is_triggered()
                        && (cancelled.is_given_up() || cancelled.is_temporary()) =>
                {
                    Ended::stopped()
                }
                lost if lost.is_connection_lost() => Ended::new(
                    DATABASE_UNAVAILABLE,
                    format!("the database went away before the page was written ({lost}); the next sync resumes after the last page written"),
                ),
                given_up if given_up.is_temporary() => Ended::new(
                    DATABASE_UNAVAILABLE,
                    format!("the database did not write the page ({given_up})"),
                ),
                e => Ended::new("storage", format!("cannot write to the database: {e}")),
            })?;
        report.deleted_at_source += marked_deleted;
        report.pages += 1;
        report.records += pending.records;
        let stream = &self.task.stream.name;
        self.job.progress.committed(stream, pending.records);
        tracing::debug!(stream = %stream, partition = self.task.index, records = pending.records, "page committed");
        Ok(())
    }

    /// The outcome of a page's `commit`, cancelled if it is stuck after a
    /// stop ([`unless_stuck_after_stop`]). What is cancelled is the commit,
    /// or the statement it waits behind: another partition's commit, whose
    /// partition then ends as stopped too, or a stream's end (its sweep
    /// takes tens of seconds at 1M devices), which the next sync finishes
    /// without reading the stream again.
    async fn committed(
        &self,
        commit: StoreCall<Result<u64, StoreError>>,
    ) -> Result<Result<u64, StoreError>, StoreCallPanicked> {
        let what = || {
            let (stream, partition) = (&self.task.stream.name, self.task.index);
            format!("a page's commit of `{stream}` (partition {partition})")
        };
        let cancel = || self.shared.canceller.cancel();
        unless_stuck_after_stop(commit, &self.job.options.stop, cancel, what).await
    }

    /// The request for the page after `cursor`.
    fn request(&self, cursor: Option<String>) -> ReadRequest {
        ReadRequest {
            stream_name: self.task.stream.name.clone(),
            partition: Partition {
                index: self.task.index,
                count: self.task.count,
            },
            cursor,
            watermark: self.task.watermark.clone(),
            deletions_since: self.task.deletions_since.clone(),
            page_size: self.job.options.page_size,
        }
    }

    /// Fails once the run has sent all the requests it may.
    fn check_request_cap(&self) -> Result<(), Ended> {
        let limit = self.job.egress_limits.max_requests;
        if self.counters.run_requests() < limit {
            return Ok(());
        }
        Err(Ended::new(
            "request-cap",
            format!(
                "the run reached its cap of {limit} requests before `{}` was complete; raise [limits] max_requests_per_run if the source really needs more",
                self.task.stream.name
            ),
        ))
    }

    /// One page, retried as the error's case says.
    async fn read_with_retries(
        &self,
        instance: &mut ConnectorInstance,
        request: &ReadRequest,
        report: &mut PartitionReport,
    ) -> Result<Page, Ended> {
        let mut attempt = 0;
        loop {
            let admission = self.admitted().await?;
            let result = {
                let _permit = self
                    .shared
                    .permits
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                instance.read(&self.job.settings, request).await
            };
            // A request the host had no credential for failed in the
            // component as a broken connection; the run says what it was.
            let credential_failure = instance.take_credential_failure();
            let result = result.map_err(|e| match credential_failure {
                Some(failure) => CallError::Connector(failure),
                None => e,
            });
            admission.settle(&result);
            // This instance's request was refused a wait the run will not make.
            let refused = instance.take_budget_refusal();
            let error = match result {
                Ok(page) => return Ok(page),
                Err(error) => error,
            };
            // A stop during a wait for the rate budget fails the call: that is no error.
            if self.job.options.stop.is_triggered() {
                return Err(Ended::stopped());
            }
            // So does a wait the run will not make.
            if let Some(at) = refused {
                return Err(Ended::new("rate-limited", self.budget_spent(at)));
            }
            match decide(&self.job.options, &error, attempt) {
                Next::Retry { wait, server_asked } => {
                    // Retrying is pointless once the run may send no more requests.
                    self.check_request_cap()?;
                    self.wait_to_retry(&error, wait, server_asked, report)
                        .await?;
                    attempt += 1;
                }
                Next::Stop => return Err(give_up(&error, attempt)),
            }
        }
    }

    /// Waits until the run's credential lets this partition send a read
    /// ([`CredentialGate`]); ends the partition once the source rejected
    /// the credential on any read of the run, or on a stop.
    async fn admitted(&self) -> Result<Admission<'_>, Ended> {
        let gate = &self.shared.credential;
        tokio::select! {
            admitted = gate.admit() => admitted.map_err(|message| {
                // The contract's case, as the read that was refused reported it.
                let kind = connector_error_kind(&ConnectorError::Unauthenticated(String::new()));
                Ended::new(kind, message)
            }),
            () = self.job.options.stop.triggered() => Err(Ended::stopped()),
        }
    }

    /// Records the retry and waits `wait` (a stop ends the wait and the partition).
    async fn wait_to_retry(
        &self,
        error: &CallError,
        wait: Duration,
        server_asked: bool,
        report: &mut PartitionReport,
    ) -> Result<(), Ended> {
        if let CallError::Connector(ConnectorError::RateLimited(_)) = error {
            // Every worker holds off, not only the one refused.
            self.shared.pacer.cool_down(wait);
        }
        tracing::info!(
            stream = %self.task.stream.name, partition = self.task.index,
            "retrying in {} ms: {}", wait.as_millis(), error
        );
        report.retries.push(RetryRecord {
            reason: error_kind(error),
            waited_ms: wait.as_millis() as u64,
            server_asked,
        });
        if self.job.options.stop.sleep(wait).await {
            return Err(Ended::stopped());
        }
        Ok(())
    }

    /// Why a partition stopped when the rate budget returns (`at`) later
    /// than the run waits.
    fn budget_spent(&self, at: std::time::SystemTime) -> String {
        format!(
            "the source's rate budget is spent until {}, longer than [sync] max_retry_after_seconds ({} s) lets a run wait; committed pages are kept and the next sync resumes after them",
            httpdate::fmt_http_date(at),
            self.job.options.max_retry_after.as_secs()
        )
    }

    /// Adds the page's counters to the report.
    fn count(&self, page: &Page, first: bool, report: &mut PartitionReport) {
        // Only the run's first page counts the rows this run will see (a
        // component may count again later, from where it then is).
        if first {
            report.server_total = page.counters.server_total;
            if let Some(total) = page.counters.server_total {
                self.job.progress.expect(&self.task.stream.name, total);
            }
        }
        report.rows_requested += u64::from(page.counters.rows_requested);
        report.rows_returned += u64::from(page.counters.rows_returned);
        if page.watermark.is_some() {
            report.watermark = page.watermark.clone();
        }
    }

    /// Validates the page's records and starts committing them, its
    /// tombstones and the next cursor in one transaction (on a store
    /// thread, under the store's lock); under a lease, with the worker's
    /// part of the run's report as it stands with the page
    /// ([`FencedPage`]). `report` has every earlier page settled.
    fn start_commit(
        &self,
        mut page: Page,
        report: &PartitionReport,
    ) -> Result<PendingCommit, Ended> {
        let task = self.task;
        let mut records = std::mem::take(&mut page.records)
            .into_iter()
            .map(|json| {
                StoredRecord::index(
                    &task.stream.name,
                    &task.stream.key_field,
                    task.embed_field.as_deref(),
                    json,
                )
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|message| Ended::new("bad-record", message))?;
        in_key_order(&mut records);
        let tombstones: Vec<StoredTombstone> = page
            .deleted
            .iter()
            .map(|t| StoredTombstone {
                key: t.key.clone(),
                deleted_at: t.deleted_at.clone(),
            })
            .collect();
        let count = records.len() as u64;
        let connection = self.job.connection.clone();
        let stream = task.stream.name.clone();
        let (generation, partition) = (task.generation, task.index);
        let fence = task.lease.clone().map(|lease| {
            let part = self.part_with_page(report, count, &lease.holder);
            (lease, part)
        });
        let commit = on_store(&self.shared.store, move |s| {
            let page = PageCommit {
                generation,
                partition,
                records: &records,
                tombstones: &tombstones,
                next_cursor: page.next_cursor.as_deref(),
                watermark: page.watermark.as_deref(),
                window_start: page.window_start.as_deref(),
            };
            match fence {
                Some((lease, part)) => commit_under_lease(s, page, &lease, part),
                None => s.commit_page(&connection, &stream, page),
            }
        });
        Ok(PendingCommit {
            commit,
            records: count,
        })
    }

    /// The partition's report as it will stand once a page of `records`
    /// records is written (but for the records its tombstones mark):
    /// `holder`'s part of the run's report, recorded with the page.
    fn part_with_page(
        &self,
        report: &PartitionReport,
        records: u64,
        holder: &str,
    ) -> PartitionReport {
        let mut part = report.clone();
        part.workers = vec![holder.to_string()];
        part.pages += 1;
        part.records += records;
        part.requests = self.counters.requests.load(Ordering::Relaxed);
        part.bytes = self.counters.bytes.load(Ordering::Relaxed);
        part.seconds = self.started.elapsed().as_secs_f64();
        part
    }
}

/// Commits `page` under `lease`, with `part`, the worker's part of the
/// run's report, completed by the records the page's tombstones marked.
fn commit_under_lease(
    store: &mut Store,
    page: PageCommit<'_>,
    lease: &Lease,
    part: PartitionReport,
) -> Result<u64, StoreError> {
    let report = |marked: u64| {
        let mut part = part.clone();
        part.deleted_at_source += marked;
        serde_json::to_string(&part).unwrap_or_default()
    };
    store.commit_page_fenced(
        page,
        FencedPage {
            lease,
            report: &report,
        },
    )
}

/// Puts a page's records in key order, records of one key in the page's
/// order (so the last is the one stored, as before). The store's unique
/// index is in key order, and so are a full read's rows, so upserts in that
/// order visit each of their pages once, where an incremental page, whose
/// records come in the order they changed, jumped between them: 17-23 %
/// less wall time for a 1 % incremental sync at 1M (BENCHMARKS.md, "An
/// incremental page in key order"). A keyset page is in key order already,
/// which the sort sees in one pass. Done here, off the store's thread.
fn in_key_order(records: &mut [StoredRecord]) {
    records.sort_by(|a, b| a.key.cmp(&b.key));
}

/// A page's commit under way: the task returns the records its tombstones
/// newly marked deleted.
struct PendingCommit {
    commit: StoreCall<Result<u64, StoreError>>,
    /// Records written.
    records: u64,
}

/// The partition's end after an error the engine does not retry (any
/// longer): the component's message, with the attempts made.
fn give_up(error: &CallError, attempt: u32) -> Ended {
    let message = match error {
        CallError::Connector(c) if attempt > 0 => format!(
            "gave up after {} attempts: {}",
            attempt + 1,
            connector_error_message(c)
        ),
        other => other.to_string(),
    };
    Ended {
        kind: error_kind(error),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_put_in_key_order_and_a_key_twice_keeps_the_pages_order() {
        // 1,000 records of three keys, out of order; `data` is the position
        // in the page. Enough records that an unstable sort reorders some.
        let mut records: Vec<StoredRecord> = (0..1000u32)
            .map(|i| StoredRecord {
                key: format!("k{}", (i * 7) % 3),
                data: i.to_string(),
                parent: None,
            })
            .collect();
        in_key_order(&mut records);
        let position = |r: &StoredRecord| r.data.parse::<u32>().unwrap();
        for pair in records.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(
                a.key <= b.key,
                "{} before {}: not in key order",
                a.key,
                b.key
            );
            if a.key == b.key {
                assert!(
                    position(a) < position(b),
                    "records {} and {} of key {} swapped: the page's last record would not be the one stored",
                    position(a),
                    position(b),
                    a.key
                );
            }
        }
    }
}
