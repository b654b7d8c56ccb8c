//! The sync engine: reads every stream of a connector, partition by
//! partition and page by page, retrying what is temporary, and commits each
//! page with its cursor.
//!
//! Who decides what: the component says what a response means (a
//! `connector-error` case); the engine decides what to do about it:
//! `rate-limited` waits exactly the `Retry-After` the server gave (or backs
//! off with jitter when it gave none), `temporarily-unavailable` backs off
//! exponentially with full jitter, anything else stops the stream with the
//! component's message for the operator.
//!
//! Modules: `partition` reads one partition to its end, `retry` decides
//! what follows an error, `credential_gate` holds reads back until the
//! source accepted the credential (and for good once it rejected it),
//! `report` is what a run reports.

use crate::priority::{on_store_thread, StoreCall};
use crate::progress::Progress;
use crate::store::{
    FinishedStream, ReadMode, StatementCanceller, Store, StoreError, StreamPlan, StreamRequest,
};
use connector_sandbox::credentials::Credential;
use connector_sandbox::egress::{EgressCounters, EgressLimits};
use connector_sandbox::origin::Origin;
use connector_sandbox::pacing::Pacer;
use connector_sandbox::runtime::{
    ConnectorInfo, InstanceLimits, LoadedComponent, Runtime, StreamInfo,
};
use connector_sandbox::sender::Sender;
use connector_sandbox::stop::StopSignal;
pub(crate) use credential_gate::CredentialGate;
use partition::read_partition;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

mod credential_gate;
pub(crate) mod partition;
mod report;
mod retry;

pub use report::{PartitionReport, RetryRecord, RunReport, StreamReport};

/// How the engine drives reads.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Rows per page (a hint to the component).
    pub page_size: u32,
    /// Partitions per stream.
    pub partitions: u32,
    /// Reads in flight at once, across streams and partitions.
    pub concurrency: u32,
    /// Attempts per page.
    pub max_attempts: u32,
    /// First back-off delay.
    pub retry_base: Duration,
    /// Longest back-off delay.
    pub retry_max: Duration,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// Read every stream fully even where an incremental read is possible.
    pub force_full: bool,
    /// Budget of requests per hour (none: only the server's limits).
    pub requests_per_hour: Option<u32>,
    /// Once triggered, waits end at once and partitions stop after the
    /// page they committed last.
    pub stop: Arc<connector_sandbox::stop::StopSignal>,
}

/// Everything a sync needs.
#[derive(Clone)]
pub struct SyncJob {
    /// The runtime.
    pub runtime: &'static Runtime,
    /// The component.
    pub component: LoadedComponent,
    /// What the component declared.
    pub info: ConnectorInfo,
    /// Settings for the component.
    pub settings: Vec<(String, String)>,
    /// The only origin it may reach.
    pub origin: Origin,
    /// How requests reach it.
    pub sender: Arc<Sender>,
    /// The credential attached to its requests.
    pub credential: Credential,
    /// Sandbox limits.
    pub limits: InstanceLimits,
    /// Time-out, response and request caps.
    pub egress_limits: EgressLimits,
    /// Name of this connection in the database.
    pub connection: String,
    /// Engine options.
    pub options: SyncOptions,
    /// Where progress goes.
    pub progress: Arc<dyn Progress>,
}

/// Partitions of an incremental read: it returns only what changed since
/// the last read (typically a few percent), and each partition costs at
/// least a request of its own.
pub(crate) const INCREMENTAL_PARTITIONS: u32 = 1;

/// One partition to read: the stream, where to start and how.
pub(crate) struct PartitionTask {
    pub(crate) stream: StreamInfo,
    pub(crate) watermark: Option<String>,
    pub(crate) deletions_since: Option<String>,
    pub(crate) embed_field: Option<String>,
    pub(crate) generation: i64,
    pub(crate) index: u32,
    pub(crate) count: u32,
    pub(crate) cursor: Option<String>,
    /// The lease it is read under (a worker's), each page fenced by it.
    pub(crate) lease: Option<crate::store::lease::Lease>,
}

/// A stream whose partitions are being read.
struct StreamInProgress {
    stream: StreamInfo,
    plan: StreamPlan,
    started: Instant,
    /// Reports of the partitions an earlier run already finished.
    done: Vec<PartitionReport>,
    /// The partitions being read now.
    tasks: PartitionTasks,
}

