//! One request at a time until the source accepts a run's credential, and
//! none after it rejects it.
//!
//! A run starts every partition of every stream at once: twelve requests
//! with the defaults. With a mistyped password each is a failed login, and a
//! hardened ServiceNow instance locks the account out after five
//! (`glide.user.max_unlock_attempts`, "SNC User Lockout Check"): one sync
//! would lock the integration user out, and every later one would keep it
//! so. So until a read has succeeded, one read at a time is sent; once one
//! succeeds all go at once; once the component says the source rejected the
//! credentials (`unauthenticated`), no partition sends another request.
//!
//! The host does not look at HTTP statuses for this: which answer means
//! "bad credentials" is the source's business (NetBox says it with 403), and
//! the component says it with the contract's `unauthenticated` case.

use connector_sandbox::runtime::{CallError, ConnectorError};
use tokio::sync::watch;

/// What a run knows of its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    /// No read has succeeded yet; `testing` while one is in flight.
    Untested { testing: bool },
    /// A read succeeded.
    Accepted,
    /// A read was refused as unauthenticated: the component's message.
    Rejected(String),
}

/// The run's knowledge of its credential, shared by its partitions.
#[derive(Debug)]
pub(crate) struct CredentialGate {
    known: watch::Sender<Known>,
}

impl Default for CredentialGate {
    fn default() -> Self {
        CredentialGate {
            known: watch::Sender::new(Known::Untested { testing: false }),
        }
    }
}

/// Leave to send one read; [`Admission::settle`] with its outcome.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    gate: &'a CredentialGate,
    /// This read tests the credential (no read has succeeded before it).
    testing: bool,
}

impl CredentialGate {
    /// Waits until a read may be sent: at once when a read has succeeded,
    /// else when no other read is testing the credential. Fails with the
    /// component's message once the source rejected the credential.
    pub(crate) async fn admit(&self) -> Result<Admission<'_>, String> {
        let mut changes = self.known.subscribe();
        loop {
            let mut decided = None;
            self.known.send_if_modified(|known| match known {
                Known::Accepted => {
                    decided = Some(Ok(false));
                    false
                }
                Known::Rejected(message) => {
                    decided = Some(Err(message.clone()));
                    false
                }
                Known::Untested { testing: false } => {
                    *known = Known::Untested { testing: true };
                    decided = Some(Ok(true));
                    false
                }
                Known::Untested { testing: true } => false,
            });
            match decided {
                Some(Ok(testing)) => {
                    return Ok(Admission {
                        gate: self,
                        testing,
                    })
                }
                Some(Err(message)) => return Err(message),
                // The sender lives as long as `self`: this cannot fail.
                None => changes
                    .changed()
                    .await
                    .expect("the gate outlives its waits"),
            }
        }
    }

    /// Records what a read said of the credential and wakes the partitions
    /// waiting for it (`testing`: the read was the one testing it).
    fn learn(&self, said: Said<'_>, testing: bool) {
        self.known.send_if_modified(|known| {
            let next = match (said, &*known) {
                (_, Known::Rejected(_)) => return false,
                (Said::Rejected(message), _) => Known::Rejected(message.to_string()),
                (Said::Accepted, _) => Known::Accepted,
                (Said::Nothing, Known::Untested { .. }) if testing => {
                    Known::Untested { testing: false }
                }
                (Said::Nothing, _) => return false,
            };
            let changed = *known != next;
            *known = next;
            changed
        });
    }
}

/// What one read says of the credential.
#[derive(Debug, Clone, Copy)]
enum Said<'a> {
    /// It succeeded.
    Accepted,
    /// The component said `unauthenticated`, with this message.
    Rejected(&'a str),
    /// It failed otherwise (or never ended): the credential is untested.
    Nothing,
}

impl<'a> Said<'a> {
    fn of<T>(outcome: &'a Result<T, CallError>) -> Said<'a> {
        match outcome {
            Ok(_) => Said::Accepted,
            Err(CallError::Connector(ConnectorError::Unauthenticated(message))) => {
                Said::Rejected(message)
            }
            Err(_) => Said::Nothing,
        }
    }
}

impl Admission<'_> {
    /// Tells the gate how the read ended.
    pub(crate) fn settle<T>(mut self, outcome: &Result<T, CallError>) {
        self.gate.learn(Said::of(outcome), self.testing);
        self.testing = false;
    }
}

impl Drop for Admission<'_> {
    /// A read dropped before its outcome (its task aborted) leaves the
    /// credential untested for the next one.
    fn drop(&mut self) {
        if self.testing {
            self.gate.learn(Said::Nothing, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    fn ready<F: Future>(f: F) -> Option<F::Output> {
        let mut f = std::pin::pin!(f);
        match f
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
        {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    fn refused() -> Result<(), CallError> {
        Err(CallError::Connector(ConnectorError::Unauthenticated(
            "check the password".into(),
        )))
    }

    fn unavailable() -> Result<(), CallError> {
        Err(CallError::Connector(
            ConnectorError::TemporarilyUnavailable("503".into()),
        ))
    }

    #[test]
    fn one_read_tests_the_credential_and_a_success_lets_every_read_go() {
        let gate = CredentialGate::default();
        let first = ready(gate.admit()).unwrap().unwrap();
        assert!(
            ready(gate.admit()).is_none(),
            "a second read waits for the first"
        );
        first.settle(&Ok::<(), CallError>(()));
        let (a, b) = (ready(gate.admit()), ready(gate.admit()));
        assert!(a.is_some() && b.is_some(), "after a success none waits");
    }

    #[test]
    fn a_rejection_stops_every_read_and_a_later_success_does_not_undo_it() {
        let gate = CredentialGate::default();
        ready(gate.admit()).unwrap().unwrap().settle(&refused());
        assert_eq!(
            ready(gate.admit()).unwrap().unwrap_err(),
            "check the password"
        );
        gate.learn(Said::Accepted, false);
        assert!(ready(gate.admit()).unwrap().is_err());
    }

    #[test]
    fn a_rejection_after_an_acceptance_stops_every_read() {
        // The password changed, or the token was revoked, during the run.
        let gate = CredentialGate::default();
        ready(gate.admit())
            .unwrap()
            .unwrap()
            .settle(&Ok::<(), CallError>(()));
        ready(gate.admit()).unwrap().unwrap().settle(&refused());
        assert!(ready(gate.admit()).unwrap().is_err());
    }

    #[test]
    fn another_failure_or_an_abandoned_read_passes_the_test_to_the_next_read() {
        let gate = CredentialGate::default();
        ready(gate.admit()).unwrap().unwrap().settle(&unavailable());
        let second = ready(gate.admit()).unwrap().unwrap();
        assert!(ready(gate.admit()).is_none());
        drop(second);
        assert!(
            ready(gate.admit()).is_some(),
            "an abandoned test frees the gate"
        );
    }

    #[tokio::test]
    async fn waiting_reads_wake_when_the_test_ends() {
        let gate = Arc::new(CredentialGate::default());
        let first = gate.admit().await.unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.admit().await.map(|_| ()) })
            })
            .collect();
        first.settle(&refused());
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap().unwrap_err(), "check the password");
        }
    }
}
