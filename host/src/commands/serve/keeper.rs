//! Keeping each connection in sync while `serve` runs: `run --every`'s
//! loop per connection (the same back-off after failures that pass by
//! themselves), woken early by "Sync now", ended by "Disconnect".

use crate::commands::schedule::next_sync_delay;
use crate::commands::sync::{sync, SyncFlags};
use crate::database::StoreLocation;
use anyhow::{Context as _, Result};
use connector_engine::progress::Progress;
use connector_sandbox::secrets::Environment;
use connector_sandbox::stop::StopSignal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// Where a connection's schedule stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeeperState {
    /// A sync is running.
    pub running: bool,
    /// When the next one starts (none while one runs, and after a
    /// configuration error, which only "Sync now" retries).
    pub next_run: Option<SystemTime>,
    /// Disconnected: no more syncs; what happened to its records.
    pub disconnected: Option<String>,
    /// The running sync's progress, per stream.
    pub progress: Vec<StreamTally>,
}

/// One stream of a running sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamTally {
    /// The stream.
    pub stream: String,
    /// Records committed so far.
    pub records: u64,
    /// What the server counted, when it said.
    pub expected: Option<u64>,
    /// How it ended, once it did.
    pub verdict: Option<String>,
}

/// The sync engine's progress, kept for the console.
#[derive(Debug, Default)]
pub struct Tally(Mutex<Vec<StreamTally>>);

impl Tally {
    fn update(&self, stream: &str, change: impl FnOnce(&mut StreamTally)) {
        let mut streams = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let index = match streams.iter().position(|s| s.stream == stream) {
            Some(index) => index,
            None => {
                streams.push(StreamTally {
                    stream: stream.to_string(),
                    ..StreamTally::default()
                });
                streams.len() - 1
            }
        };
        change(&mut streams[index]);
    }