/// Another sync of the connection holds its sync lock: this one did nothing.
#[derive(Debug, thiserror::Error)]
#[error("another sync of {connection} is running into the same database (a `sync`, `run` or `serve` of another process, or the previous sync still going); this one did nothing, and can run once that one ended")]
pub struct SyncInProgress {
    /// The connection.
    pub connection: String,
}

/// Runs a sync of every stream; returns the report (also stored in the database).
///
/// Every partition is read by a task of its own on the current tokio
/// runtime, so on a multi-threaded runtime the component work of different
/// partitions runs on different cores; `[sync] concurrency` bounds how many
/// read at once. Dropping the returned future aborts the partitions' tasks.
///
/// A sync holds its connection's sync lock from start to end
/// ([`Store::lock_syncs`]); while another holds it, this one does nothing
/// and fails with [`SyncInProgress`].
pub async fn run(job: &SyncJob, store: Arc<Mutex<Store>>) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let counters = Arc::new(EgressCounters::default());
    let connection = job.connection.clone();
    let Some(_lock) = blocking(&store, move |s| s.lock_syncs(&connection)).await? else {
        return Err(SyncInProgress {
            connection: job.connection.clone(),
        }
        .into());
    };
    let canceller = store.lock().unwrap_or_else(|p| p.into_inner()).canceller();
    let connection = job.connection.clone();
    let start = move |s: &mut Store| s.start_run(&connection);
    let run_id = blocking_unless_stuck(&store, job, &canceller, "starting the run", start).await?;
    let shared = RunShared {
        canceller,
        store: store.clone(),
        counters: counters.clone(),
        permits: Arc::new(Semaphore::new(job.options.concurrency as usize)),
        pacer: Arc::new(Pacer::new(job.options.requests_per_hour)),
        credential: Arc::default(),
    };
    let job_for_tasks = Arc::new(job.clone());
    let mut in_progress = Vec::new();
    for stream in &job.info.streams {
        in_progress.push(start_stream(&job_for_tasks, &shared, stream).await?);
    }
    // Every partition of every stream reads concurrently (bounded by `permits`).
    let streams = in_progress
        .into_iter()
        .map(|s| finish_stream(job, &shared, s));
    let report = RunReport {
        run_id,
        connection: job.connection.clone(),
        streams: futures::future::join_all(streams).await,
        requests: counters.requests.load(Ordering::Relaxed),
        bytes: counters.bytes.load(Ordering::Relaxed),
        denied_requests: counters.denied.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    };
    if let Err(e) = record_run(job, &shared, &report).await {
        if !given_up_after_a_stop(&job.options.stop, &e) {
            return Err(e);
        }
        tracing::warn!("the run's end was not recorded: the sync was stopped while it waited for the database ({e:#}); the next sync marks this run interrupted");
    }
    Ok(report)
}

/// Whether `e` is a statement of a stopped sync given up ([`StoreError::is_given_up`]):
/// 5 s after a stop, the sync's session is cancelled while it waits for a
/// lock, and on SQLite no later statement waits for one.
pub fn given_up_after_a_stop(stop: &StopSignal, e: &anyhow::Error) -> bool {
    stop.is_triggered()
        && e.downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_given_up)
}

/// Why a stream's end was not recorded, with the kind of that failure:
/// `stopped` when the sync was stopped while it waited for the database
/// (the next sync records the end without reading the stream again), none
/// when the database refused the write.
fn stream_end_failure(job: &SyncJob, e: &anyhow::Error) -> (Option<String>, String) {
    if given_up_after_a_stop(&job.options.stop, e) {
        let why = "stopped by a signal before the stream's end was recorded; the next sync records it without reading the stream again";
        return (Some("stopped".into()), why.into());
    }
    (None, format!("finishing the stream failed: {e}"))
}

