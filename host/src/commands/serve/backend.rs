//! The console's [`Backend`] over the connections `serve` found at start:
//! each request reads the connection's database (health, records, runs)
//! and the keeper's schedule; "Sync now" wakes the keeper; the record
//! browser is `browse`'s.

use super::keeper::{Keeper, Keepers};
use super::stores::{Checkout, StorePool};
use super::{browse, configured, connect, keeper_of, Configured};
use anyhow::Result;
use connector_console::{
    Backend, ConnectRequest, Connected, ConnectionDetail, ConnectionView, ConnectorForm,
    HealthState, HealthView, LastSync, PartitionRunView, ProgressView, RecordView, RecordsView,
    RunView, ScheduleView, StreamRunView, StreamView, TestOutcome,
};
use connector_engine::store::{Health, HealthState as StoredState, Store, StoredRun};
use connector_engine::sync::RunReport;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::runtime::Handle;

/// The console's backend: the connections found at start and those made
/// since, read from their databases at each request, and their schedules.
pub(super) struct StoredConnections {
    /// The connections: those found at start in file name order, then
    /// those "Connect" made.
    pub(super) connections: RwLock<Vec<Configured>>,
    /// Their schedules (none for a file that does not load).
    pub(super) keepers: Arc<Keepers>,
    /// The Connect forms of the bundled connectors.
    pub(super) offered: Vec<ConnectorForm>,
    /// Where "Connect" writes connections.
    pub(super) config_dir: PathBuf,
    /// Time between syncs of a connection that sets none.
    pub(super) every: Duration,
    /// The databases opened so far, by connection.
    pub(super) stores: std::sync::Mutex<std::collections::HashMap<String, Arc<StorePool>>>,
}

