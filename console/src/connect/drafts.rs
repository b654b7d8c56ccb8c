//! Secrets kept between "Test connection" and "Connect", so an operator
//! does not type a password twice, and the browser never gets it back.
//!
//! A draft is held in memory only, under a random identifier the form
//! carries; it belongs to the session that made it, serves only the same
//! connector, and is forgotten after [`DRAFT_LIFETIME`] or once the
//! connection is made.

use super::form::{ConnectRequest, SecretValue};
use crate::auth::{random_hex, Session};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a draft's secrets are kept.
pub const DRAFT_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Drafts kept at most (the oldest goes first).
const DRAFTS_KEPT: usize = 64;

struct Draft {
    /// The session's CSRF token: only that session may use the draft.
    owner: String,
    connector: String,
    /// (auth method, field) → secret.
    secrets: Vec<((String, String), SecretValue)>,
    made: Instant,
    /// Order of making (instants can be equal).
    serial: u64,
}

/// The drafts of every session.
#[derive(Clone, Default)]
pub struct Drafts(Arc<Mutex<HashMap<String, Draft>>>, Arc<AtomicU64>);

impl Drafts {
    /// Keeps `request`'s secrets for `session`; the draft's identifier,
    /// or `None` when there is nothing secret to keep.
    pub fn keep(&self, session: &Session, request: &ConnectRequest) -> Option<String> {
        let method = request.auth_method.clone()?;
        if request.secrets.is_empty() {
            return None;
        }
        let mut drafts = self.lock();
        drafts.retain(|_, d| d.made.elapsed() < DRAFT_LIFETIME);
        while drafts.len() >= DRAFTS_KEPT {
            let oldest = drafts
                .iter()
                .min_by_key(|(_, d)| d.serial)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => drafts.remove(&id),
                None => break,
            };
        }
        let id = random_hex();
        drafts.insert(
            id.clone(),
            Draft {
                owner: session.csrf.clone(),
                connector: request.connector.clone(),
                secrets: request
                    .secrets
                    .iter()
                    .map(|(field, value)| ((method.clone(), field.clone()), value.clone()))
                    .collect(),
                made: Instant::now(),
                serial: self.1.fetch_add(1, Ordering::Relaxed),
            },
        );
        Some(id)
    }

    /// Fills the secrets `request` leaves empty from draft `id`, when it is
    /// this session's, for this connector, and not expired; the names of
    /// the fields it filled.
    pub fn fill(&self, session: &Session, id: &str, request: &mut ConnectRequest) -> Vec<String> {
        let drafts = self.lock();
        let Some(draft) = drafts.get(id).filter(|d| {
            session.accepts(&d.owner)
                && d.connector == request.connector
                && d.made.elapsed() < DRAFT_LIFETIME
        }) else {
            return Vec::new();
        };
        let Some(method) = request.auth_method.clone() else {
            return Vec::new();
        };
        let mut filled = Vec::new();
        for ((m, field), value) in &draft.secrets {
            if *m == method && !request.secrets.iter().any(|(f, _)| f == field) {
                request.secrets.push((field.clone(), value.clone()));
                filled.push(field.clone());
            }
        }
        filled
    }

    /// Forgets draft `id` when it is `session`'s (it is replaced, or the
    /// connection is made); another session's draft is left alone.
    pub fn forget(&self, session: &Session, id: &str) {
        let mut drafts = self.lock();
        if drafts.get(id).is_some_and(|d| session.accepts(&d.owner)) {
            drafts.remove(id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Draft>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(csrf: &str) -> Session {
        Session { csrf: csrf.into() }
    }

    fn request(connector: &str, secret: Option<&str>) -> ConnectRequest {
        ConnectRequest {
            connector: connector.into(),
            id: "cmdb".into(),
            every: None,
            settings: Vec::new(),
            auth_method: Some("basic".into()),
            auth_fields: vec![("username".into(), "reader".into())],
            secrets: secret
                .map(|s| vec![("password".into(), SecretValue::new(s.into()))])
                .unwrap_or_default(),
        }
    }

    #[test]
    fn a_draft_serves_its_own_session_and_connector_only() {
        let drafts = Drafts::default();
        let owner = session("a".repeat(64).as_str());
        let id = drafts
            .keep(&owner, &request("servicenow", Some("hunter2")))
            .expect("a draft");

        let mut other_session = request("servicenow", None);
        assert!(drafts
            .fill(&session(&"b".repeat(64)), &id, &mut other_session)
            .is_empty());
        let mut other_connector = request("netbox", None);
        assert!(drafts.fill(&owner, &id, &mut other_connector).is_empty());

        let mut same = request("servicenow", None);
        assert_eq!(drafts.fill(&owner, &id, &mut same), vec!["password"]);
        assert_eq!(same.secrets[0].1.expose(), "hunter2");

        let mut typed_again = request("servicenow", Some("new"));
        assert!(drafts.fill(&owner, &id, &mut typed_again).is_empty());
        assert_eq!(typed_again.secrets[0].1.expose(), "new");

        drafts.forget(&session(&"b".repeat(64)), &id);
        let mut still = request("servicenow", None);
        assert_eq!(drafts.fill(&owner, &id, &mut still), vec!["password"]);
        drafts.forget(&owner, &id);
        let mut after = request("servicenow", None);
        assert!(drafts.fill(&owner, &id, &mut after).is_empty());
    }

    #[test]
    fn nothing_secret_makes_no_draft_and_the_oldest_go_first() {
        let drafts = Drafts::default();
        let owner = session("c");
        assert!(drafts.keep(&owner, &request("servicenow", None)).is_none());
        let first = drafts
            .keep(&owner, &request("servicenow", Some("1")))
            .unwrap();
        for _ in 0..DRAFTS_KEPT {
            drafts.keep(&owner, &request("servicenow", Some("n")));
        }
        let mut late = request("servicenow", None);
        assert!(drafts.fill(&owner, &first, &mut late).is_empty());
        assert_eq!(drafts.lock().len(), DRAFTS_KEPT);
    }
}