/// Plans the read of `stream` (resume, incremental or full) and starts a
/// task for each partition not finished yet.
async fn start_stream(
    job: &Arc<SyncJob>,
    shared: &RunShared,
    stream: &StreamInfo,
) -> anyhow::Result<StreamInProgress> {
    let connection = job.connection.clone();
    let name = stream.name.clone();
    let request = StreamRequest {
        partitions: job.options.partitions,
        incremental_partitions: INCREMENTAL_PARTITIONS,
        force_full: job.options.force_full,
        supports_incremental: stream.supports_incremental,
    };
    let plan = blocking_unless_stuck(
        &shared.store,
        job,
        &shared.canceller,
        &format!("planning `{}`", stream.name),
        move |s| s.begin_stream(&connection, &name, request),
    )
    .await?;
    let embed_field = embed_field(stream);
    let (finished, unfinished): (Vec<_>, Vec<_>) = plan.partitions.iter().partition(|p| p.done);
    let done = finished
        .iter()
        .map(|p| PartitionReport {
            index: p.index,
            complete: true,
            ..Default::default()
        })
        .collect();
    let tasks = unfinished
        .iter()
        .map(|p| PartitionTask {
            stream: stream.clone(),
            watermark: match &plan.mode {
                ReadMode::Incremental { watermark } => Some(watermark.clone()),
                ReadMode::Full => None,
            },
            deletions_since: plan.deletions_since.clone(),
            embed_field: embed_field.clone(),
            generation: plan.generation,
            index: p.index,
            count: plan.partitions.len() as u32,
            cursor: p.cursor.clone(),
            lease: None,
        })
        .collect();
    Ok(StreamInProgress {
        stream: stream.clone(),
        started: Instant::now(),
        tasks: spawn_partitions(job, shared, tasks),
        plan,
        done,
    })
}

/// The field of `stream`'s records holding the key of the record it is
/// embedded into, if it is embedded into another stream.
pub(crate) fn embed_field(stream: &StreamInfo) -> Option<String> {
    stream
        .references
        .iter()
        .find(|r| r.embed_as.is_some())
        .map(|r| r.field.clone())
}

