//! What a run reports: per partition, per stream and for the run, and the
//! connection's health that follows from it.

use crate::store::{Health, HealthState};
use serde::{Deserialize, Serialize};

/// One retry, for the report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetryRecord {
    /// The `connector-error` case that caused it.
    pub reason: String,
    /// How long the engine waited, in milliseconds.
    pub waited_ms: u64,
    /// Whether the wait came from the server's `Retry-After`.
    pub server_asked: bool,
}

/// What happened to one partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionReport {
    /// Partition index.
    pub index: u32,
    /// The workers that read it, when workers share the run (in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<String>,
    /// Pages committed in this run.
    pub pages: u64,
    /// Records committed in this run.
    pub records: u64,
    /// Rows the server said match (first page of this run).
    pub server_total: Option<u64>,
    /// Rows requested from the server.
    pub rows_requested: u64,
    /// Rows the server returned.
    pub rows_returned: u64,
    /// Rows the server counted but did not return (hidden by ACLs), for a
    /// partition read to its end in this run.
    pub hidden_by_acl: Option<u64>,
    /// HTTP requests sent for this partition (retries included).
    #[serde(default)]
    pub requests: u64,
    /// Response bytes received for this partition.
    #[serde(default)]
    pub bytes: u64,
    /// Seconds spent on this partition.
    #[serde(default)]
    pub seconds: f64,
    /// The watermark this partition's read will record.
    #[serde(default)]
    pub watermark: Option<String>,
    /// Records the source reported deleted (tombstones) that this run marked.
    #[serde(default)]
    pub deleted_at_source: u64,
    /// Warnings the component logged (distinct, in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Retries and why.
    pub retries: Vec<RetryRecord>,
    /// Whether the partition was read to its end.
    pub complete: bool,
    /// Why not, when not complete.
    pub error: Option<String>,
    /// The `connector-error` case of `error`.
    pub error_kind: Option<String>,
}

/// What happened to one stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamReport {
    /// Stream name.
    pub stream: String,
    /// `full` or `incremental`.
    pub mode: String,
    /// Whether an interrupted read was resumed.
    pub resumed: bool,
    /// Per-partition details.
    pub partitions: Vec<PartitionReport>,
    /// Records marked deleted by this run, for any reason.
    pub deleted: u64,
    /// Of those, records the source reported deleted.
    #[serde(default)]
    pub deleted_at_source: u64,
    /// Of those, records that aged out of the retention window.
    #[serde(default)]
    pub aged_out: u64,
    /// Of those, records a full read no longer returned.
    #[serde(default)]
    pub not_returned: u64,
    /// `complete`, or `incomplete: why`.
    pub verdict: String,
    /// Why the finishing step failed after every partition completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_error: Option<String>,
    /// The kind of `finish_error` when it passes by itself (`stopped`: the
    /// sync was stopped while the step waited for the database); none for
    /// a write the database refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_error_kind: Option<String>,
    /// Seconds spent.
    pub seconds: f64,
}

impl StreamReport {
    /// Records committed in this run.
    pub fn records(&self) -> u64 {
        self.partitions.iter().map(|p| p.records).sum()
    }
    /// Pages committed in this run.
    pub fn pages(&self) -> u64 {
        self.partitions.iter().map(|p| p.pages).sum()
    }
    /// Retries in this run.
    pub fn retries(&self) -> usize {
        self.partitions.iter().map(|p| p.retries.len()).sum()
    }
    /// Whether every partition completed and the stream's finishing step
    /// (watermark, deletions) was committed.
    pub fn complete(&self) -> bool {
        self.finish_error.is_none() && self.partitions.iter().all(|p| p.complete)
    }
    /// Rows the server said match, summed over partitions that reported it.
    pub fn server_total(&self) -> Option<u64> {
        let totals: Vec<u64> = self
            .partitions
            .iter()
            .filter_map(|p| p.server_total)
            .collect();
        (!totals.is_empty()).then(|| totals.iter().sum())
    }
}

/// The report of one sync run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Database run id.
    pub run_id: i64,
    /// Connection name.
    pub connection: String,
    /// Per-stream reports.
    pub streams: Vec<StreamReport>,
    /// HTTP requests the component sent.
    pub requests: u64,
    /// Response bytes it received.
    pub bytes: u64,
    /// Requests the egress policy refused.
    pub denied_requests: u64,
    /// Seconds the run took.
    pub seconds: f64,
}

impl RunReport {
    /// Whether every stream completed.
    pub fn complete(&self) -> bool {
        self.streams.iter().all(StreamReport::complete)
    }

