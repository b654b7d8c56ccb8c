//! Cancelling the statement a session runs, from another thread: a stopped
//! sync's commit that waits for another session's lock ends at once,
//! instead of when the lock goes or at `statement_timeout`.

use super::connect::PostgresTarget;
use postgres::{CancelToken, Client};
use std::sync::{Arc, Mutex};

/// The cancel token of a store's current session (replaced when the store
/// connects again) and how to reach its server.
pub(crate) struct CancelSlot {
    token: Mutex<CancelToken>,
    target: PostgresTarget,
}

impl CancelSlot {
    /// The slot of `client`'s session.
    pub(crate) fn of(client: &Client, target: &PostgresTarget) -> Arc<CancelSlot> {
        Arc::new(CancelSlot {
            token: Mutex::new(client.cancel_token()),
            target: target.clone(),
        })
    }

    /// From now on, cancels `client`'s statements (a new session).
    pub(crate) fn replace(&self, client: &Client) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = client.cancel_token();
    }

    /// Asks the server to cancel the statement the session runs now, if
    /// any. A cancel request is a connection of its own, to a server that
    /// may not answer: it is sent from a thread of its own, and nobody
    /// waits for it.
    pub(crate) fn cancel(&self) {
        let token = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let target = self.target.clone();
        let sent = std::thread::Builder::new()
            .name("postgres-cancel".into())
            .spawn(move || {
                if let Err(e) = target.cancel(&token) {
                    tracing::debug!("cancelling a statement failed: {e}");
                }
            });
        if let Err(e) = sent {
            tracing::debug!("cannot start cancelling a statement: {e}");
        }
    }
}