/// Waits for a stream's partitions; when all completed, commits the
/// stream's end (watermark, records aged out or no longer returned).
async fn finish_stream(job: &SyncJob, shared: &RunShared, s: StreamInProgress) -> StreamReport {
    let StreamInProgress {
        stream,
        plan,
        started,
        done: mut reports,
        tasks,
    } = s;
    reports.extend(join_partitions(tasks).await);
    reports.sort_by_key(|r| r.index);
    let mut finished = FinishedStream::default();
    let (mut finish_error, mut finish_error_kind) = (None, None);
    let verdict = if reports.iter().all(|r| r.complete) {
        let (connection, name, plan) = (job.connection.clone(), stream.name.clone(), plan.clone());
        let updated_field = stream.updated_field.clone();
        let what = format!("the end of `{name}`");
        let outcome =
            blocking_unless_stuck(&shared.store, job, &shared.canceller, &what, move |s| {
                s.finish_stream(&connection, &name, &plan, updated_field.as_deref())
            })
            .await;
        match outcome {
            Ok(f) => {
                finished = f;
                "complete".to_string()
            }
            Err(e) => {
                let (kind, why) = stream_end_failure(job, &e);
                (finish_error, finish_error_kind) = (Some(why.clone()), kind);
                format!("incomplete: {why}")
            }
        }
    } else {
        let why = reports.iter().find_map(|r| r.error.clone());
        format!("incomplete: {}", why.unwrap_or_default())
    };
    job.progress.finished(&stream.name, &verdict);
    let deleted_at_source = reports.iter().map(|r| r.deleted_at_source).sum::<u64>();
    StreamReport {
        mode: plan.mode.name().to_string(),
        stream: stream.name,
        resumed: plan.resumed,
        partitions: reports,
        deleted: deleted_at_source + finished.aged_out + finished.not_returned,
        deleted_at_source,
        aged_out: finished.aged_out,
        not_returned: finished.not_returned,
        verdict,
        finish_error,
        finish_error_kind,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Stores the run's report and the connection's health it shows.
async fn record_run(job: &SyncJob, shared: &RunShared, report: &RunReport) -> anyhow::Result<()> {
    let json = serde_json::to_string(report)?;
    let status = if report.complete() {
        "complete"
    } else {
        "incomplete"
    };
    let health = report.health();
    let connection = job.connection.clone();
    let run_id = report.run_id;
    let record = move |s: &mut Store| {
        s.finish_run(run_id, status, &json)?;
        s.set_health(&connection, &health)
    };
    blocking_unless_stuck(
        &shared.store,
        job,
        &shared.canceller,
        "recording the run",
        record,
    )
    .await
}

/// How long the store calls of a stopped sync may still run, from the
/// stop, before the statement their session runs is cancelled. A call
/// takes milliseconds; one still running after a stop waits for a lock
/// that another session or process holds, and would hold the stop until
/// the lock goes or a time-out ends it (PostgreSQL's `statement_timeout`,
/// SQLite's 30 s).
const STUCK_AFTER_STOP: Duration = Duration::from_secs(5);

/// Once [`STUCK_AFTER_STOP`] is over, how soon a call still running is
/// cancelled again, and a call that starts then is cancelled if it runs
/// that long. A cancel reaches whatever the store's session runs; calls
/// queued behind a cancelled one (the other partitions' commits) then wait
/// for the same lock, one after the other, and a grace of their own each
/// would add up to many seconds. (On SQLite no statement waits for a lock
/// after the first cancel anyway.)
const STUCK_AGAIN: Duration = Duration::from_millis(250);

/// The outcome of `call`, a store call of a sync that `what` names (for
/// the warning, made once, at its first cancel). Once the sync is stopped
/// and [`STUCK_AFTER_STOP`] is over, `cancel` cancels the statement the
/// store's session runs, every [`STUCK_AGAIN`] while `call` waits.
pub(crate) async fn unless_stuck_after_stop<T>(
    mut call: impl Future<Output = T> + Unpin,
    stop: &StopSignal,
    cancel: impl Fn(),
    what: impl Fn() -> String,
) -> T {
    tokio::select! {
        done = &mut call => return done,
        () = stop.triggered() => {}
    }
    let now = tokio::time::Instant::now();
    let grace_over = stop.triggered_at().unwrap_or(now) + STUCK_AFTER_STOP;
    let mut next = grace_over.max(now + STUCK_AGAIN);
    let mut warned = false;
    loop {
        tokio::select! {
            done = &mut call => return done,
            () = tokio::time::sleep_until(next) => {
                cancel();
                next = tokio::time::Instant::now() + STUCK_AGAIN;
                if !warned {
                    warned = true;
                    tracing::warn!(
                        "{} was still waiting {} s after the stop (for another session's or process's lock, or behind this sync's running statement): the statement this sync's database session runs is cancelled, and what it wrote is done again by the next sync",
                        what(),
                        STUCK_AFTER_STOP.as_secs()
                    );
                }
            }
        }
    }
}

/// [`blocking`], for a call of a sync: cancelled if it is still stuck
/// after a stop ([`unless_stuck_after_stop`]).
async fn blocking_unless_stuck<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    job: &SyncJob,
    canceller: &StatementCanceller,
    what: &str,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> anyhow::Result<T> {
    let call = on_store(store, f);
    let what = || what.to_string();
    let cancel = || canceller.cancel();
    Ok(unless_stuck_after_stop(call, &job.options.stop, cancel, what).await??)
}

/// Runs `f` on the store, on a store thread (SQLite calls block, and an
/// async worker must not; see [`crate::priority`]).
pub(crate) async fn blocking<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> anyhow::Result<T> {
    Ok(on_store(store, f).await??)
}

/// Starts `f` on the store, under its lock, on a store thread at once; it
/// runs to its end whether or not the result is awaited.
pub(crate) fn on_store<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> StoreCall<Result<T, StoreError>> {
    let store = store.clone();
    on_store_thread(move || {
        let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    })
}

/// A stream's partitions, each read by a task of its own.
struct PartitionTasks {
    /// The tasks; dropping the set aborts them.
    set: tokio::task::JoinSet<PartitionReport>,
    /// Which partition each task reads.
    index_of: HashMap<tokio::task::Id, u32>,
}

/// Starts one task per partition.
fn spawn_partitions(
    job: &Arc<SyncJob>,
    shared: &RunShared,
    tasks: Vec<PartitionTask>,
) -> PartitionTasks {
    let mut set = tokio::task::JoinSet::new();
    let mut index_of = HashMap::new();
    for task in tasks {
        let index = task.index;
        let (job, shared) = (job.clone(), shared.clone());
        let handle = set.spawn(async move { read_partition(&job, shared, task).await });
        index_of.insert(handle.id(), index);
    }
    PartitionTasks { set, index_of }
}

/// The reports of a stream's partition tasks, as they finish. A task that
/// panicked (a bug of the engine, never of a component, whose traps are
/// errors) becomes an incomplete partition rather than a lost report.
async fn join_partitions(mut tasks: PartitionTasks) -> Vec<PartitionReport> {
    let mut reports = Vec::new();
    while let Some(joined) = tasks.set.join_next_with_id().await {
        reports.push(match joined {
            Ok((_, report)) => report,
            Err(e) => PartitionReport {
                index: tasks.index_of.get(&e.id()).copied().unwrap_or_default(),
                error_kind: Some("host".into()),
                error: Some(format!(
                    "the host's task reading this partition failed: {e}"
                )),
                ..Default::default()
            },
        });
    }
    reports
}

/// What every partition of a run shares.
#[derive(Clone)]
pub(crate) struct RunShared {
    pub(crate) store: Arc<Mutex<Store>>,
    pub(crate) counters: Arc<EgressCounters>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) pacer: Arc<Pacer>,
    /// Whether the source accepted the run's credential yet.
    pub(crate) credential: Arc<CredentialGate>,
    /// Cancels the store's statement: a stopped run's commit that waits
    /// for another session's lock.
    pub(crate) canceller: StatementCanceller,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Notify;
    use tokio::time::Instant;

    /// A store's session stuck on another session's lock: its calls run one
    /// at a time, and each waits until a cancel reaches it while it runs
    /// (a cancel that reaches nothing running is lost, as on a server).
    #[derive(Default)]
    struct StuckSession {
        turn: tokio::sync::Mutex<()>,
        cancel: Notify,
    }

    impl StuckSession {
        /// A call that ends by itself after `takes`, unless cancelled first.
        async fn call(self: Arc<Self>, takes: Duration) -> &'static str {
            let _turn = self.turn.lock().await;
            tokio::select! {
                () = tokio::time::sleep(takes) => "done",
                () = self.cancel.notified() => "cancelled",
            }
        }

        /// `call`, started at once (as on a store thread) and cut short
        /// after `stop` as a sync's store calls are.
        async fn call_of_a_sync(
            self: Arc<Self>,
            stop: Arc<StopSignal>,
            takes: Duration,
        ) -> &'static str {
            let call = tokio::spawn(self.clone().call(takes));
            tokio::task::yield_now().await;
            let cancel = || self.cancel.notify_waiters();
            let what = || "a call".to_string();
            unless_stuck_after_stop(call, &stop, cancel, what)
                .await
                .unwrap()
        }
    }

    const FOR_EVER: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn calls_queued_behind_a_cancelled_one_get_no_grace_of_their_own() {
        let session = Arc::new(StuckSession::default());
        let stop = Arc::new(StopSignal::default());
        let calls: Vec<_> = (0..4)
            .map(|_| tokio::spawn(session.clone().call_of_a_sync(stop.clone(), FOR_EVER)))
            .collect();
        tokio::task::yield_now().await;
        let stopped = Instant::now();
        stop.trigger();
        for call in calls {
            assert_eq!(call.await.unwrap(), "cancelled");
        }
        let took = stopped.elapsed();
        assert!(
            took <= STUCK_AFTER_STOP + 4 * STUCK_AGAIN,
            "the stop waited {took:?} for four calls stuck behind one another: each had a grace of its own"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_ends_within_its_grace_is_not_cancelled() {
        let session = Arc::new(StuckSession::default());
        let stop = Arc::new(StopSignal::default());
        stop.trigger();
        let in_flight = session
            .clone()
            .call_of_a_sync(stop.clone(), STUCK_AFTER_STOP / 2);
        assert_eq!(in_flight.await, "done", "a page in flight at the stop");
        tokio::time::advance(STUCK_AFTER_STOP).await;
        let later = session
            .clone()
            .call_of_a_sync(stop.clone(), STUCK_AGAIN / 2);
        assert_eq!(later.await, "done", "a quick call after the grace");
        let stuck = session.clone().call_of_a_sync(stop.clone(), FOR_EVER);
        assert_eq!(stuck.await, "cancelled", "a stuck call after the grace");
    }
}
