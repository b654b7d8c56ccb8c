//! One sync of a connection at a time on a database.
//!
//! Two processes syncing the same connection into the same database (a cron
//! `sync` that overlaps `serve`'s schedule, or the previous `sync` still
//! running) would read the same partitions at once, each moving the other's
//! cursors and sweeping for records its own read did not see. So a sync
//! first takes its connection's lock, which is released when the sync ends
//! or its process dies, however it dies:
//!
//! - SQLite: an exclusive `flock` on an empty file beside the database,
//!   `DATABASE.sync-CONNECTION.lock`, released by the kernel. The file stays
//!   (removing it would let two processes lock two different files).
//! - PostgreSQL: a session advisory lock on a session of its own, released
//!   by the server when that session ends ([`SYNC_LOCK_CLASS`]).

use super::StoreError;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// The first key of PostgreSQL's advisory locks of syncs ("SYNC"); the
/// second is `hashtext` of the connection's name.
pub(crate) const SYNC_LOCK_CLASS: i32 = 0x5359_4e43;

/// A connection's sync lock, held until dropped.
pub struct SyncLock {
    file: Option<File>,
    session: Option<postgres::Client>,
}

impl std::fmt::Debug for SyncLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncLock")
            .field("file", &self.file)
            .field("session", &self.session.is_some())
            .finish()
    }
}

impl SyncLock {
    /// No lock at all: for a private in-memory database, which no other
    /// process can open.
    pub(crate) fn private() -> SyncLock {
        SyncLock {
            file: None,
            session: None,
        }
    }

    /// The lock held by the PostgreSQL `session` (its advisory lock).
    pub(crate) fn session(session: postgres::Client) -> SyncLock {
        SyncLock {
            file: None,
            session: Some(session),
        }
    }
}

impl Drop for SyncLock {
    fn drop(&mut self) {
        // The session's client blocks on a runtime of its own as it closes;
        // the server releases the lock once it has.
        if let Some(session) = self.session.take() {
            super::outside_runtime(|| drop(session));
        }
    }
}

/// The lock file of `connection`'s syncs into the database file `database`.
pub(crate) fn lock_path(database: &Path, connection: &str) -> PathBuf {
    let name: String = connection
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut file = database.as_os_str().to_owned();
    file.push(format!(".sync-{name}.lock"));
    PathBuf::from(file)
}

/// Takes `connection`'s sync lock of the database file `database`; `None`
/// when another sync holds it.
pub(crate) fn lock(database: &Path, connection: &str) -> Result<Option<SyncLock>, StoreError> {
    let path = lock_path(database, connection);
    let failed = |source| StoreError::SyncLock {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(SyncLock {
            file: Some(file),
            session: None,
        })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_locked_once_until_its_lock_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("inventory.db");
        let held = lock(&database, "servicenow@host:443")
            .unwrap()
            .expect("free");
        assert!(lock(&database, "servicenow@host:443").unwrap().is_none());
        // Another connection of the same database has a lock of its own.
        let other = lock(&database, "netbox").unwrap();
        assert!(other.is_some());
        drop(held);
        assert!(lock(&database, "servicenow@host:443").unwrap().is_some());
        assert_eq!(
            lock_path(&database, "servicenow@host:443"),
            dir.path()
                .join("inventory.db.sync-servicenow_host_443.lock")
        );
    }
}
