//! Connection attempts given up on, counted per database URL.
//!
//! [`connect`](super::connect) bounds the whole start-up by waiting for
//! its connecting thread with a time-out; the `postgres` crate offers no
//! way to stop that thread, which ends only when the server answers or
//! hangs up. A server that accepts connections and says nothing (a
//! connection pooler whose server is down, a port that is not
//! PostgreSQL's) kept one such thread for each attempt, and a worker or a
//! console retrying it every few seconds piled them up for as long as the
//! server stayed silent. So once [`MAX_ABANDONED`] attempts at one URL are
//! still waiting, the next is refused at once, with the same advice, until
//! one of them ends.
//!
//! Only attempts given up on count: a healthy server with many
//! connections starting at once is never refused.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// Attempts given up on whose threads may still wait on one URL before
/// the next attempt there is refused.
pub(crate) const MAX_ABANDONED: usize = 4;

/// Threads of given-up attempts still waiting, per database URL.
static WAITING: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);

/// How many given-up attempts at `url` still wait.
pub(crate) fn waiting_at(url: &str) -> usize {
    lock(&WAITING).get(url).copied().unwrap_or(0)
}

/// One connection attempt, shared by its thread and the caller waiting
/// for it: whichever of the two comes second settles the count.
#[derive(Clone)]
pub(crate) struct Attempt {
    url: Arc<str>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    ended: bool,
    abandoned: bool,
}

impl Attempt {
    /// A new attempt at `url`, or `None` when [`MAX_ABANDONED`] attempts
    /// there were given up on and still wait.
    pub(crate) fn start(url: &str) -> Option<Attempt> {
        (waiting_at(url) < MAX_ABANDONED).then(|| Attempt {
            url: url.into(),
            state: Arc::default(),
        })
    }

    /// The caller gives up on the attempt: it counts while its thread
    /// still waits.
    pub(crate) fn abandon(&self) {
        let mut state = lock(&self.state);
        if !state.ended && !state.abandoned {
            state.abandoned = true;
            *lock(&WAITING).entry(self.url.to_string()).or_default() += 1;
        }
    }

    /// The attempt's side its thread holds: the attempt ends when the
    /// thread drops it, whether the thread returns or panics.
    pub(crate) fn running(&self) -> Running {
        Running(self.clone())
    }

    /// The attempt's thread is done (connected, refused, or hung up on).
    fn end(&self) {
        let mut state = lock(&self.state);
        if state.ended {
            return;
        }
        state.ended = true;
        if state.abandoned {
            let mut waiting = lock(&WAITING);
            if let Some(count) = waiting.get_mut(&*self.url) {
                *count -= 1;
                if *count == 0 {
                    waiting.remove(&*self.url);
                }
            }
        }
    }
}

/// An [`Attempt`] as its connecting thread holds it.
pub(crate) struct Running(Attempt);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The mutex's value; a panic elsewhere while it was held leaves plain
/// counts behind, still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_attempts_given_up_on_and_still_waiting_count() {
        let url = "postgresql://only-given-up@127.0.0.1:1/db";
        let ended_first = Attempt::start(url).unwrap();
        drop(ended_first.running());
        ended_first.abandon();
        assert_eq!(
            waiting_at(url),
            0,
            "an attempt that ended before its time-out"
        );
        let waiting: Vec<Attempt> = (0..MAX_ABANDONED)
            .map(|_| Attempt::start(url).expect("below the bound"))
            .collect();
        for attempt in &waiting {
            attempt.abandon();
            attempt.abandon();
        }
        assert_eq!(waiting_at(url), MAX_ABANDONED);
        assert!(Attempt::start(url).is_none(), "refused at the bound");
        assert!(Attempt::start("postgresql://another@127.0.0.1:1/db").is_some());
        let running: Vec<Running> = waiting.iter().map(Attempt::running).collect();
        let mut running = running.into_iter();
        drop(running.next());
        waiting[0].end(); // Ended twice: counted off once.
        assert_eq!(waiting_at(url), MAX_ABANDONED - 1);
        assert!(Attempt::start(url).is_some(), "one ended: room again");
        drop(running);
        assert_eq!(waiting_at(url), 0);
    }
}