    /// The connection's health as this run shows it: connected when every
    /// stream completed; a temporary failure when every failure is of a kind
    /// that passes by itself (rate limits, unavailability); failed otherwise.
    pub fn health(&self) -> Health {
        if let Some((stream, why)) = self.streams.iter().find_map(|s| {
            s.finish_error
                .as_ref()
                .filter(|_| !is_temporary(s.finish_error_kind.as_deref()))
                .map(|e| (&s.stream, e))
        }) {
            // The database refused a write: that needs someone to look.
            return Health {
                state: HealthState::Failed,
                error_kind: Some("store".into()),
                message: Some(format!("`{stream}`: {why}")),
            };
        }
        // (kind, message) of each failed partition and stream end.
        let failures: Vec<(Option<&String>, &String)> = self
            .streams
            .iter()
            .flat_map(|s| &s.partitions)
            .filter(|p| !p.complete)
            .filter_map(|p| Some((p.error_kind.as_ref(), p.error.as_ref()?)))
            .chain(
                self.streams
                    .iter()
                    .filter_map(|s| Some((s.finish_error_kind.as_ref(), s.finish_error.as_ref()?))),
            )
            .collect();
        let Some(&(first_kind, first_message)) = failures
            .iter()
            .find(|(kind, _)| !is_temporary(kind.map(String::as_str)))
            .or(failures.first())
        else {
            return Health {
                state: HealthState::Connected,
                error_kind: None,
                message: None,
            };
        };
        let state = if failures
            .iter()
            .all(|(kind, _)| is_temporary(kind.map(String::as_str)))
        {
            HealthState::TemporaryFailure
        } else {
            HealthState::Failed
        };
        Health {
            state,
            error_kind: first_kind.cloned(),
            message: Some(first_message.clone()),
        }
    }
}

/// Failures that pass by themselves and are retried at the next run.
pub(crate) fn is_temporary(kind: Option<&str>) -> bool {
    matches!(
        kind,
        Some(
            "temporarily-unavailable"
                | "rate-limited"
                | "stopped"
                | super::partition::DATABASE_UNAVAILABLE
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(error: Option<(&str, &str)>) -> PartitionReport {
        PartitionReport {
            complete: error.is_none(),
            error_kind: error.map(|(kind, _)| kind.to_string()),
            error: error.map(|(_, message)| message.to_string()),
            ..Default::default()
        }
    }

    fn stream(partitions: Vec<PartitionReport>, end: Option<(Option<&str>, &str)>) -> StreamReport {
        StreamReport {
            stream: "s".into(),
            mode: "full".into(),
            resumed: false,
            partitions,
            deleted: 0,
            deleted_at_source: 0,
            aged_out: 0,
            not_returned: 0,
            verdict: String::new(),
            finish_error: end.map(|(_, why)| why.to_string()),
            finish_error_kind: end.and_then(|(kind, _)| kind.map(str::to_string)),
            seconds: 0.0,
        }
    }

    fn health_of(streams: Vec<StreamReport>) -> (HealthState, Option<String>, Option<String>) {
        let report = RunReport {
            run_id: 1,
            connection: "c".into(),
            streams,
            requests: 0,
            bytes: 0,
            denied_requests: 0,
            seconds: 0.0,
        };
        let health = report.health();
        (health.state, health.error_kind, health.message)
    }

    #[test]
    fn a_stream_end_given_up_after_a_stop_passes_by_itself_and_a_refused_one_needs_someone() {
        let complete = stream(vec![partition(None)], None);
        assert_eq!(
            health_of(vec![complete.clone()]),
            (HealthState::Connected, None, None)
        );
        let stopped_end = stream(vec![partition(None)], Some((Some("stopped"), "stopped")));
        assert_eq!(
            health_of(vec![complete.clone(), stopped_end.clone()]),
            (
                HealthState::TemporaryFailure,
                Some("stopped".into()),
                Some("stopped".into())
            ),
            "a stopped sync's stream end is a stop, as its partitions' are"
        );
        let refused_end = stream(vec![partition(None)], Some((None, "disk full")));
        assert_eq!(
            health_of(vec![stopped_end.clone(), refused_end]),
            (
                HealthState::Failed,
                Some("store".into()),
                Some("`s`: disk full".into())
            )
        );
        let rejected = stream(vec![partition(Some(("unauthenticated", "rejected")))], None);
        assert_eq!(
            health_of(vec![stopped_end, rejected]),
            (
                HealthState::Failed,
                Some("unauthenticated".into()),
                Some("rejected".into())
            ),
            "the failure that needs someone is the one told"
        );
    }
}
