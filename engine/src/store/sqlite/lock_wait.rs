//! Waiting for another connection's write lock, and ending that wait when
//! a stop cancels the connection's statement.
//!
//! SQLite's own busy handler (`busy_timeout`) sleeps until the lock is
//! free or the time is up, and `sqlite3_interrupt` does not end that
//! sleep: a stopped sync whose commit waited behind another process's
//! write lock (a `sqlite3` shell, a backup, another host's sync finishing
//! a stream) held its stop for up to [`BUSY_TIMEOUT`]. The handler here
//! pauses as SQLite's does, but first asks whether the statement was
//! interrupted ([`StatementCanceller`](crate::store::StatementCanceller)),
//! and if so gives up at once: the statement fails with `SQLITE_BUSY`,
//! having written nothing.
//!
//! SQLite calls the handler with the connection's handle as its argument,
//! valid while the connection is open: it is only ever called on that
//! connection, from the thread running one of its statements.

use rusqlite::{ffi, Connection};
use std::os::raw::{c_int, c_void};
use std::time::Duration;

/// How long a statement waits for another connection's lock on the file
/// (another process, or another store of this one) before it fails.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// SQLite's own pauses between tries, in milliseconds: 1, 2, 5 … then
/// 100 ms each (`sqliteDefaultBusyCallback`). A stop is noticed at the
/// next try, so at most 100 ms after it.
const PAUSES_MS: [u64; 12] = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];

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
unsafe extern "C" fn wait_unless_interrupted(db: *mut c_void, attempt: c_int) -> c_int {
    // SAFETY: `db` is the handle `install` registered this handler with;
    // SQLite calls the handler only during that connection's statements,
    // while it is open.
    if unsafe { ffi::sqlite3_is_interrupted(db.cast()) } != 0 {
        return 0;
    }
    #[cfg(test)]
    waits::record(db as usize);
    match pause_before_next_try(u32::try_from(attempt).unwrap_or(0), BUSY_TIMEOUT) {
        Some(pause) => {
            std::thread::sleep(pause);
            1
        }
        None => 0,
    }
}

/// Makes `conn` wait up to [`BUSY_TIMEOUT`] for another connection's
/// lock, unless its statement is interrupted.
pub(super) fn install(conn: &Connection) -> rusqlite::Result<()> {
    // SAFETY: the handler is given the connection's own handle, which
    // outlives every call SQLite makes of it (see the module's doc); the
    // handler neither panics nor unwinds.
    let code = unsafe {
        let db = conn.handle();
        ffi::sqlite3_busy_handler(db, Some(wait_unless_interrupted), db.cast())
    };
    match code {
        ffi::SQLITE_OK => Ok(()),
        code => Err(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)),
    }
}

/// Which connections have waited for a lock, for tests that must know
/// that a statement waits before they let the lock go.
#[cfg(test)]
pub(super) mod waits {
    use rusqlite::Connection;
    use std::collections::HashSet;
    use std::sync::Mutex;

    /// The handles of the connections whose busy handler was called.
    static WAITED: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

    /// A connection's handle, by which it is known here.
    pub(in crate::store::sqlite) fn handle(conn: &Connection) -> usize {
        // SAFETY: only the handle's address is taken, never used.
        unsafe { conn.handle() as usize }
    }

    /// Forgets what `handle` waited for: a new connection may have the
    /// handle of one closed before.
    pub(in crate::store::sqlite) fn forget(handle: usize) {
        if let Some(waited) = WAITED.lock().unwrap().as_mut() {
            waited.remove(&handle);
        }
    }

    /// Whether the connection of `handle` has waited for a lock.
    pub(in crate::store::sqlite) fn has_waited(handle: usize) -> bool {
        WAITED
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|waited| waited.contains(&handle))
    }

    pub(super) fn record(handle: usize) {
        if let Ok(mut waited) = WAITED.lock() {
            waited.get_or_insert_with(HashSet::new).insert(handle);
        }
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
