//! The console's open databases: a few stores per connection, so that one
//! page's long read (a search reads every record of a stream: 0.3–0.4 s on
//! SQLite at 100k devices, 0.8–1.1 s on PostgreSQL) does not hold up the
//! other pages of its connection. A [`Store`] serializes its calls (a
//! SQLite connection and a PostgreSQL client each serve one at a time).
//!
//! Why not `r2d2`: its pool opens connections on a thread of its own and
//! retries a failed open every 200 ms and more until the checkout's
//! time-out, then returns "timed out waiting for connection" with the last
//! error as text. A database that refuses the login, or is out of reach,
//! would hold every page of its connection for the whole time-out (30 s by
//! default) where this pool answers at the first refusal, and the error's
//! kind would be lost. What is needed here is small: reuse one store, open
//! another while all are busy, up to [`MOST_OPEN`].

use anyhow::{anyhow, Result};
use connector_engine::store::Store;
use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Stores open at once for one connection, at most. Each is a PostgreSQL
/// connection when the database is PostgreSQL: the console's share of
/// the server's `max_connections` (100 by default) stays small.
pub(super) const MOST_OPEN: usize = 3;

/// Idle stores kept open for a connection; more are closed when returned,
/// so that a burst of reads leaves one connection open, as before it.
const MOST_IDLE: usize = 1;

/// How long a read waits for a store when [`MOST_OPEN`] are busy.
const WAIT_FOR_A_STORE: Duration = Duration::from_secs(60);

/// How long a database that could not be opened is said to be so without
/// trying again: a PostgreSQL server behind a firewall that drops packets
/// costs each try its connect time-out (10 s), and the overview tries
/// every connection's database.
const FAILURE_HELD: Duration = Duration::from_secs(30);

/// The open stores of one connection's database.
pub(super) struct StorePool {
    state: Mutex<PoolState>,
    returned: Condvar,
    /// How long a failure to open is answered without trying again.
    failure_held: Duration,
}

impl Default for StorePool {
    fn default() -> Self {
        StorePool {
            state: Mutex::default(),
            returned: Condvar::new(),
            failure_held: FAILURE_HELD,
        }
    }
}

#[derive(Default)]
struct PoolState {
    /// Stores open and not in use.
    idle: Vec<Store>,
    /// Stores open, in use or idle, and being opened.
    open: usize,
    /// Reads waiting for a store to come back.
    waiting: usize,
    /// The last failure to open a store, and when; none since one opened.
    failed: Option<(Instant, String)>,
}

/// A store taken from a [`StorePool`]; it goes back when dropped.
pub(super) struct Checkout {
    pool: Arc<StorePool>,
    store: Option<Store>,
}

impl Deref for Checkout {
    type Target = Store;

    fn deref(&self) -> &Store {
        self.store
            .as_ref()
            .expect("a checkout holds its store until dropped")
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            self.pool.give_back(store);
        }
    }
}

impl StorePool {
    /// An idle store, or one `open` makes while fewer than [`MOST_OPEN`] are
    /// open (outside the pool's lock: a database slow to answer holds up
    /// only the pages waiting for it), or the first returned within
    /// [`WAIT_FOR_A_STORE`]. `open` gives `None` when there is no database
    /// yet (before the first sync); then so does this. Within
    /// [`FAILURE_HELD`] of a failure to open, that failure is the answer.
    pub(super) fn checkout(
        self: &Arc<Self>,
        open: impl FnOnce() -> Result<Option<Store>>,
    ) -> Result<Option<Checkout>> {
        let mut state = self.lock();
        let deadline = Instant::now() + WAIT_FOR_A_STORE;
        loop {
            if let Some(store) = state.idle.pop() {
                return Ok(Some(self.lend(store)));
            }
            if let Some(failure) = self.held_failure(&state) {
                return Err(failure);
            }
            if state.open < MOST_OPEN {
                state.open += 1;
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(anyhow!(
                    "{MOST_OPEN} reads of this connection's database have been in progress for {} s; try again once they end",
                    WAIT_FOR_A_STORE.as_secs()
                ));
            }
            state.waiting += 1;
            state = self
                .returned
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            state.waiting -= 1;
        }
        drop(state);
        let opened = open();
        let mut state = self.lock();
        match opened {
            Ok(Some(store)) => {
                state.failed = None;
                drop(state);
                Ok(Some(self.lend(store)))
            }
            unopened => {
                state.open -= 1;
                if let Err(e) = &unopened {
                    state.failed = Some((Instant::now(), format!("{e:#}")));
                }
                drop(state);
                self.returned.notify_one();
                unopened.map(|_| None)
            }
        }
    }

