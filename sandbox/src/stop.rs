//! Stopping a sync: a signal that any wait can await.
//!
//! SIGINT and SIGTERM trigger it (the binary's `main` installs the handlers;
//! the library never does). Every wait of a run, for a rate budget, a
//! `Retry-After` or the next scheduled sync, ends as soon as it is
//! triggered; partitions stop after the page they committed last.

use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Set once; wakes every waiter.
#[derive(Debug, Default)]
pub struct StopSignal {
    /// When it was first triggered (unset until then).
    at: OnceLock<Instant>,
    wake: Notify,
}

impl StopSignal {
    /// Stops the run: current and future waits end at once.
    pub fn trigger(&self) {
        self.at.get_or_init(Instant::now);
        self.wake.notify_waiters();
    }

    /// When the run was stopped (the first trigger), if it was.
    pub fn triggered_at(&self) -> Option<Instant> {
        self.at.get().copied()
    }

    /// Whether the run was stopped.
    pub fn is_triggered(&self) -> bool {
        self.at.get().is_some()
    }

    /// Returns once the run is stopped.
    pub async fn triggered(&self) {
        loop {
            let notified = self.wake.notified();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps for `duration` unless stopped first; `true` when stopped.
    pub async fn sleep(&self, duration: Duration) -> bool {
        self.sleep_until(tokio::time::Instant::now() + duration)
            .await
    }

    /// Sleeps until `deadline` unless stopped first; `true` when stopped.
    pub async fn sleep_until(&self, deadline: tokio::time::Instant) -> bool {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => self.is_triggered(),
            _ = self.triggered() => true,
        }
    }
}

/// Triggers `stop` on SIGINT or SIGTERM (for the binary's `main`: the
/// handlers stay installed for the rest of the process).
pub fn on_signals(stop: std::sync::Arc<StopSignal>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        stop.trigger();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_a_long_wait_at_once() {
        let stop = std::sync::Arc::new(StopSignal::default());
        let waiter = {
            let stop = stop.clone();
            tokio::spawn(async move { stop.sleep(Duration::from_secs(300)).await })
        };
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        stop.trigger();
        assert!(waiter.await.unwrap(), "the wait saw the stop");
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(
            stop.sleep(Duration::from_secs(1)).await,
            "later waits end at once too"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_knows_when_it_was_first_triggered() {
        let stop = StopSignal::default();
        assert_eq!(stop.triggered_at(), None);
        let first = tokio::time::Instant::now();
        stop.trigger();
        tokio::time::advance(Duration::from_secs(3)).await;
        stop.trigger();
        assert_eq!(stop.triggered_at(), Some(first));
    }
}
