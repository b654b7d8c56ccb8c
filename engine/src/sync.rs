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

use crate::progress::Progress;
use crate::store::{
    FinishedStream, Health, HealthState, PageCommit, ReadMode, Store, StoredRecord,
    StoredTombstone, StreamRequest,
};
use connector_sandbox::credentials::Credential;
use connector_sandbox::egress::{EgressCounters, EgressLimits, EgressPolicy};
use connector_sandbox::origin::Origin;
use connector_sandbox::pacing::Pacer;
use connector_sandbox::runtime::{
    connector_error_kind, connector_error_message, CallError, ConnectorError, ConnectorInfo,
    ConnectorInstance, InstanceLimits, LoadedComponent, Partition, ReadRequest, Runtime,
    StreamInfo,
};
use connector_sandbox::sender::Sender;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

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

/// One retry, for the report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetryRecord {
    /// The `connector-error` case that caused it.
    pub reason: String,
    /// How long the engine waited, in milliseconds.
    pub waited_ms: u64,
    /// Whether the wait came from the server's `Retry-After`.
    pub server_asked: bool,
}

/// What happened to one partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionReport {
    /// Partition index.
    pub index: u32,
    /// Pages committed in this run.
    pub pages: u64,
    /// Records committed in this run.
    pub records: u64,
    /// Rows the server said match (first page of this run).
    pub server_total: Option<u64>,
    /// Rows requested from the server.
    pub rows_requested: u64,
    /// Rows the server returned.
    pub rows_returned: u64,
    /// Rows the server counted but did not return (hidden by ACLs), for a
    /// partition read to its end in this run.
    pub hidden_by_acl: Option<u64>,
    /// HTTP requests sent for this partition (retries included).
    #[serde(default)]
    pub requests: u64,
    /// Response bytes received for this partition.
    #[serde(default)]
    pub bytes: u64,
    /// Seconds spent on this partition.
    #[serde(default)]
    pub seconds: f64,
    /// The watermark this partition's read will record.
    #[serde(default)]
    pub watermark: Option<String>,
    /// Records the source reported deleted (tombstones) that this run marked.
    #[serde(default)]
    pub deleted_at_source: u64,
    /// Warnings the component logged (distinct, in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Retries and why.
    pub retries: Vec<RetryRecord>,
    /// Whether the partition was read to its end.
    pub complete: bool,
    /// Why not, when not complete.
    pub error: Option<String>,
    /// The `connector-error` case of `error`.
    pub error_kind: Option<String>,
}

/// What happened to one stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamReport {
    /// Stream name.
    pub stream: String,
    /// `full` or `incremental`.
    pub mode: String,
    /// Whether an interrupted read was resumed.
    pub resumed: bool,
    /// Per-partition details.
    pub partitions: Vec<PartitionReport>,
    /// Records marked deleted by this run, for any reason.
    pub deleted: u64,
    /// Of those, records the source reported deleted.
    #[serde(default)]
    pub deleted_at_source: u64,
    /// Of those, records that aged out of the retention window.
    #[serde(default)]
    pub aged_out: u64,
    /// Of those, records a full read no longer returned.
    #[serde(default)]
    pub not_returned: u64,
    /// `complete`, or `incomplete: why`.
    pub verdict: String,
    /// Why the finishing step failed after every partition completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_error: Option<String>,
    /// Seconds spent.
    pub seconds: f64,
}

impl StreamReport {
    /// Records committed in this run.
    pub fn records(&self) -> u64 {
        self.partitions.iter().map(|p| p.records).sum()
    }
    /// Pages committed in this run.
    pub fn pages(&self) -> u64 {
        self.partitions.iter().map(|p| p.pages).sum()
    }
    /// Retries in this run.
    pub fn retries(&self) -> usize {
        self.partitions.iter().map(|p| p.retries.len()).sum()
    }
    /// Whether every partition completed and the stream's finishing step
    /// (watermark, deletions) was committed.
    pub fn complete(&self) -> bool {
        self.finish_error.is_none() && self.partitions.iter().all(|p| p.complete)
    }
    /// Rows the server said match, summed over partitions that reported it.
    pub fn server_total(&self) -> Option<u64> {
        let totals: Vec<u64> = self
            .partitions
            .iter()
            .filter_map(|p| p.server_total)
            .collect();
        (!totals.is_empty()).then(|| totals.iter().sum())
    }
}