    /// The failure to open a store, while it is held.
    fn held_failure(&self, state: &PoolState) -> Option<anyhow::Error> {
        let (at, reason) = state.failed.as_ref()?;
        let ago = at.elapsed();
        (ago < self.failure_held).then(|| {
            anyhow!(
                "{reason} (seen {} s ago; the console tries the database again {} s after a failure)",
                ago.as_secs(),
                self.failure_held.as_secs()
            )
        })
    }

    /// Stores open for the connection now, in use or idle.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().open
    }

    /// Reads waiting for a store now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting
    }

    fn lend(self: &Arc<Self>, store: Store) -> Checkout {
        Checkout {
            pool: self.clone(),
            store: Some(store),
        }
    }

    /// Keeps `store` for the next read, or closes it when enough are idle.
    fn give_back(&self, store: Store) {
        let mut state = self.lock();
        if state.idle.len() < MOST_IDLE {
            state.idle.push(store);
        } else {
            state.open -= 1;
            drop(state);
            drop(store);
        }
        self.returned.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool over one SQLite file in `dir`, and its opener.
    fn opener(dir: &tempfile::TempDir) -> impl Fn() -> Result<Option<Store>> + Clone + '_ {
        move || Ok(Some(Store::open(&dir.path().join("console.db"))?))
    }

    /// Each read in progress has a store of its own, up to [`MOST_OPEN`]:
    /// a long search does not hold up the connection's other pages.
    #[test]
    fn reads_in_progress_each_have_a_store_and_one_stays_open_after() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Arc::new(StorePool::default());
        let busy: Vec<Checkout> = (0..MOST_OPEN)
            .map(|_| pool.checkout(opener(&dir)).unwrap().unwrap())
            .collect();
        assert_eq!(pool.open(), MOST_OPEN);
        let stores: Vec<*const Store> = busy.iter().map(|c| &**c as *const Store).collect();
        for (i, a) in stores.iter().enumerate() {
            assert!(stores[i + 1..].iter().all(|b| a != b), "a store lent twice");
        }
        drop(busy);
        assert_eq!(
            pool.open(),
            MOST_IDLE,
            "the burst's extra stores are closed"
        );
        // The idle store is lent again, not a new one opened.
        let again = pool
            .checkout(|| panic!("opened a store while one was idle"))
            .unwrap()
            .unwrap();
        assert_eq!(pool.open(), 1);
        drop(again);
    }

    /// A store returned while every store is busy goes to the read waiting
    /// for one.
    #[test]
    fn a_read_past_the_limit_waits_for_a_store_to_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Arc::new(StorePool::default());
        let mut busy: Vec<Checkout> = (0..MOST_OPEN)
            .map(|_| pool.checkout(opener(&dir)).unwrap().unwrap())
            .collect();
        let waiting = {
            let pool = pool.clone();
            std::thread::spawn(move || {
                pool.checkout(|| panic!("opened past the limit"))
                    .map(|s| s.is_some())
            })
        };
        while pool.waiting() == 0 {
            assert!(!waiting.is_finished(), "{:?}", waiting.join());
            std::thread::yield_now();
        }
        busy.pop();
        assert!(waiting.join().unwrap().unwrap());
        assert_eq!(pool.open(), MOST_OPEN);
    }

    /// No database yet, or one that cannot be opened: nothing stays
    /// counted as open, and the error is the opener's own.
    #[test]
    fn a_store_that_cannot_be_opened_is_not_counted() {
        let pool = Arc::new(StorePool::default());
        assert!(pool.checkout(|| Ok(None)).unwrap().is_none());
        let refused = pool
            .checkout(|| Err(anyhow!("password authentication failed")))
            .err()
            .unwrap();
        assert_eq!(refused.to_string(), "password authentication failed");
        assert_eq!(pool.open(), 0);
    }

    /// A database that could not be opened is not tried again by every
    /// page: for [`FAILURE_HELD`] each is told the failure at once.
    #[test]
    fn a_failure_to_open_is_the_answer_until_it_is_tried_again() {
        let unreachable = || Err(anyhow!("connection timed out"));
        let pool = Arc::new(StorePool::default());
        pool.checkout(unreachable).err().unwrap();
        let held = pool
            .checkout(|| panic!("tried again within the hold"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            held.starts_with("connection timed out (seen 0 s ago;"),
            "{held}"
        );
        // Once the hold is over, the next page tries again, and a store
        // that opens ends the failure.
        let dir = tempfile::tempdir().unwrap();
        let pool = Arc::new(StorePool {
            failure_held: Duration::ZERO,
            ..StorePool::default()
        });
        pool.checkout(unreachable).err().unwrap();
        let opened = pool.checkout(opener(&dir)).unwrap().unwrap();
        drop(opened);
        assert!(pool.lock().failed.is_none());
    }
}
