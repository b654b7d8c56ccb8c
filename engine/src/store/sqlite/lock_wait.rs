//! Waiting for another connection's write lock, and giving up waiting once
//! a stopped sync cancels the connection's statements.
//!
//! SQLite's own busy handler (`busy_timeout`) sleeps until the lock is
//! free or the time is up, and `sqlite3_interrupt` does not end that
//! sleep: a stopped sync whose commit waited behind another process's
//! write lock (a `sqlite3` shell, a backup, another host's sync finishing
//! a stream) held its stop for up to [`BUSY_TIMEOUT`], and each statement
//! after it as long again. The handler here pauses as SQLite's does, but
//! first asks whether the store's statements were cancelled
//! ([`StatementCanceller`](crate::store::StatementCanceller)), and from
//! then on gives up at once: the statement fails with `SQLITE_BUSY`,
//! having written nothing. A store is cancelled only once its sync was
//! stopped, so it never waits for a lock again.
//!
//! SQLite calls the handler with a pointer to the store's [`LockWait`],
//! which the store keeps for longer than its connection.

use rusqlite::{ffi, Connection, InterruptHandle};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a statement waits for another connection's lock on the file
/// (another process, or another store of this one) before it fails.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// SQLite's own pauses between tries, in milliseconds: 1, 2, 5 … then
/// 100 ms each (`sqliteDefaultBusyCallback`). A cancel is noticed at the
/// next try, so at most 100 ms after it.
const PAUSES_MS: [u64; 12] = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];

/// The state a store's busy handler reads: whether to wait at all.
#[derive(Debug, Default)]
pub(super) struct LockWait {
    /// Set by a cancel, never cleared: the store belongs to a stopped sync.
    given_up: AtomicBool,
    /// Whether the handler was ever called (a statement waited for a lock).
    #[cfg(test)]
    pub(super) waited: AtomicBool,
}

/// The pause before try `attempt + 1` (counting from 0), or `None` once
/// `timeout` has been waited.
fn pause_before_next_try(attempt: u32, timeout: Duration) -> Option<Duration> {
    let last = PAUSES_MS.len() - 1;
    let (pause, waited): (u64, u64) = match PAUSES_MS.get(attempt as usize) {
        Some(&pause) => (pause, PAUSES_MS[..attempt as usize].iter().sum()),
        None => {
            let waited = PAUSES_MS.iter().sum::<u64>() + PAUSES_MS[last] * u64::from(attempt - 12);
            (PAUSES_MS[last], waited)
        }
    };
    let left = (timeout.as_millis() as u64).checked_sub(waited)?;
    (left > 0).then(|| Duration::from_millis(pause.min(left)))
}

/// The busy handler: whether to try again, after a pause.
unsafe extern "C" fn wait_unless_given_up(state: *mut c_void, attempt: c_int) -> c_int {
    // SAFETY: `state` is the `LockWait` that `install` registered, which
    // the store keeps alive for longer than the connection calling this.
    let state = unsafe { &*state.cast::<LockWait>() };
    #[cfg(test)]
    state.waited.store(true, Ordering::SeqCst);
    if state.given_up.load(Ordering::SeqCst) {
        return 0;
    }
    match pause_before_next_try(u32::try_from(attempt).unwrap_or(0), BUSY_TIMEOUT) {
        Some(pause) => {
            std::thread::sleep(pause);
            1
        }
        None => 0,
    }
}

/// Makes `conn` wait up to [`BUSY_TIMEOUT`] for another connection's lock
/// unless `state` says to give up.
///
/// # Safety
///
/// `state` (the allocation the `Arc` points to) must outlive `conn`:
/// SQLite keeps a pointer to it and reads it whenever `conn` waits.
pub(super) unsafe fn install(conn: &Connection, state: &Arc<LockWait>) -> rusqlite::Result<()> {
    let state = Arc::as_ptr(state).cast_mut().cast::<c_void>();
    // SAFETY: the handler touches nothing but `state`'s atomics and
    // neither panics nor unwinds; `state` outlives `conn` (the caller's
    // promise).
    let code =
        unsafe { ffi::sqlite3_busy_handler(conn.handle(), Some(wait_unless_given_up), state) };
    match code {
        ffi::SQLITE_OK => Ok(()),
        code => Err(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)),
    }
}

/// Cancels a SQLite store's statements: the one running fails
/// (`sqlite3_interrupt`, its transaction rolled back), and from then on no
/// statement of the store waits for a lock.
pub(crate) struct SqliteCanceller {
    /// Interrupts the statement running now.
    interrupt: InterruptHandle,
    /// What the store's busy handler reads.
    state: Arc<LockWait>,
}

impl SqliteCanceller {
    /// The canceller of `conn`, whose busy handler reads `state`.
    pub(super) fn of(conn: &Connection, state: &Arc<LockWait>) -> SqliteCanceller {
        SqliteCanceller {
            interrupt: conn.get_interrupt_handle(),
            state: state.clone(),
        }
    }

    /// Cancels the statement running now and every later wait for a lock.
    pub(crate) fn cancel(&self) {
        self.state.given_up.store(true, Ordering::SeqCst);
        self.interrupt.interrupt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pauses_are_sqlites_and_end_at_the_timeout() {
        let pauses: Vec<u64> = (0..)
            .map_while(|attempt| pause_before_next_try(attempt, Duration::from_millis(500)))
            .map(|pause| pause.as_millis() as u64)
            .collect();
        assert_eq!(
            pauses,
            [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100, 100, 72],
            "the last pause is what is left of the timeout"
        );
        assert_eq!(pauses.iter().sum::<u64>(), 500);
        let waited: Duration = (0..)
            .map_while(|attempt| pause_before_next_try(attempt, BUSY_TIMEOUT))
            .sum();
        assert_eq!(waited, BUSY_TIMEOUT);
        assert_eq!(pause_before_next_try(u32::MAX, BUSY_TIMEOUT), None);
    }
}