/// The report of one sync run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Database run id.
    pub run_id: i64,
    /// Connection name.
    pub connection: String,
    /// Per-stream reports.
    pub streams: Vec<StreamReport>,
    /// HTTP requests the component sent.
    pub requests: u64,
    /// Response bytes it received.
    pub bytes: u64,
    /// Requests the egress policy refused.
    pub denied_requests: u64,
    /// Seconds the run took.
    pub seconds: f64,
}

impl RunReport {
    /// Whether every stream completed.
    pub fn complete(&self) -> bool {
        self.streams.iter().all(StreamReport::complete)
    }

    /// The connection's health as this run shows it: connected when every
    /// stream completed; a temporary failure when every failure is of a kind
    /// that passes by itself (rate limits, unavailability); failed otherwise.
    pub fn health(&self) -> Health {
        if let Some((stream, why)) = self
            .streams
            .iter()
            .find_map(|s| s.finish_error.as_ref().map(|e| (&s.stream, e)))
        {
            // The database refused a write: that needs someone to look.
            return Health {
                state: HealthState::Failed,
                error_kind: Some("store".into()),
                message: Some(format!("`{stream}`: {why}")),
            };
        }
        let failures: Vec<&PartitionReport> = self
            .streams
            .iter()
            .flat_map(|s| &s.partitions)
            .filter(|p| !p.complete && p.error.is_some())
            .collect();
        let Some(first) = failures
            .iter()
            .find(|p| !is_temporary(p.error_kind.as_deref()))
            .or(failures.first())
        else {
            return Health {
                state: HealthState::Connected,
                error_kind: None,
                message: None,
            };
        };
        let state = if failures
            .iter()
            .all(|p| is_temporary(p.error_kind.as_deref()))
        {
            HealthState::TemporaryFailure
        } else {
            HealthState::Failed
        };
        Health {
            state,
            error_kind: first.error_kind.clone(),
            message: first.error.clone(),
        }
    }
}

/// Failures that pass by themselves and are retried at the next run.
fn is_temporary(kind: Option<&str>) -> bool {
    matches!(
        kind,
        Some("temporarily-unavailable" | "rate-limited" | "stopped")
    )
}

/// Why a partition stopped when the rate budget returns (`at`) later than the run waits.
fn budget_spent(job: &SyncJob, at: std::time::SystemTime) -> String {
    let at = httpdate::fmt_http_date(at);
    format!(
        "the source's rate budget is spent until {at}, longer than [sync] max_retry_after_seconds ({} s) lets a run wait; committed pages are kept and the next sync resumes after them",
        job.options.max_retry_after.as_secs()
    )
}

/// Why a partition stopped when the run was stopped.
const STOPPED: &str =
    "stopped by a signal after the last committed page; the next sync resumes there";

fn backoff(options: &SyncOptions, attempt: u32) -> Duration {
    let exp = options
        .retry_base
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(options.retry_max);
    // Full jitter: anywhere between half the delay and the delay.
    let ms = exp.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms.max(1)))
}

/// What to do after a failed read.
enum Next {
    Retry { wait: Duration, server_asked: bool },
    Stop,
}

fn decide(options: &SyncOptions, error: &CallError, attempt: u32) -> Next {
    if attempt + 1 >= options.max_attempts {
        return Next::Stop;
    }
    match error {
        CallError::Connector(ConnectorError::RateLimited(r)) => match r.retry_after_seconds {
            Some(s) if Duration::from_secs(s.into()) <= options.max_retry_after => Next::Retry {
                wait: Duration::from_secs(s.into()),
                server_asked: true,
            },
            Some(_) => Next::Stop,
            None => Next::Retry {
                wait: backoff(options, attempt),
                server_asked: false,
            },
        },
        CallError::Connector(ConnectorError::TemporarilyUnavailable(_)) => Next::Retry {
            wait: backoff(options, attempt),
            server_asked: false,
        },
        _ => Next::Stop,
    }
}

fn error_kind(e: &CallError) -> String {
    match e {
        CallError::Connector(c) => connector_error_kind(c).to_string(),
        CallError::Trap(_) => "trap".to_string(),
    }
}

/// Partitions of an incremental read: it returns only what changed since
/// the last read (typically a few percent), and each partition costs at
/// least a request of its own.
const INCREMENTAL_PARTITIONS: u32 = 1;

struct PartitionTask {
    stream: StreamInfo,
    watermark: Option<String>,
    deletions_since: Option<String>,
    embed_field: Option<String>,
    generation: i64,
    index: u32,
    count: u32,
    cursor: Option<String>,
}

