//! Rate limits and temporary failures: retried, waited for exactly as the
//! server asks, and never leaving partial pages behind.

use connector_e2e::{expected_records, ConfigSpec, Fixture};
use serde_json::Value;
use servicenow_emulator::{Fault, FaultRule};

fn report(stdout: &str) -> Value {
    serde_json::from_str(stdout).expect("--json prints the report")
}

fn retries(report: &Value, stream: &str) -> Vec<Value> {
    report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == stream)
        .unwrap()["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["retries"].as_array().unwrap().clone())
        .collect()
}

fn sync_json(f: &Fixture, config: &std::path::Path) -> Value {
    report(
        &f.cli(&["sync", "--config", config.to_str().unwrap(), "--json"])
            .ok(),
    )
}

#[test]
fn rate_limit_waits_exactly_the_retry_after_the_server_gave() {
    let f = Fixture::start(50);
    f.state().inject(
        FaultRule::next(Fault::RateLimited { retry_after: 1 }, 1).on_path("cmdb_ci_computer"),
    );
    let config = f.default_config();
    let r = sync_json(&f, &config);
    let got = retries(&r, "devices");
    assert_eq!(
        got,
        vec![
            serde_json::json!({"reason": "rate-limited", "waited_ms": 1000, "server_asked": true})
        ]
    );
    assert_eq!(
        f.export(&config, "devices", false),
        expected_records(f.state(), "devices")
    );
    assert_eq!(f.state().pending_faults(), 0);
    // The report accounts for every request and byte, per partition.
    let partitions: Vec<&Value> = r["streams"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["partitions"].as_array().unwrap())
        .collect();
    let requests: u64 = partitions
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests as usize, f.state().requests().len());
    assert_eq!(requests, r["requests"].as_u64().unwrap());
    let bytes: u64 = partitions
        .iter()
        .map(|p| p["bytes"].as_u64().unwrap())
        .sum();
    assert!(bytes > 0 && bytes == r["bytes"].as_u64().unwrap());
    assert!(partitions
        .iter()
        .all(|p| p["watermark"].as_str().is_some_and(|w| w.len() == 19)));
}