    /// Every stream so far.
    pub fn snapshot(&self) -> Vec<StreamTally> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn reset(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl Progress for Tally {
    fn expect(&self, stream: &str, rows: u64) {
        self.update(stream, |s| {
            s.expected = Some(s.expected.unwrap_or(0) + rows)
        });
    }
    fn committed(&self, stream: &str, records: u64) {
        self.update(stream, |s| s.records += records);
    }
    fn finished(&self, stream: &str, verdict: &str) {
        self.update(stream, |s| s.verdict = Some(verdict.to_string()));
    }
}

/// Where a connection's data lives, for "Disconnect".
#[derive(Debug, Clone)]
pub struct Stored {
    /// The connection's name in the database.
    pub connection: String,
    /// The database.
    pub database: StoreLocation,
}

/// The schedule of one connection.
#[derive(Debug)]
pub struct Keeper {
    /// The connection's identifier (its file's stem).
    pub id: String,
    file: PathBuf,
    stored: Stored,
    every: Duration,
    state: Mutex<KeeperState>,
    wake: Notify,
    /// "Sync now" was asked since the running sync started: the state stays
    /// `running` between the two syncs.
    requested: AtomicBool,
    /// Ends the loop (and a sync in flight, after its pages): `serve`
    /// stopping, or "Disconnect".
    stop: Arc<StopSignal>,
    /// "Disconnect" was asked, and whether to delete the records.
    disconnect: Mutex<Option<bool>>,
    /// The running sync's progress.
    tally: Arc<Tally>,
}

impl Keeper {
    /// The schedule of the connection configured in `file`, every `every`.
    /// It is `running` from the start: its loop syncs at once, and a page
    /// shown before the loop begins must follow that sync.
    pub fn new(id: String, file: PathBuf, stored: Stored, every: Duration) -> Keeper {
        Keeper {
            id,
            file,
            stored,
            every,
            state: Mutex::new(KeeperState {
                running: true,
                ..KeeperState::default()
            }),
            wake: Notify::new(),
            requested: Default::default(),
            stop: Arc::default(),
            disconnect: Mutex::new(None),
            tally: Arc::default(),
        }
    }

    /// Ends the loop: a sync in flight stops after its pages.
    pub fn stop(&self) {
        self.stop.trigger();
    }

    /// Disconnects the connection: its file is renamed `….toml.disconnected`
    /// at once (a restart does not take it up again), the loop ends after
    /// the pages in flight, then its records are deleted if asked.
    pub fn disconnect(&self, delete_records: bool) -> Result<()> {
        let mut renamed = self.file.clone().into_os_string();
        renamed.push(".disconnected");
        std::fs::rename(&self.file, &renamed).with_context(|| {
            format!(
                "cannot rename {} to take it out of the schedule",
                self.file.display()
            )
        })?;
        *self.disconnect.lock().unwrap_or_else(|p| p.into_inner()) = Some(delete_records);
        self.stop.trigger();
        Ok(())
    }

    /// After the loop: what "Disconnect" asked for.
    fn finish_disconnect(&self) {
        let Some(delete) = *self.disconnect.lock().unwrap_or_else(|p| p.into_inner()) else {
            return;
        };
        let outcome = if delete {
            match self.delete_records() {
                Ok(n) => format!("Disconnected; its {n} records were deleted"),
                Err(e) => {
                    tracing::error!(connection = %self.id, "deleting the records failed: {e:#}");
                    format!("Disconnected; deleting its records failed: {e:#}")
                }
            }
        } else {
            "Disconnected; its records are kept".to_string()
        };
        self.set(KeeperState {
            disconnected: Some(outcome),
            ..KeeperState::default()
        });
    }

    fn delete_records(&self) -> Result<u64> {
        let mut store = self.stored.database.open()?;
        Ok(store.delete_connection(&self.stored.connection)?)
    }

    /// Where the schedule stands (with the progress of a running sync).
    pub fn state(&self) -> KeeperState {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if state.running {
            state.progress = self.tally.snapshot();
        }
        state
    }

    fn set(&self, state: KeeperState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// The state after a sync: when the next one starts. Unless "Sync now"
    /// was asked while it ran: then the next sync follows at once (the wake
    /// is already notified) and the state stays `running`. Read under the
    /// state's lock, which `sync_now` holds while it asks.
    fn end_sync(&self, delay: Option<Duration>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !self.requested.load(Ordering::SeqCst) {
            *state = KeeperState {
                next_run: delay.map(|d| SystemTime::now() + d),
                ..KeeperState::default()
            };
        }
    }

    /// Starts a sync now, or right after the one running. The state says
    /// `running` at once, so that the page the operator sees next follows
    /// the sync even before the loop has woken.
    pub fn sync_now(&self) {
        {
            // Under the state's lock, as the loop reads it when a sync ends.
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            self.requested.store(true, Ordering::SeqCst);
            if state.disconnected.is_none() {
                state.running = true;
                state.next_run = None;
            }
        }
        self.wake.notify_one();
    }

    /// Syncs at once, then every `every` (sooner after temporary failures,
    /// at once when asked), until stopped or disconnected; a running sync
    /// then stops after its pages in flight.
    pub async fn keep(&self, env: &dyn Environment) {
        self.keep_syncing(env).await;
        self.finish_disconnect();
    }

    async fn keep_syncing(&self, env: &dyn Environment) {
        let stop = &self.stop;
        let mut temporary_failures = 0u32;
        loop {
            self.requested.store(false, Ordering::SeqCst);
            self.tally.reset();
            self.set(KeeperState {
                running: true,
                ..KeeperState::default()
            });
            let flags = SyncFlags {
                stop: stop.clone(),
                progress: Some(self.tally.clone()),
                ..Default::default()
            };
            let outcome = sync(&self.file, env, flags, &mut std::io::sink()).await;
            match &outcome {
                Ok(_) => tracing::info!(connection = %self.id, "sync complete"),
                Err(e) => tracing::warn!(connection = %self.id, "sync failed: {e:#}"),
            }
            let delay = next_sync_delay(&outcome, &mut temporary_failures, self.every);
            self.end_sync(delay);
            if stop.is_triggered() {
                return;
            }
            tokio::select! {
                _ = stop.triggered() => return,
                _ = self.wake.notified() => {}
                _ = sleep_or_forever(delay) => {}
            }
        }
    }
}

/// Sleeps `delay`, or forever when there is none.
async fn sleep_or_forever(delay: Option<Duration>) {
    match delay {
        Some(delay) => tokio::time::sleep(delay).await,
        None => std::future::pending().await,
    }
}

/// Every connection's schedule, and the way to start one more (a
/// connection made by "Connect").
#[derive(Debug)]
pub struct Keepers {
    list: std::sync::RwLock<Vec<Arc<Keeper>>>,
    /// Hands new schedules to the loop that runs them.
    start: tokio::sync::mpsc::UnboundedSender<Arc<Keeper>>,
    /// `serve` is stopping: a schedule added now stops at once.
    stopping: AtomicBool,
}

impl Keepers {
    /// No schedule yet; each one added is sent to `start`.
    pub fn new(start: tokio::sync::mpsc::UnboundedSender<Arc<Keeper>>) -> Keepers {
        Keepers {
            list: Default::default(),
            start,
            stopping: Default::default(),
        }
    }

    /// Adds `keeper` and has it run.
    pub fn add(&self, keeper: Arc<Keeper>) {
        self.list
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(keeper.clone());
        if self.stopping.load(Ordering::SeqCst) {
            keeper.stop();
        }
        // The loop ends only when `serve` stops; a schedule sent after that never runs.
        let _ = self.start.send(keeper);
    }

    /// The schedule of connection `id`.
    pub fn find(&self, id: &str) -> Option<Arc<Keeper>> {
        self.list
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|k| k.id == id)
            .cloned()
    }

    /// Stops every loop (the process is stopping).
    pub fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for keeper in self.list.read().unwrap_or_else(|p| p.into_inner()).iter() {
            keeper.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeper() -> Keeper {
        let stored = Stored {
            connection: "cmdb".into(),
            database: StoreLocation::Sqlite("cmdb.db".into()),
        };
        Keeper::new(
            "cmdb".into(),
            "cmdb.toml".into(),
            stored,
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn a_page_shown_right_after_connect_or_sync_now_sees_the_sync_running() {
        // A new schedule syncs at once: running before its loop begins.
        let keeper = keeper();
        assert!(keeper.state().running);
        // A sync ended; "Sync now" says running before the loop wakes.
        keeper.set(KeeperState {
            next_run: Some(SystemTime::now() + Duration::from_secs(3600)),
            ..KeeperState::default()
        });
        assert!(!keeper.state().running);
        keeper.sync_now();
        let state = keeper.state();
        assert!(state.running, "{state:?}");
        assert_eq!(state.next_run, None);
        // Asked while a sync ran: when it ends, the state stays running
        // until the next one starts.
        keeper.end_sync(Some(Duration::from_secs(3600)));
        assert!(keeper.state().running);
        // Not asked: the state says when the next one starts.
        keeper.requested.store(false, Ordering::SeqCst);
        keeper.end_sync(Some(Duration::from_secs(3600)));
        let state = keeper.state();
        assert!(!state.running && state.next_run.is_some(), "{state:?}");
        // A disconnected schedule stays disconnected.
        keeper.set(KeeperState {
            disconnected: Some("Disconnected; its records are kept".into()),
            ..KeeperState::default()
        });
        keeper.sync_now();
        assert!(!keeper.state().running);
    }

    #[test]
    fn the_tally_keeps_each_streams_progress_in_the_order_they_start() {
        let tally = Tally::default();
        tally.expect("devices", 60);
        tally.committed("devices", 20);
        tally.committed("adapters", 5);
        tally.expect("devices", 40);
        tally.committed("devices", 30);
        tally.finished("adapters", "complete");
        let seen = tally.snapshot();
        assert_eq!(
            seen,
            vec![
                StreamTally {
                    stream: "devices".into(),
                    records: 50,
                    expected: Some(100),
                    verdict: None
                },
                StreamTally {
                    stream: "adapters".into(),
                    records: 5,
                    expected: None,
                    verdict: Some("complete".into())
                },
            ]
        );
        tally.reset();
        assert!(tally.snapshot().is_empty());
    }
}
