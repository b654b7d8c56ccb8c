//! Workers: any number of processes, on any number of machines, sharing
//! the syncs of the connections they all serve through one PostgreSQL
//! database.
//!
//! A worker loops: it starts the runs that are due
//! ([`Store::start_due_run`]: one run at a time per connection, whoever
//! starts it), claims partitions of runs in progress under leases while it
//! has free slots, reads each claimed partition as `sync` does but with
//! every page fenced by the lease and the lease renewed by a heartbeat
//! (`claimed.rs`), and ends the runs that are over, with their report
//! assembled from what every worker recorded ([`report`]). The protocol and
//! its invariants are in [`crate::store::lease`] and
//! [`crate::store::deployment`].
//!
//! Nothing here knows a source: a worker runs the same [`SyncJob`] a
//! `sync` runs, and the component does the rest.

mod claimed;
pub mod report;

use crate::store::deployment::RunStream;
use crate::store::{StatementCanceller, Store, StoreError, StreamRequest};
use crate::sync::{blocking, CredentialGate, RunReport, RunShared, SyncJob};
use connector_sandbox::egress::EgressCounters;
use connector_sandbox::pacing::{Pacer, PacingState, SharedPacing};
use connector_sandbox::stop::StopSignal;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// A connection a worker serves.
pub struct Served {
    /// What a sync of it runs.
    pub job: Arc<SyncJob>,
    /// Its database (PostgreSQL, shared with the other workers).
    pub store: Arc<Mutex<Store>>,
    /// Time between its runs.
    pub every: Duration,
    /// How long a lease on one of its partitions lasts unless renewed (a
    /// killed worker's partitions wait this long at most).
    pub lease: Duration,
    /// Its rate budget, shared with every worker serving it
    /// ([`StorePacing`]).
    pub pacer: Arc<Pacer>,
    /// The current run as this worker sees it.
    current_run: Mutex<Option<RunOnWorker>>,
    /// Reads in flight of this connection on this worker (`[sync] concurrency`).
    permits: Arc<Semaphore>,
    /// Cancels the store's statement (a stopped commit's, [`RunShared`]).
    canceller: StatementCanceller,
}

impl Served {
    /// A connection to serve: its job, its database, its interval, its
    /// lease length and its shared rate budget.
    pub fn new(
        job: SyncJob,
        store: Store,
        every: Duration,
        lease: Duration,
        pacer: Arc<Pacer>,
    ) -> Served {
        let permits = Arc::new(Semaphore::new(job.options.concurrency as usize));
        Served {
            permits,
            canceller: store.canceller(),
            job: Arc::new(job),
            store: Arc::new(Mutex::new(store)),
            every,
            lease,
            pacer,
            current_run: Mutex::new(None),
        }
    }

    /// The connection's name.
    pub fn connection(&self) -> &str {
        &self.job.connection
    }

    /// The streams a run reads, asked to be read as `sync` asks.
    fn run_streams(&self) -> Vec<RunStream> {
        let options = &self.job.options;
        self.job
            .info
            .streams
            .iter()
            .map(|stream| RunStream {
                name: stream.name.clone(),
                request: StreamRequest {
                    partitions: options.partitions,
                    incremental_partitions: crate::sync::INCREMENTAL_PARTITIONS,
                    force_full: options.force_full,
                    supports_incremental: stream.supports_incremental,
                },
            })
            .collect()
    }

    /// What the partitions of `run` this worker reads share.
    fn run_shared(&self, run: i64) -> RunShared {
        let mut current = self.current_run.lock().unwrap_or_else(|p| p.into_inner());
        let this_run = match &*current {
            Some(known) if known.id == run => known.clone(),
            _ => current
                .insert(RunOnWorker {
                    id: run,
                    counters: Arc::default(),
                    credential: Arc::default(),
                })
                .clone(),
        };
        RunShared {
            store: self.store.clone(),
            counters: this_run.counters,
            permits: self.permits.clone(),
            pacer: self.pacer.clone(),
            credential: this_run.credential,
            canceller: self.canceller.clone(),
        }
    }
}

/// A run as one worker sees it.
#[derive(Clone)]
struct RunOnWorker {
    /// The run's id.
    id: i64,
    /// The requests this worker sent (the run's cap applies per worker).
    counters: Arc<EgressCounters>,
    /// What this worker's reads learnt of the credential (each worker
    /// tests it for itself).
    credential: Arc<CredentialGate>,
}

/// How a worker works.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Its name in leases, reports and `status`.
    pub id: String,
    /// Partitions it reads at once.
    pub slots: usize,
    /// Exit once no run of its connections is due or in progress.
    pub once: bool,
    /// Triggered to stop: partitions stop after their last committed page
    /// and give their leases up.
    pub stop: Arc<StopSignal>,
}