/// Runs a sync of every stream; returns the report (also stored in the database).
///
/// Every partition is read by a task of its own on the current tokio
/// runtime, so on a multi-threaded runtime the component work of different
/// partitions runs on different cores; `[sync] concurrency` bounds how many
/// read at once. Dropping the returned future aborts the partitions' tasks.
pub async fn run(job: &SyncJob, store: Arc<Mutex<Store>>) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let job_for_tasks = Arc::new(job.clone());
    let counters = Arc::new(EgressCounters::default());
    let pacer = Arc::new(Pacer::new(job.options.requests_per_hour));
    let connection = job.connection.clone();
    let run_id = blocking(&store, move |s| s.start_run(&connection)).await?;
    let permits = Arc::new(Semaphore::new(job.options.concurrency as usize));
    let shared = RunShared {
        store: store.clone(),
        counters: counters.clone(),
        permits,
        pacer,
    };

    let mut stream_reports = Vec::new();
    let mut handles = Vec::new();
    for stream in &job.info.streams {
        let connection = job.connection.clone();
        let name = stream.name.clone();
        let partitions = job.options.partitions;
        let request = StreamRequest {
            partitions,
            incremental_partitions: INCREMENTAL_PARTITIONS,
            force_full: job.options.force_full,
            supports_incremental: stream.supports_incremental,
        };
        let plan = blocking(&store, move |s| s.begin_stream(&connection, &name, request)).await?;
        // A stream embedded into another records the parent key with each record.
        let embed_field = stream
            .references
            .iter()
            .find(|r| r.embed_as.is_some())
            .map(|r| r.field.clone());
        let mut tasks = Vec::new();
        let mut done_reports = Vec::new();
        for p in &plan.partitions {
            if p.done {
                done_reports.push(PartitionReport {
                    index: p.index,
                    complete: true,
                    ..Default::default()
                });
                continue;
            }
            tasks.push(PartitionTask {
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
            });
        }
        let stream_started = Instant::now();
        let partition_handles = spawn_partitions(&job_for_tasks, &shared, tasks);
        handles.push((
            stream.clone(),
            plan,
            stream_started,
            done_reports,
            partition_handles,
        ));
    }

    // Drive every partition of every stream concurrently (bounded by `permits`).
    let all = handles
        .into_iter()
        .map(|(stream, plan, started, mut reports, partitions)| {
            let store = store.clone();
            let name = stream.name.clone();
            async move {
                reports.extend(join_partitions(partitions).await);
                reports.sort_by_key(|r| r.index);
                let complete = reports.iter().all(|r| r.complete);
                let mut finished = FinishedStream::default();
                let mut verdict = "complete".to_string();
                let mut finish_error = None;
                if complete {
                    let connection = job.connection.clone();
                    let plan = plan.clone();
                    match blocking(&store, move |s| {
                        s.finish_stream(
                            &connection,
                            &stream.name,
                            &plan,
                            stream.updated_field.as_deref(),
                        )
                    })
                    .await
                    {
                        Ok(f) => finished = f,
                        Err(e) => {
                            let why = format!("finishing the stream failed: {e}");
                            verdict = format!("incomplete: {why}");
                            finish_error = Some(why);
                        }
                    }
                } else {
                    let why: Vec<String> = reports.iter().filter_map(|r| r.error.clone()).collect();
                    verdict = format!("incomplete: {}", why.first().cloned().unwrap_or_default());
                }
                job.progress.finished(&name, &verdict);
                let deleted_at_source = reports.iter().map(|r| r.deleted_at_source).sum::<u64>();
                StreamReport {
                    mode: plan.mode.name().to_string(),
                    stream: name,
                    resumed: plan.resumed,
                    partitions: reports,
                    deleted: deleted_at_source + finished.aged_out + finished.not_returned,
                    deleted_at_source,
                    aged_out: finished.aged_out,
                    not_returned: finished.not_returned,
                    verdict,
                    finish_error,
                    seconds: started.elapsed().as_secs_f64(),
                }
            }
        });
    stream_reports.extend(futures::future::join_all(all).await);

    let report = RunReport {
        run_id,
        connection: job.connection.clone(),
        streams: stream_reports,
        requests: counters.requests.load(Ordering::Relaxed),
        bytes: counters.bytes.load(Ordering::Relaxed),
        denied_requests: counters.denied.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_string(&report)?;
    let status = if report.complete() {
        "complete"
    } else {
        "incomplete"
    };
    let health = report.health();
    let connection = job.connection.clone();
    blocking(&store, move |s| {
        s.finish_run(run_id, status, &json)?;
        s.set_health(&connection, &health)
    })
    .await?;
    Ok(report)
}

