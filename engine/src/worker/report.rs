//! A shared run's report, assembled from the parts its workers recorded
//! ([`RunParts`]), and the end of the run that follows from it.

use crate::store::deployment::{PartitionParts, RunEnd, RunParts, StreamParts};
use crate::store::HealthState;
use crate::sync::{PartitionReport, RunReport, StreamReport};
use std::time::Duration;

/// First wait after a run that failed in a way that passes by itself; it
/// doubles with each such run in a row, up to the interval (as `run
/// --every` backs off).
const FIRST_RETRY: Duration = Duration::from_secs(60);

/// The report of `connection`'s run from its parts.
pub fn assemble(connection: &str, parts: &RunParts) -> RunReport {
    let streams: Vec<StreamReport> = parts.streams.iter().map(stream_report).collect();
    let partitions = || streams.iter().flat_map(|s| s.partitions.iter());
    RunReport {
        run_id: parts.run_id,
        connection: connection.to_string(),
        requests: partitions().map(|p| p.requests).sum(),
        bytes: partitions().map(|p| p.bytes).sum(),
        denied_requests: 0,
        seconds: parts.seconds,
        streams,
    }
}

/// How the run ends: its report, status and health, and when the next is
/// due: `every` after it, sooner (1 min, 2 min, 4 min…) after failures that
/// pass by themselves.
pub fn run_end(connection: &str, parts: &RunParts, every: Duration) -> (RunReport, RunEnd) {
    let report = assemble(connection, parts);
    let health = report.health();
    let temporary_failure = health.state == HealthState::TemporaryFailure;
    let next_run_in = if temporary_failure {
        FIRST_RETRY
            .saturating_mul(1 << parts.temporary_failures.min(16))
            .min(every)
    } else {
        every
    };
    let end = RunEnd {
        status: if report.complete() {
            "complete"
        } else {
            "incomplete"
        }
        .to_string(),
        report: serde_json::to_string(&report).unwrap_or_else(|e| {
            format!("{{\"error\":\"the report could not be written as JSON: {e}\"}}")
        }),
        health,
        temporary_failure,
        next_run_in,
    };
    (report, end)
}

/// One stream's report: its partitions' merged reports and what finishing
/// it marked.
fn stream_report(stream: &StreamParts) -> StreamReport {
    let partitions: Vec<PartitionReport> = stream.partitions.iter().map(partition_report).collect();
    let deleted_at_source = partitions.iter().map(|p| p.deleted_at_source).sum::<u64>();
    let verdict = if stream.complete {
        "complete".to_string()
    } else {
        let why = partitions
            .iter()
            .find_map(|p| p.error.clone())
            .unwrap_or_else(|| "a partition was not read to its end".into());
        format!("incomplete: {why}")
    };
    StreamReport {
        stream: stream.name.clone(),
        mode: stream.mode.clone(),
        resumed: stream.resumed,
        deleted: deleted_at_source + stream.aged_out + stream.not_returned,
        deleted_at_source,
        aged_out: stream.aged_out,
        not_returned: stream.not_returned,
        verdict,
        finish_error: None,
        finish_error_kind: None,
        seconds: partitions.iter().map(|p| p.seconds).fold(0.0, f64::max),
        partitions,
    }
}

/// One partition's report: the last worker's, with the counters of the
/// workers before it (one stopped, killed or fenced after a pause: each
/// recorded its part with every page it wrote) added; whether it is
/// complete is what the store says. A partition no worker reported on in
/// this run was finished by an earlier one.
fn partition_report(partition: &PartitionParts) -> PartitionReport {
    let mut merged = PartitionReport {
        index: partition.index,
        ..Default::default()
    };
    for (n, text) in partition.reports.iter().enumerate() {
        let report: PartitionReport = match serde_json::from_str(text) {
            Ok(report) => report,
            Err(e) => {
                merged.warnings.push(format!(
                    "a worker's report on this partition is not readable ({e}); its counters are missing"
                ));
                continue;
            }
        };
        add_counters(&mut merged, &report);
        if n + 1 == partition.reports.len() {
            merged.server_total = report.server_total;
            merged.hidden_by_acl = report.hidden_by_acl;
            merged.watermark = report.watermark;
            merged.error = report.error;
            merged.error_kind = report.error_kind;
        }
    }
    merged.complete = partition.done;
    if merged.complete {
        merged.error = None;
        merged.error_kind = None;
    } else if merged.error.is_none() {
        merged.error = Some(match merged.workers.last() {
            // Its last part is the one recorded with a page: the worker
            // never recorded the end of its read.
            Some(worker) => format!(
                "worker {worker} stopped reading it without recording why (killed, or cut off from the database); {} pages of it were written in this run, and the next run resumes after the last",
                merged.pages
            ),
            None => "no worker reported on this partition's read".into(),
        });
    }
    merged
}