impl Backend for StoredConnections {
    /// Each connection's line, read on a thread of its own (up to
    /// [`OVERVIEW_THREADS`] at once): a database slow to open (a server out
    /// of reach waits out its time-out) delays the overview by its own
    /// wait, not by the sum of them all.
    fn connections(&self) -> Result<Vec<ConnectionView>> {
        let all = self.all();
        let mut views = Vec::with_capacity(all.len());
        for some in all.chunks(OVERVIEW_THREADS) {
            std::thread::scope(|scope| {
                let reading: Vec<_> = some
                    .iter()
                    .map(|c| scope.spawn(move || self.overview_of(c)))
                    .collect();
                for line in reading {
                    views.push(line.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
                }
            });
        }
        Ok(views)
    }

    fn schedule(&self, id: &str) -> Result<Option<ScheduleView>> {
        Ok(self.keepers.find(id).map(|k| schedule_view(&k)))
    }

    fn sync_now(&self, id: &str) -> Result<bool> {
        Ok(self.keepers.find(id).map(|k| k.sync_now()).is_some())
    }

    fn records(
        &self,
        id: &str,
        stream: &str,
        term: &str,
        offset: u64,
    ) -> Result<Option<RecordsView>> {
        self.browse(id, |c, view, store| {
            browse::records(c, view, store, stream, term, offset)
        })
    }

    fn record(&self, id: &str, stream: &str, key: &str) -> Result<Option<RecordView>> {
        self.browse(id, |c, view, store| {
            browse::record(c, view, store, stream, key)
        })
    }

    fn connectors_available(&self) -> Result<Vec<ConnectorForm>> {
        Ok(self.offered.clone())
    }

    fn test_connection(&self, request: &ConnectRequest) -> Result<TestOutcome> {
        let dir = self.config_dir.clone();
        Ok(Handle::current().block_on(connect::test(request, &dir)))
    }

    fn connect(&self, request: &ConnectRequest) -> Result<Connected> {
        Handle::current().block_on(self.connect_now(request))
    }

    fn disconnect(&self, id: &str, delete_records: bool) -> Result<bool> {
        match self.keepers.find(id) {
            Some(keeper) if keeper.state().disconnected.is_none() => {
                keeper.disconnect(delete_records)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn connection(&self, id: &str) -> Result<Option<ConnectionDetail>> {
        let Some(c) = self.find(id) else {
            return Ok(None);
        };
        let c = &c;
        let opened = self.store(c)?;
        let store = opened.as_deref();
        let (runs, history) = match store {
            Some(store) => (
                store.recent_runs(&c.name, RUNS_SHOWN)?,
                store.health_history(&c.name, RUNS_SHOWN)?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Some(ConnectionDetail {
            connection: self.view(c, store)?,
            runs: runs.iter().map(run_view).collect(),
            health_history: history
                .into_iter()
                .map(|(h, since)| health_view(h, since))
                .collect(),
        }))
    }
}

/// A stored health, for the console.
fn health_view(h: Health, since: String) -> HealthView {
    HealthView {
        state: match h.state {
            StoredState::Connected => HealthState::Connected,
            StoredState::TemporaryFailure => HealthState::TemporaryFailure,
            StoredState::Failed => HealthState::Failed,
        },
        message: h.message,
        since,
    }
}

/// Where a keeper's schedule stands, for the console.
fn schedule_view(keeper: &Keeper) -> ScheduleView {
    let state = keeper.state();
    ScheduleView {
        running: state.running,
        next_run: state
            .next_run
            .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        disconnected: state.disconnected,
        progress: state
            .progress
            .into_iter()
            .map(|s| ProgressView {
                stream: s.stream,
                records: s.records,
                expected: s.expected,
                verdict: s.verdict,
            })
            .collect(),
    }
}

/// Connections whose lines of the overview are read at once, at most.
const OVERVIEW_THREADS: usize = 32;

/// Runs (and changes of health) a connection's page lists.
const RUNS_SHOWN: u32 = 10;

/// A stored run with its completeness report, per stream and partition.
fn run_view(run: &StoredRun) -> RunView {
    let report: Option<RunReport> = run
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    RunView {
        started_at: run.started_at.clone(),
        finished_at: run.finished_at.clone(),
        status: run.status.clone(),
        streams: report
            .into_iter()
            .flat_map(|r| r.streams)
            .map(|s| StreamRunView {
                stream: s.stream,
                mode: s.mode,
                verdict: s.verdict,
                partitions: s
                    .partitions
                    .into_iter()
                    .map(|p| PartitionRunView {
                        index: p.index,
                        records: p.records,
                        pages: p.pages,
                        retries: p.retries.into_iter().map(|r| r.reason).collect(),
                        hidden_by_acl: p.hidden_by_acl,
                        complete: p.complete,
                        error: p.error,
                    })
                    .collect(),
            })
            .collect(),
    }
}

impl StoredConnections {
    /// "Connect": refused when the form cannot make a connection, the name
    /// is taken or the test does not pass; otherwise the files are
    /// written, the connection joins the list and its first sync starts.
    async fn connect_now(&self, request: &ConnectRequest) -> Result<Connected> {
        if let Some(problem) = connect::unusable(request) {
            return Ok(Connected::Refused(TestOutcome::failed(problem)));
        }
        if self.find(&request.id).is_some() {
            return Ok(Connected::Refused(TestOutcome::failed(format!(
                "A connection named `{}` exists already: choose another name, or disconnect that one first.",
                request.id
            ))));
        }
        let outcome = connect::test(request, &self.config_dir).await;
        if !outcome.passed() {
            return Ok(Connected::Refused(outcome));
        }
        let file = match connect::write_connection(&self.config_dir, request) {
            Ok(file) => file,
            Err(e) => {
                return Ok(Connected::Refused(TestOutcome::failed(format!(
                    "The test passed but the connection could not be saved: {e:#}"
                ))))
            }
        };
        // Connect writes SQLite connections: no database password to read.
        let no_env = std::collections::HashMap::<String, String>::new();
        let made = configured(&file, request.id.clone(), self.every, &no_env).await?;
        tracing::info!(connection = %made.id, file = %file.display(), "connected from the console");
        let keeper = keeper_of(&made);
        self.connections
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(made);
        if let Some(keeper) = keeper {
            self.keepers.add(keeper);
        }
        Ok(Connected::Started {
            id: request.id.clone(),
        })
    }

    /// `read` over connection `id`'s view and database; `None` when there
    /// is no such connection, or nothing stored yet.
    fn browse<T>(
        &self,
        id: &str,
        read: impl FnOnce(&Configured, ConnectionView, &Store) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let Some(c) = self.find(id) else {
            return Ok(None);
        };
        let Some(store) = self.store(&c)? else {
            return Ok(None);
        };
        let view = self.view(&c, Some(&store))?;
        read(&c, view, &store)
    }

    /// What its database (none before its first sync) and its schedule say of `c`.
    fn view(&self, c: &Configured, store: Option<&Store>) -> Result<ConnectionView> {
        let mut view = self.configured_view(c);
        if let Some(store) = store {
            add_stored(&mut view, c, store)?;
        }
        Ok(view)
    }

    /// `c` as its file and its schedule say, before its database is read.
    fn configured_view(&self, c: &Configured) -> ConnectionView {
        ConnectionView {
            id: c.id.clone(),
            name: c.name.clone(),
            connector: c.connector.clone(),
            endpoint: c.endpoint.clone(),
            health: None,
            last_sync: None,
            streams: Vec::new(),
            problem: c.problem.clone(),
            unreadable: None,
            schedule: self.keepers.find(&c.id).map(|k| schedule_view(&k)),
        }
    }

    /// `c`'s line of the overview. A database that cannot be read now (a
    /// PostgreSQL server out of reach) is said on that line, and the other
    /// connections are shown as usual.
    fn overview_of(&self, c: &Configured) -> ConnectionView {
        let mut view = self.configured_view(c);
        let read = self.store(c).and_then(|store| match store {
            Some(store) => add_stored(&mut view, c, &store),
            None => Ok(()),
        });
        if let Err(e) = read {
            view.unreadable = Some(format!("{e:#}"));
        }
        view
    }

    /// The connection's database, when it exists (not before its first
    /// sync), for this page alone: a store of the connection's pool
    /// ([`StorePool`]), kept open between pages (a PostgreSQL connection is
    /// not made per page view), another opened while a search holds the
    /// first.
    ///
    /// Opened outside the lock of the open stores: a database slow to
    /// answer (a PostgreSQL server behind a firewall that drops packets
    /// waits out its connect time-out) holds up its own connection's pages
    /// only.
    fn store(&self, c: &Configured) -> Result<Option<Checkout>> {
        let pool = self
            .stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(c.id.clone())
            .or_default()
            .clone();
        pool.checkout(|| match c.database.as_ref().filter(|d| d.exists()) {
            Some(database) => database.open().map(Some),
            None => Ok(None),
        })
    }

    /// Every connection, as it stands now.
    fn all(&self) -> Vec<Configured> {
        self.connections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connection `id`.
    fn find(&self, id: &str) -> Option<Configured> {
        self.connections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|c| c.id == id)
            .cloned()
    }
}

/// Adds to `view` what `c`'s database says of it: its health, its last
/// finished sync and its streams' records.
fn add_stored(view: &mut ConnectionView, c: &Configured, store: &Store) -> Result<()> {
    view.health = store
        .health(&c.name)?
        .map(|(h, since)| health_view(h, since));
    let last = store
        .recent_runs(&c.name, 5)?
        .into_iter()
        .find(|run| run.finished_at.is_some() && run.report.is_some());
    let report: Option<RunReport> = last
        .as_ref()
        .and_then(|run| serde_json::from_str(run.report.as_deref()?).ok());
    if let (Some(run), Some(report)) = (&last, &report) {
        let finished_at = run.finished_at.clone().unwrap_or_default();
        view.last_sync = Some(LastSync {
            finished_unix: humantime::parse_rfc3339(&finished_at)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64),
            finished_at,
            seconds: report.seconds,
            requests: report.requests,
        });
    }
    view.streams = store
        .counts(&c.name)?
        .into_iter()
        .map(|(stream, live, _)| stream_view(stream, live, report.as_ref()))
        .collect();
    Ok(())
}

/// A stream's records and what its last sync met (retries by reason, rows
/// hidden by ACLs).
fn stream_view(stream: String, records: u64, report: Option<&RunReport>) -> StreamView {
    let partitions = report
        .into_iter()
        .flat_map(|r| &r.streams)
        .filter(|s| s.stream == stream)
        .flat_map(|s| &s.partitions);
    let mut retries: Vec<(String, u64)> = Vec::new();
    let mut hidden_by_acl = 0;
    for p in partitions {
        hidden_by_acl += p.hidden_by_acl.unwrap_or(0);
        for r in &p.retries {
            match retries.iter_mut().find(|(reason, _)| *reason == r.reason) {
                Some((_, n)) => *n += 1,
                None => retries.push((r.reason.clone(), 1)),
            }
        }
    }
    StreamView {
        stream,
        records,
        retries,
        hidden_by_acl,
    }
}