/// How often an idle worker looks for work (and due runs): a third of the
/// shortest lease, at most a second.
fn poll_interval(served: &[Arc<Served>]) -> Duration {
    let shortest = served.iter().map(|s| s.lease).min().unwrap_or_default();
    (shortest / 3).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// What a worker did before it exited.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Runs it started.
    pub runs_started: u64,
    /// Partitions it claimed.
    pub partitions_claimed: u64,
    /// Runs it ended (whoever read them).
    pub runs_ended: u64,
}

/// Serves `served` until stopped (or, with `once`, until no run of them is
/// due or in progress); `on_run_end` hears of each run this worker ends.
///
/// A database that goes away (restarted, failed over), or that gives up
/// on a statement for now (cancelled at `statement_timeout` while another
/// session held a lock, a deadlock), is waited for: the worker looks again
/// after 1 s, 2 s, 4 s … (at most 30 s) and carries on once it answers. Partitions it was reading meanwhile stop at their next
/// commit without writing that page, and resume from their last written
/// one: in this run once their leases expire, or, when their end could be
/// recorded (a failure that passes by itself), in the next run, 1 min
/// later. With `once` the worker exits with the error instead.
pub async fn work(
    served: &[Arc<Served>],
    options: &WorkerOptions,
    on_run_end: &mut dyn FnMut(&RunReport),
) -> anyhow::Result<WorkerSummary> {
    let mut summary = WorkerSummary::default();
    let mut readings: JoinSet<()> = JoinSet::new();
    let mut outage = Outage::default();
    loop {
        let look = look(served, options, &mut readings, &mut summary, on_run_end).await;
        let wait = match look {
            Ok(true) => return Ok(summary),
            Ok(false) => {
                outage.over();
                poll_interval(served)
            }
            Err(e) if passes_by_itself(&e) && !options.once => {
                if options.stop.is_triggered() && readings.is_empty() {
                    tracing::warn!("stopped while the database was unavailable: {e:#}");
                    return Ok(summary);
                }
                let wait = outage.next_wait();
                tracing::warn!(
                    "the database is unavailable ({e:#}); looking again in {} s. Partitions being read stop at their next page and resume from their last written one",
                    wait.as_secs()
                );
                wait
            }
            Err(e) => return Err(e),
        };
        wait_for_the_next_look(&mut readings, options, wait, outage.is_on()).await;
    }
}