#[test]
fn temporary_failures_are_retried_and_partial_rows_never_kept() {
    let f = Fixture::start(200);
    for fault in [
        Fault::TransactionCancelled,
        Fault::Html503,
        Fault::Hibernating,
        Fault::Status(500),
        Fault::Status(502),
        Fault::RateLimitedBare,
    ] {
        f.state().inject(
            FaultRule::next(fault, 1)
                .on_path("cmdb_ci_network_adapter")
                .after(1),
        );
    }
    let config = f.config(&ConfigSpec {
        sync: vec!["page_size = 40".into(), "retry_base_ms = 1".into()],
        ..Default::default()
    });
    let r = sync_json(&f, &config);
    let reasons: Vec<String> = retries(&r, "network_adapters")
        .iter()
        .map(|x| x["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        ["temporarily-unavailable"; 5]
            .iter()
            .map(|s| s.to_string())
            .chain(["rate-limited".to_string()])
            .collect::<Vec<_>>()
    );
    assert_eq!(f.state().pending_faults(), 0);
    // The cancelled transaction's truncated rows were discarded, then read again whole.
    assert_eq!(
        f.export(&config, "network_adapters", false),
        expected_records(f.state(), "network_adapters")
    );
}

#[test]
fn persistent_failure_stops_with_the_reason_and_the_next_sync_resumes() {
    let f = Fixture::start(100);
    let config = f.config(&ConfigSpec {
        sync: vec![
            "page_size = 30".into(),
            "max_attempts = 3".into(),
            "retry_base_ms = 1".into(),
        ],
        ..Default::default()
    });
    // Let two device pages through, then fail for good.
    f.state().inject(
        FaultRule::next(Fault::Status(503), 3)
            .on_path("cmdb_ci_computer")
            .after(2),
    );
    let (code, message) = f.sync(&config).err();
    // A temporary failure: EX_TEMPFAIL, so that a scheduler tries again later.
    assert_eq!(code, 75);
    assert!(
        message.contains("devices")
            && message.contains("gave up after 3 attempts")
            && message.contains("HTTP 503"),
        "{message}"
    );
    // The other streams completed; the devices committed so far are kept.
    assert_eq!(
        f.export(&config, "business_applications", false),
        expected_records(f.state(), "business_applications")
    );
    assert_eq!(f.export(&config, "devices", false).len(), 60);
    let before = f.state().requests().len();
    let out = f.sync(&config).ok();
    assert!(out.contains("(resumed)"), "{out}");
    assert_eq!(
        f.export(&config, "devices", false),
        expected_records(f.state(), "devices")
    );
    // The resumed devices read started after the 60 committed rows: 2 more pages.
    let device_requests = f.state().requests()[before..]
        .iter()
        .filter(|r| r.path.ends_with("cmdb_ci_computer"))
        .count();
    assert_eq!(device_requests, 2);
}

#[test]
fn the_request_cap_per_run_stops_a_runaway_sync() {
    let f = Fixture::start(100);
    let config = f.config(&ConfigSpec {
        sync: vec![
            "page_size = 10".into(),
            "concurrency = 1".into(),
            "retry_base_ms = 1".into(),
        ],
        limits: vec!["max_requests_per_run = 4".into()],
        ..Default::default()
    });
    let (code, message) = f.sync(&config).err();
    assert_eq!(code, 1);
    assert!(message.contains("cap of 4 requests"), "{message}");
    // Neither stream kept retrying once the cap was reached.
    assert!(!message.contains("gave up after"), "{message}");
    assert!(f.state().requests().len() <= 4);
}

/// A rate-limit rule for the integration user: `limit` requests per 2 s window.
fn limit_rate(f: &Fixture, limit: u32) {
    f.state().set_rate_window(std::time::Duration::from_secs(2));
    f.state().add_rate_rule(servicenow_emulator::RateRule {
        sys_id: "rule".into(),
        user: Some("svc_exposure".into()),
        limit,
    });
}

#[test]
fn the_host_paces_itself_by_the_rate_limit_headers_and_meets_no_429() {
    let f = Fixture::start(60);
    limit_rate(&f, 8);
    let config = f.config(&ConfigSpec {
        sync: vec!["page_size = 10".into(), "retry_base_ms = 10".into()],
        ..Default::default()
    });
    f.sync(&config).ok();
    let log = f.state().requests();
    assert!(
        log.len() > 16,
        "the sync needed more than two windows: {}",
        log.len()
    );
    assert!(
        log.iter().all(|r| r.status == 200),
        "{:?}",
        log.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(
        f.export(&config, "devices", false),
        expected_records(f.state(), "devices")
    );
}

#[test]
fn a_stop_ends_a_long_retry_after_wait_at_once() {
    use connector_host::cli::{sync, Failure, SyncFlags};
    use connector_sandbox::stop::StopSignal;
    use std::sync::Arc;
    let f = Fixture::start(30);
    f.state().inject(
        FaultRule::next(Fault::RateLimited { retry_after: 20 }, 1).on_path("cmdb_ci_computer"),
    );
    let config = f.default_config();
    let stop = Arc::new(StopSignal::default());
    let syncing = {
        let (stop, env) = (stop.clone(), f.env.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let flags = SyncFlags {
                stop,
                ..Default::default()
            };
            let outcome = runtime.block_on(sync(&config, &env, flags, &mut Vec::new()));
            outcome
                .err()
                .and_then(|e| e.downcast_ref::<Failure>().map(|f| f.exit_code))
        })
    };
    // Once the 429 is answered the sync is waiting out its Retry-After: stop it.
    while !f.state().requests().iter().any(|r| r.status == 429) {
        let seen = f.state().requests().len();
        f.state()
            .wait_for_requests(seen + 1, std::time::Duration::from_secs(30));
    }
    stop.trigger();
    assert_eq!(
        syncing.join().unwrap(),
        Some(75),
        "stopped: the next sync resumes"
    );
    let devices = f
        .state()
        .requests()
        .iter()
        .filter(|r| r.path.contains("cmdb_ci_computer"))
        .count();
    assert_eq!(
        devices, 1,
        "the refused page was not sent again after the stop"
    );
}

#[test]
fn waits_for_the_rate_budget_do_not_count_against_the_call_time_out() {
    let f = Fixture::start(8);
    limit_rate(&f, 4);
    // Every page past the fourth waits for the next window, longer than a call may take.
    let config = f.config(&ConfigSpec {
        sync: vec!["page_size = 2".into(), "retry_base_ms = 10".into()],
        limits: vec!["call_timeout_seconds = 1".into()],
        ..Default::default()
    });
    f.sync(&config).ok();
    assert!(
        f.state().requests().len() > 8,
        "the sync needed more than two windows"
    );
    assert!(f.state().requests().iter().all(|r| r.status == 200));
    assert_eq!(
        f.export(&config, "devices", false),
        expected_records(f.state(), "devices")
    );

    // A budget that returns later than the run waits ends the run as a temporary failure.
    let impatient = f.config(&ConfigSpec {
        file: "impatient.toml".into(),
        sync: vec!["page_size = 1".into(), "max_retry_after_seconds = 1".into()],
        limits: vec!["call_timeout_seconds = 1".into()],
        ..Default::default()
    });
    f.state()
        .set_rate_window(std::time::Duration::from_secs(3600));
    let (code, message) = f.sync_full(&impatient).err();
    assert_eq!(code, 75, "{message}");
    assert!(message.contains("rate budget is spent until"), "{message}");
}

#[test]
fn slow_headers_slow_bodies_and_resets_are_retried_and_lose_nothing() {
    for (fault, what) in [
        (
            Fault::SlowHeaders(3_000),
            "headers after 3 s (first-byte time-out 1 s)",
        ),
        (
            Fault::SlowBody(3_000),
            "3 s between body chunks (between-bytes time-out 1 s)",
        ),
        (Fault::ConnectionReset, "a reset in the middle of the body"),
    ] {
        let f = Fixture::start(40);
        // Each request on a connection of its own: a broken answer is then
        // the component's to retry, never sent again unseen by the sender
        // (which does so on a reused connection closed before any byte).
        f.state()
            .close_connections
            .store(true, std::sync::atomic::Ordering::Relaxed);
        f.state()
            .inject(FaultRule::next(fault, 1).on_path("cmdb_ci_computer"));
        let config = f.config(&ConfigSpec {
            limits: vec!["request_timeout_seconds = 1".into()],
            ..Default::default()
        });
        let r = sync_json(&f, &config);
        let reasons: Vec<Value> = retries(&r, "devices")
            .iter()
            .map(|t| t["reason"].clone())
            .collect();
        assert_eq!(reasons, ["temporarily-unavailable"], "{what}");
        assert_eq!(
            f.export(&config, "devices", false),
            expected_records(f.state(), "devices"),
            "{what}"
        );
    }
}

#[test]
fn a_call_longer_than_the_call_time_out_is_ended() {
    let f = Fixture::start(10);
    // The guest waits for headers (its request time-outs allow it) longer than a call may last.
    f.state()
        .inject(FaultRule::next(Fault::SlowHeaders(5_000), 1).on_path("cmdb_ci_computer"));
    let config = f.config(&ConfigSpec {
        limits: vec!["call_timeout_seconds = 1".into()],
        ..Default::default()
    });
    let (code, message) = f.sync(&config).err();
    assert_eq!(code, 1, "{message}");
    assert!(
        message.contains(
            "devices: the component failed during `read`: no answer within 1 s (the call time-out)"
        ),
        "{message}"
    );
}