async fn blocking<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&mut Store) -> rusqlite::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let store = store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    })
    .await?;
    Ok(result?)
}

/// The operator's message when the run has sent all the requests it may.
fn cap_reached(job: &SyncJob, counters: &EgressCounters, task: &PartitionTask) -> Option<String> {
    (counters.run_requests() >= job.egress_limits.max_requests).then(|| {
        format!(
            "the run reached its cap of {} requests before `{}` was complete; raise [limits] max_requests_per_run if the source really needs more",
            job.egress_limits.max_requests, task.stream.name
        )
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
struct RunShared {
    store: Arc<Mutex<Store>>,
    counters: Arc<EgressCounters>,
    permits: Arc<Semaphore>,
    pacer: Arc<Pacer>,
}

async fn read_partition(job: &SyncJob, shared: RunShared, task: PartitionTask) -> PartitionReport {
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
    let mut report = match job
        .runtime
        .instantiate(&job.component, egress, &job.limits)
        .await
    {
        Ok(mut instance) => {
            let mut report =
                read_partition_pages(job, shared, task, &mut instance, &counters).await;
            report.warnings = warnings(instance.logs());
            report
        }
        Err(e) => PartitionReport {
            index: task.index,
            error_kind: Some("trap".into()),
            error: Some(format!("{e:#}")),
            ..Default::default()
        },
    };
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

async fn read_partition_pages(
    job: &SyncJob,
    shared: RunShared,
    task: PartitionTask,
    instance: &mut ConnectorInstance,
    counters: &Arc<EgressCounters>,
) -> PartitionReport {
    let RunShared {
        store,
        counters: _,
        permits,
        pacer,
    } = shared;
    let mut report = PartitionReport {
        index: task.index,
        ..Default::default()
    };
    let fail = |report: &mut PartitionReport, kind: String, message: String| {
        report.error_kind = Some(kind);
        report.error = Some(message);
    };
    let mut cursor = task.cursor.clone();
    loop {
        let request = ReadRequest {
            stream_name: task.stream.name.clone(),
            partition: Partition {
                index: task.index,
                count: task.count,
            },
            cursor: cursor.clone(),
            watermark: task.watermark.clone(),
            deletions_since: task.deletions_since.clone(),
            page_size: job.options.page_size,
        };
        if job.options.stop.is_triggered() {
            fail(&mut report, "stopped".into(), STOPPED.into());
            return report;
        }
        if let Some(message) = cap_reached(job, counters, &task) {
            fail(&mut report, "request-cap".into(), message);
            return report;
        }
        let mut attempt = 0;
        let page = loop {
            let result = {
                let _permit = permits
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                instance.read(&job.settings, &request).await
            };
            // This instance's request was refused a wait the run will not make.
            let refused = instance.take_budget_refusal();
            match result {
                Ok(page) => break page,
                // A stop during a wait for the rate budget fails the call: that is no error.
                Err(_) if job.options.stop.is_triggered() => {
                    fail(&mut report, "stopped".into(), STOPPED.into());
                    return report;
                }
                // So does a wait the run will not make.
                Err(_) if refused.is_some() => {
                    let at = refused.unwrap_or_else(std::time::SystemTime::now);
                    fail(&mut report, "rate-limited".into(), budget_spent(job, at));
                    return report;
                }
                Err(error) => match decide(&job.options, &error, attempt) {
                    // Retrying is pointless once the run may send no more requests.
                    Next::Retry { .. } if cap_reached(job, counters, &task).is_some() => {
                        let message = cap_reached(job, counters, &task).unwrap_or_default();
                        fail(&mut report, "request-cap".into(), message);
                        return report;
                    }
                    Next::Retry { wait, server_asked } => {
                        if let CallError::Connector(ConnectorError::RateLimited(_)) = &error {
                            // Every worker holds off, not only the one refused.
                            pacer.cool_down(wait);
                        }
                        tracing::info!(
                            stream = %task.stream.name, partition = task.index,
                            "retrying in {} ms: {}", wait.as_millis(), error
                        );
                        report.retries.push(RetryRecord {
                            reason: error_kind(&error),
                            waited_ms: wait.as_millis() as u64,
                            server_asked,
                        });
                        if job.options.stop.sleep(wait).await {
                            fail(&mut report, "stopped".into(), STOPPED.into());
                            return report;
                        }
                        attempt += 1;
                    }
                    Next::Stop => {
                        let message = match &error {
                            CallError::Connector(c) if attempt > 0 => format!(
                                "gave up after {} attempts: {}",
                                attempt + 1,
                                connector_error_message(c)
                            ),
                            other => other.to_string(),
                        };
                        fail(&mut report, error_kind(&error), message);
                        return report;
                    }
                },
            }
        };
        // Only the run's first page counts the rows this run will see (a
        // component may count again later, from where it then is).
        if report.pages == 0 {
            report.server_total = page.counters.server_total;
            if let Some(total) = page.counters.server_total {
                job.progress.expect(&task.stream.name, total);
            }
        }
        report.rows_requested += u64::from(page.counters.rows_requested);
        report.rows_returned += u64::from(page.counters.rows_returned);
        if page.watermark.is_some() {
            report.watermark = page.watermark.clone();
        }
        let mut records = Vec::with_capacity(page.records.len());
        for json in page.records {
            let indexed = StoredRecord::index(
                &task.stream.name,
                &task.stream.key_field,
                task.embed_field.as_deref(),
                json,
            );
            match indexed {
                Ok(r) => records.push(r),
                Err(message) => {
                    fail(&mut report, "bad-record".into(), message);
                    return report;
                }
            }
        }
        if page.next_cursor.is_some() && page.next_cursor == cursor {
            fail(
                &mut report,
                "internal".into(),
                format!(
                    "the component returned the same cursor twice for `{}`; stopped to avoid an endless loop",
                    task.stream.name
                ),
            );
            return report;
        }
        let n = records.len() as u64;
        let tombstones: Vec<StoredTombstone> = page
            .deleted
            .iter()
            .map(|t| StoredTombstone {
                key: t.key.clone(),
                deleted_at: t.deleted_at.clone(),
            })
            .collect();
        let connection = job.connection.clone();
        let stream = task.stream.name.clone();
        let (generation, partition) = (task.generation, task.index);
        let next = page.next_cursor.clone();
        let watermark = page.watermark.clone();
        let window_start = page.window_start.clone();
        let committed = blocking(&store, move |s| {
            s.commit_page(
                &connection,
                &stream,
                PageCommit {
                    generation,
                    partition,
                    records: &records,
                    tombstones: &tombstones,
                    next_cursor: next.as_deref(),
                    watermark: watermark.as_deref(),
                    window_start: window_start.as_deref(),
                },
            )
        })
        .await;
        match committed {
            Ok(marked) => report.deleted_at_source += marked,
            Err(e) => {
                fail(
                    &mut report,
                    "storage".into(),
                    format!("cannot write to the database: {e:#}"),
                );
                return report;
            }
        }
        report.pages += 1;
        report.records += n;
        job.progress.committed(&task.stream.name, n);
        tracing::debug!(stream = %task.stream.name, partition = task.index, records = n, "page committed");
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => {
                report.complete = true;
                report.hidden_by_acl = report
                    .server_total
                    .map(|total| total.saturating_sub(report.rows_returned));
                return report;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_sandbox::runtime::exposure::connector::types::RateLimit;

    fn options() -> SyncOptions {
        SyncOptions {
            page_size: 10,
            partitions: 1,
            concurrency: 1,
            max_attempts: 3,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(60),
            force_full: false,
            requests_per_hour: None,
            stop: Default::default(),
        }
    }

    #[test]
    fn retry_after_is_honoured_exactly() {
        let e = CallError::Connector(ConnectorError::RateLimited(RateLimit {
            retry_after_seconds: Some(7),
            message: "m".into(),
        }));
        match decide(&options(), &e, 0) {
            Next::Retry { wait, server_asked } => {
                assert_eq!((wait, server_asked), (Duration::from_secs(7), true))
            }
            Next::Stop => panic!("should retry"),
        }
        assert!(matches!(decide(&options(), &e, 2), Next::Stop));
        let long = CallError::Connector(ConnectorError::RateLimited(RateLimit {
            retry_after_seconds: Some(7200),
            message: "m".into(),
        }));
        assert!(matches!(decide(&options(), &long, 0), Next::Stop));
    }

    #[test]
    fn only_temporary_errors_retry() {
        let t = CallError::Connector(ConnectorError::TemporarilyUnavailable("x".into()));
        match decide(&options(), &t, 1) {
            Next::Retry { wait, .. } => {
                assert!(wait >= Duration::from_millis(100) && wait <= Duration::from_millis(200))
            }
            Next::Stop => panic!("should retry"),
        }
        let f = CallError::Connector(ConnectorError::Forbidden("x".into()));
        assert!(matches!(decide(&options(), &f, 0), Next::Stop));
        assert!(matches!(
            decide(&options(), &CallError::Trap("x".into()), 0),
            Next::Stop
        ));
    }
}