/// Waits until a read ends or `wait` has passed. Once stopped, only the
/// reads' ends are awaited; with no read in flight, the stop ends the wait
/// and the loop's next turn returns. During an outage the whole `wait`
/// passes: the reads it ends (their commits failed) are only collected.
async fn wait_for_the_next_look(
    readings: &mut JoinSet<()>,
    options: &WorkerOptions,
    wait: Duration,
    outage: bool,
) {
    let until = tokio::time::Instant::now() + wait;
    loop {
        let idle = readings.is_empty();
        let poll = async {
            if options.stop.sleep_until(until).await && !idle {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            Some(done) = readings.join_next() => {
                if let Err(e) = done {
                    tracing::error!("a partition's task failed: {e}");
                }
                if !outage {
                    return;
                }
            }
            _ = poll => return,
        }
    }
}

/// One look at the database: starts the due runs, claims partitions for
/// the free slots, ends the runs that are over. Whether the worker is done
/// (stopped with nothing in flight, or with `once` nothing left anywhere).
async fn look(
    served: &[Arc<Served>],
    options: &WorkerOptions,
    readings: &mut JoinSet<()>,
    summary: &mut WorkerSummary,
    on_run_end: &mut dyn FnMut(&RunReport),
) -> anyhow::Result<bool> {
    if !options.stop.is_triggered() {
        summary.runs_started += start_due_runs(served).await?;
        claim_into(served, options, readings, summary).await?;
    }
    summary.runs_ended += end_runs_over(served, on_run_end).await?;
    if readings.is_empty() {
        if options.stop.is_triggered() {
            return Ok(true);
        }
        if options.once && !any_run_in_progress(served).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `e` is the database server gone away, or a statement it gave up
/// on, which a later look may find passed ([`StoreError::is_temporary`]).
fn passes_by_itself(e: &anyhow::Error) -> bool {
    e.downcast_ref::<StoreError>()
        .is_some_and(StoreError::is_temporary)
}

/// The longest wait between two looks at a database that went away.
const LONGEST_OUTAGE_WAIT: Duration = Duration::from_secs(30);

/// The waits while the database is unavailable: 1 s, doubling, at most
/// 30 s. A worker waits so for its database while it runs, and the
/// `worker` command so for it to answer at start.
#[derive(Debug, Default)]
pub struct Outage {
    /// Looks that failed in a row.
    failures: u32,
}

impl Outage {
    /// After a failed look: how long to wait for the next.
    pub fn next_wait(&mut self) -> Duration {
        let wait = Duration::from_secs(1u64 << self.failures.min(5)).min(LONGEST_OUTAGE_WAIT);
        self.failures += 1;
        wait
    }

    /// Whether the last look failed.
    pub fn is_on(&self) -> bool {
        self.failures > 0
    }

    /// After a look that worked.
    pub fn over(&mut self) {
        if self.failures > 0 {
            tracing::info!("the database answers again");
            self.failures = 0;
        }
    }
}

/// Starts the due runs of `served`; returns how many.
async fn start_due_runs(served: &[Arc<Served>]) -> anyhow::Result<u64> {
    let mut started = 0;
    for s in served {
        let (connection, streams) = (s.connection().to_string(), s.run_streams());
        let run = blocking(&s.store, move |store| {
            store.start_due_run(&connection, &streams)
        })
        .await?;
        if let Some(run) = run {
            tracing::info!(connection = %s.connection(), run, "run started");
            started += 1;
        }
    }
    Ok(started)
}

/// Claims partitions while slots are free, taking the connections in turn,
/// and starts reading each.
async fn claim_into(
    served: &[Arc<Served>],
    options: &WorkerOptions,
    readings: &mut JoinSet<()>,
    summary: &mut WorkerSummary,
) -> anyhow::Result<()> {
    let mut exhausted = vec![false; served.len()];
    while readings.len() < options.slots && exhausted.contains(&false) {
        for (index, s) in served.iter().enumerate() {
            if exhausted[index] || readings.len() >= options.slots {
                continue;
            }
            let (id, lease, connections) = (
                options.id.clone(),
                s.lease,
                vec![s.connection().to_string()],
            );
            let claimed = blocking(&s.store, move |store| {
                store.claim_partition(&id, lease, &connections)
            })
            .await?;
            let Some(lease) = claimed else {
                exhausted[index] = true;
                continue;
            };
            tracing::info!(
                connection = %lease.connection, stream = %lease.stream,
                partition = lease.partition, token = lease.token, "partition claimed"
            );
            summary.partitions_claimed += 1;
            let (s, options) = (s.clone(), options.clone());
            readings.spawn(async move { claimed::read(&s, &options, &lease).await });
        }
    }
    Ok(())
}

/// Ends the runs of `served` that are over; returns how many.
async fn end_runs_over(
    served: &[Arc<Served>],
    on_run_end: &mut dyn FnMut(&RunReport),
) -> anyhow::Result<u64> {
    let mut ended = 0;
    for s in served {
        let connection = s.connection().to_string();
        let updated_fields: Vec<(String, Option<String>)> = s
            .job
            .info
            .streams
            .iter()
            .map(|stream| (stream.name.clone(), stream.updated_field.clone()))
            .collect();
        let every = s.every;
        let report = blocking(&s.store, move |store| {
            let mut report = None;
            store.finish_run_if_over(&connection, &updated_fields, |parts| {
                let (assembled, end) = report::run_end(&connection, parts, every);
                report = Some(assembled);
                end
            })?;
            Ok(report)
        })
        .await?;
        if let Some(report) = report {
            on_run_end(&report);
            ended += 1;
        }
    }
    Ok(ended)
}

/// Whether any connection of `served` has a run in progress (on this
/// worker or another).
async fn any_run_in_progress(served: &[Arc<Served>]) -> anyhow::Result<bool> {
    for s in served {
        let connections = vec![s.connection().to_string()];
        let running = blocking(&s.store, move |store| store.runs_in_progress(&connections)).await?;
        if !running.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A connection's rate-limit state in the database every worker serving
/// it shares ([`Store::update_pacing`]), on a database connection of its
/// own (pacing never waits behind a page's commit).
pub struct StorePacing {
    store: Store,
    connection: String,
}

impl StorePacing {
    /// The shared state of `connection` in `store`.
    pub fn new(store: Store, connection: &str) -> StorePacing {
        StorePacing {
            store,
            connection: connection.to_string(),
        }
    }
}

impl SharedPacing for StorePacing {
    fn update(&self, update: &mut dyn FnMut(&mut PacingState, u64)) -> Result<(), String> {
        self.store
            .update_pacing(&self.connection, |text, now| {
                // A state that does not parse (written by hand?) starts afresh.
                let mut state: PacingState = serde_json::from_str(text).unwrap_or_default();
                update(&mut state, now);
                serde_json::to_string(&state).unwrap_or_else(|_| "{}".into())
            })
            .map_err(|e| e.to_string())
    }
}
