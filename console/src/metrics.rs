//! `GET /metrics`: the connections in Prometheus' text exposition format
//! (version 0.0.4), no session needed.

use crate::view::{ConnectionView, HealthState};
use crate::ConsoleState;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;

/// The content type Prometheus scrapes.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`.
pub async fn metrics(State(state): State<ConsoleState>) -> Response {
    match crate::pages::ask(&state, |b| b.connections()).await {
        Ok(connections) => (
            [(CONTENT_TYPE, CONTENT_TYPE_TEXT)],
            exposition(&connections),
        )
            .into_response(),
        Err(e) => crate::pages::failure(&e),
    }
}

/// One metric family: its help line, type, and samples.
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} gauge", self.name);
        for (labels, value) in &self.samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let _ = writeln!(out, "{}{{{}}} {value}", self.name, labels.join(","));
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The text of every family for `connections`.
pub fn exposition(connections: &[ConnectionView]) -> String {
    let mut health = Family::new(
        "connector_health",
        "1 for the connection's current health state, 0 for the others.",
    );
    let mut readable = Family::new(
        "connector_store_readable",
        "1 when the console could read the connection's database, 0 when it could not (a PostgreSQL server out of reach).",
    );
    let mut records = Family::new("connector_records", "Live records stored, per stream.");
    let mut duration = Family::new(
        "connector_last_sync_duration_seconds",
        "How long the last finished sync took.",
    );
    let mut end = Family::new(
        "connector_last_sync_end_timestamp_seconds",
        "When the last finished sync ended, Unix time.",
    );
    let mut requests = Family::new(
        "connector_last_sync_requests",
        "HTTP requests the last finished sync sent.",
    );
    let mut retries = Family::new(
        "connector_last_sync_retries",
        "Retries in the last finished sync, per stream and reason.",
    );
    let mut hidden = Family::new(
        "connector_last_sync_rows_hidden_by_acl",
        "Rows the source counted but did not show the user in the last finished sync, per stream.",
    );
    for c in connections {
        let conn = || vec![("connection", c.name.clone())];
        for state in HealthState::ALL {
            let on = c.health.as_ref().is_some_and(|h| h.state == state);
            let mut labels = conn();
            labels.push(("state", state.slug().to_string()));
            health.add(labels, if on { 1.0 } else { 0.0 });
        }
        readable.add(conn(), if c.unreadable.is_some() { 0.0 } else { 1.0 });
        if let Some(last) = &c.last_sync {
            duration.add(conn(), last.seconds);
            requests.add(conn(), last.requests as f64);
            if let Some(unix) = last.finished_unix {
                end.add(conn(), unix as f64);
            }
        }
        for s in &c.streams {
            let stream = || {
                let mut labels = conn();
                labels.push(("stream", s.stream.clone()));
                labels
            };
            records.add(stream(), s.records as f64);
            hidden.add(stream(), s.hidden_by_acl as f64);
            for (reason, n) in &s.retries {
                let mut labels = stream();
                labels.push(("reason", reason.clone()));
                retries.add(labels, *n as f64);
            }
        }
    }
    let mut out = String::new();
    for family in [
        health, readable, records, duration, end, requests, retries, hidden,
    ] {
        family.write(&mut out);
    }
    out
}
