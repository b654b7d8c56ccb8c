//! Keeping each connection in sync while `serve` runs: `run --every`'s
//! loop per connection (the same back-off after failures that pass by
//! themselves), woken early by "Sync now".

use crate::commands::schedule::next_sync_delay;
use crate::commands::sync::{sync, SyncFlags};
use connector_sandbox::secrets::Environment;
use connector_sandbox::stop::StopSignal;
use std::path::PathBuf;
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
}

/// The schedule of one connection.
#[derive(Debug)]
pub struct Keeper {
    /// The connection's identifier (its file's stem).
    pub id: String,
    file: PathBuf,
    every: Duration,
    state: Mutex<KeeperState>,
    wake: Notify,
}

impl Keeper {
    /// The schedule of the connection configured in `file`, every `every`.
    pub fn new(id: String, file: PathBuf, every: Duration) -> Keeper {
        Keeper {
            id,
            file,
            every,
            state: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// Where the schedule stands.
    pub fn state(&self) -> KeeperState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, state: KeeperState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// Starts a sync now, or right after the one running.
    pub fn sync_now(&self) {
        self.wake.notify_one();
    }

    /// Syncs at once, then every `every` (sooner after temporary failures,
    /// at once when asked), until `stop` is triggered; a running sync then
    /// stops after its pages in flight.
    pub async fn keep(&self, env: &dyn Environment, stop: &Arc<StopSignal>) {
        let mut temporary_failures = 0u32;
        loop {
            self.set(KeeperState {
                running: true,
                next_run: None,
            });
            let flags = SyncFlags {
                stop: stop.clone(),
                ..Default::default()
            };
            let outcome = sync(&self.file, env, flags, &mut std::io::sink()).await;
            match &outcome {
                Ok(_) => tracing::info!(connection = %self.id, "sync complete"),
                Err(e) => tracing::warn!(connection = %self.id, "sync failed: {e:#}"),
            }
            let delay = next_sync_delay(&outcome, &mut temporary_failures, self.every);
            self.set(KeeperState {
                running: false,
                next_run: delay.map(|d| SystemTime::now() + d),
            });
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

/// Every connection's schedule.
#[derive(Debug, Default)]
pub struct Keepers(pub Vec<Arc<Keeper>>);

impl Keepers {
    /// The schedule of connection `id`.
    pub fn find(&self, id: &str) -> Option<&Arc<Keeper>> {
        self.0.iter().find(|k| k.id == id)
    }
}