/// Adds `report`'s counters, retries, warnings and worker to `merged`.
fn add_counters(merged: &mut PartitionReport, report: &PartitionReport) {
    merged.pages += report.pages;
    merged.records += report.records;
    merged.rows_requested += report.rows_requested;
    merged.rows_returned += report.rows_returned;
    merged.requests += report.requests;
    merged.bytes += report.bytes;
    merged.seconds += report.seconds;
    merged.deleted_at_source += report.deleted_at_source;
    merged.retries.extend(report.retries.iter().cloned());
    merged.workers.extend(report.workers.iter().cloned());
    for warning in &report.warnings {
        if !merged.warnings.contains(warning) {
            merged.warnings.push(warning.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(index: u32, done: bool, reports: &[PartitionReport]) -> PartitionParts {
        PartitionParts {
            index,
            done,
            reports: reports
                .iter()
                .map(|r| serde_json::to_string(r).unwrap())
                .collect(),
        }
    }

    fn parts(complete: bool, partitions: Vec<PartitionParts>, failures: u32) -> RunParts {
        RunParts {
            run_id: 7,
            seconds: 2.5,
            temporary_failures: failures,
            streams: vec![StreamParts {
                name: "devices".into(),
                mode: "full".into(),
                resumed: false,
                complete,
                aged_out: 1,
                not_returned: 2,
                partitions,
            }],
        }
    }

    fn read_by(worker: &str, pages: u64, error: Option<(&str, &str)>) -> PartitionReport {
        PartitionReport {
            workers: vec![worker.into()],
            pages,
            records: pages * 10,
            requests: pages,
            error: error.map(|(_, message)| message.into()),
            error_kind: error.map(|(kind, _)| kind.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_partition_taken_over_sums_its_workers_and_is_complete_as_the_store_says() {
        let stopped = read_by("w1", 3, Some(("stopped", "stopped by a signal")));
        let finished = read_by("w2", 4, None);
        let run = parts(
            true,
            vec![part(0, true, &[stopped, finished]), part(1, true, &[])],
            0,
        );
        let (report, end) = run_end("c", &run, Duration::from_secs(3600));
        let p = &report.streams[0].partitions;
        assert_eq!((p[0].pages, p[0].records, p[0].requests), (7, 70, 7));
        assert_eq!(p[0].workers, ["w1", "w2"]);
        assert!(p[0].complete && p[0].error.is_none());
        assert!(p[1].complete, "finished by an earlier run");
        assert_eq!(report.streams[0].deleted, 3);
        assert_eq!(report.requests, 7);
        assert_eq!(end.status, "complete");
        assert_eq!(end.health.state, HealthState::Connected);
        assert_eq!(end.next_run_in, Duration::from_secs(3600));
    }

    #[test]
    fn a_temporary_failure_makes_the_next_run_due_sooner_each_time_longer() {
        let limited = read_by("w1", 1, Some(("rate-limited", "the budget is spent")));
        let run = |failures| {
            parts(
                false,
                vec![part(0, false, std::slice::from_ref(&limited))],
                failures,
            )
        };
        let every = Duration::from_secs(6 * 3600);
        let (report, end) = run_end("c", &run(0), every);
        assert_eq!(report.streams[0].verdict, "incomplete: the budget is spent");
        assert_eq!(end.status, "incomplete");
        assert!(end.temporary_failure);
        assert_eq!(end.next_run_in, Duration::from_secs(60));
        assert_eq!(
            run_end("c", &run(2), every).1.next_run_in,
            Duration::from_secs(240)
        );
        assert_eq!(run_end("c", &run(30), every).1.next_run_in, every);
    }

    #[test]
    fn an_unreadable_part_is_named_and_the_others_still_count() {
        let mut p = part(0, false, &[read_by("w1", 2, None)]);
        p.reports.insert(0, "not json".into());
        let report = assemble("c", &parts(false, vec![p], 0));
        let p = &report.streams[0].partitions[0];
        assert_eq!(p.pages, 2);
        assert!(p.warnings[0].contains("not readable"), "{:?}", p.warnings);
        assert!(!p.complete);
        assert_eq!(
            p.error.as_deref(),
            Some("worker w1 stopped reading it without recording why (killed, or cut off from the database); 2 pages of it were written in this run, and the next run resumes after the last")
        );
        let nobody = assemble("c", &parts(false, vec![part(0, false, &[])], 0));
        assert_eq!(
            nobody.streams[0].partitions[0].error.as_deref(),
            Some("no worker reported on this partition's read")
        );
    }
}
