//! What a component cannot do: set credentials, reach other hosts, read
//! the host's environment, or import the filesystem or sockets.

use connector_e2e::{ConfigSpec, Fixture, PROBE_COMPONENT};
use serde_json::Value;

fn probe_config(f: &Fixture, settings: &[&str], limits: &[&str]) -> std::path::PathBuf {
    let plugin = f.dir.path().join("probe.wasm");
    std::fs::write(&plugin, PROBE_COMPONENT).unwrap();
    f.config(&ConfigSpec {
        plugin: Some(plugin),
        settings: settings.iter().map(|s| s.to_string()).collect(),
        limits: limits.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

fn probe(f: &Fixture, settings: &[&str]) -> Value {
    probe_with_limits(f, settings, &[])
}

fn probe_with_limits(f: &Fixture, settings: &[&str], limits: &[&str]) -> Value {
    let config = probe_config(f, settings, limits);
    f.sync(&config).ok();
    let records = f.export(&config, "probe", false);
    assert_eq!(records.len(), 1);
    records[0].clone()
}

#[test]
fn a_guest_cannot_set_authorization_or_cookies() {
    let f = Fixture::start(3);
    let r = probe(&f, &["mode = \"set-authorization\""]);
    assert_eq!(r["fromList"], "forbidden");
    assert_eq!(r["set"], "forbidden");
    assert_eq!(r["cookie"], "forbidden");
    assert_eq!(r["status"], "200");
    // The one request that reached the server carried the host's credential.
    let requests = f.state().requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].user.as_deref(), Some("svc_exposure"));
}

#[test]
fn a_guest_cannot_reach_another_host() {
    let f = Fixture::start(3);
    // Same server, but named differently from the configured instance.
    let target = format!(
        "http://localhost:{}/api/now/table/sys_user",
        f.emulator.addr().port()
    );
    let r = probe(
        &f,
        &["mode = \"other-host\"", &format!("target = {target:?}")],
    );
    assert_eq!(r["status"], "ErrorCode::HttpRequestDenied");
    assert!(f.state().requests().is_empty());
}

#[test]
fn a_guest_sees_no_environment_and_no_arguments() {
    let f = Fixture::start(1);
    let r = probe(&f, &["mode = \"snoop\""]);
    assert_eq!(r["environment"], "");
    assert_eq!(r["arguments"], "");
    // The control: the same probe, given an environment, reports it.
    let seen = snoop_with_environment(&f, &[("PROBE_CONTROL", "1"), ("HOME", "/root")]);
    assert_eq!(seen["environment"], "PROBE_CONTROL,HOME", "{seen}");
}

/// Runs the probe's `snoop` in an instance whose guest has `environment`.
fn snoop_with_environment(f: &Fixture, environment: &[(&str, &str)]) -> Value {
    use connector_sandbox::egress::{EgressCounters, EgressLimits, EgressPolicy};
    use connector_sandbox::runtime::{Partition, ReadRequest, Runtime};
    use std::sync::Arc;
    let runtime = Runtime::shared().unwrap();
    let component = runtime.load(connector_e2e::PROBE_COMPONENT).unwrap();
    let origin =
        connector_sandbox::origin::Origin::parse("instance", &f.emulator.base_url()).unwrap();
    let sender = connector_sandbox::sender::Sender::new(&origin, &Default::default()).unwrap();
    let egress = EgressPolicy::new(
        origin,
        Arc::new(sender),
        connector_sandbox::credentials::Credential::None,
        EgressLimits {
            max_timeout: std::time::Duration::from_secs(5),
            max_body_bytes: 1 << 20,
            max_requests: 10,
        },
        Arc::new(EgressCounters::default()),
        Arc::new(connector_sandbox::pacing::Pacer::new(None)),
    );
    let settings = vec![
        ("instance".to_string(), f.emulator.base_url()),
        ("mode".to_string(), "snoop".to_string()),
    ];
    let request = ReadRequest {
        stream_name: "probe".into(),
        partition: Partition { index: 0, count: 1 },
        cursor: None,
        watermark: None,
        deletions_since: None,
        page_size: 1,
    };
    let page = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut instance = runtime
            .instantiate_with_guest_environment(&component, egress, environment)
            .await
            .unwrap();
        instance.read(&settings, &request).await.unwrap()
    });
    serde_json::from_str(&page.records[0]).unwrap()
}

#[test]
fn a_component_built_for_another_contract_version_is_told_so() {
    let f = Fixture::start(1);
    // A 0.2 component is seen by what it imports, or else by what it exports.
    for (version, wat) in [
        (
            "0.2.0",
            r#"(component (import "exposure:connector/log@0.2.0" (instance)))"#,
        ),
        (
            "0.1.0",
            r#"(component (import "exposure:connector/types@0.1.0" (instance)))"#,
        ),
        (
            "0.2.1",
            r#"(component (instance $s) (export "exposure:connector/source@0.2.1" (instance $s)))"#,
        ),
    ] {
        let plugin = f.dir.path().join("old.wasm");
        std::fs::write(&plugin, wat::parse_str(wat).unwrap()).unwrap();
        let (code, message) = f.cli(&["info", "--plugin", plugin.to_str().unwrap()]).err();
        assert_eq!(code, 2);
        assert!(
            message.contains(&format!("built against exposure:connector@{version}"))
                && message.contains("rebuild the component against exposure:connector@0.3.1"),
            "{message}"
        );
    }
}

#[test]
fn a_component_importing_what_no_world_grants_is_refused_at_load() {
    let f = Fixture::start(1);
    let component = wat::parse_str(
        r#"(component (import "wasi:filesystem/preopens@0.2.3" (instance)) (import "wasi:keyvalue/store@0.2.0-draft" (instance)))"#,
    )
    .unwrap();
    let plugin = f.dir.path().join("kv.wasm");
    std::fs::write(&plugin, component).unwrap();
    let (code, message) = f.cli(&["info", "--plugin", plugin.to_str().unwrap()]).err();
    assert_eq!(code, 2);
    assert!(
        message.contains("imports `wasi:keyvalue/store@0.2.0-draft`"),
        "{message}"
    );
}

#[test]
fn the_filesystem_and_sockets_a_runtime_links_grant_nothing() {
    let f = Fixture::start(1);
    let target = f.emulator.addr().to_string();
    // The control: the address is open to anyone allowed to connect.
    std::net::TcpStream::connect(&target).expect("the emulator accepts connections");
    let r = probe(&f, &["mode = \"escape\"", &format!("target = {target:?}")]);
    for what in ["files", "passwd", "tcp", "lookup"] {
        let outcome = r[what].as_str().unwrap();
        assert!(outcome.starts_with("refused: "), "{what}: {r}");
    }
}

#[test]
fn a_guest_that_never_returns_is_stopped_by_its_cpu_budget() {
    let f = Fixture::start(1);
    let config = probe_config(&f, &["mode = \"spin\""], &["cpu_seconds_per_call = 1"]);
    let (code, message) = f.sync(&config).err();
    assert_eq!(code, 1);
    assert!(
        message.contains("more CPU time than a call may"),
        "{message}"
    );
}

#[test]
fn a_guest_that_allocates_without_bound_is_stopped_by_its_memory_limit() {
    let f = Fixture::start(1);
    let config = probe_config(&f, &["mode = \"allocate\""], &["memory_mib = 48"]);
    let (code, message) = f.sync(&config).err();
    assert_eq!(code, 1);
    assert!(message.contains("memory"), "{message}");
}

#[test]
fn a_response_larger_than_the_cap_is_cut_off() {
    let f = Fixture::start(6000);
    let r = probe_with_limits(
        &f,
        &[
            "mode = \"big-response\"",
            "target = \"/api/now/table/cmdb_ci_computer?sysparm_limit=10000\"",
        ],
        &["max_response_mib = 1"],
    );
    assert!(
        r["outcome"]
            .as_str()
            .unwrap()
            .starts_with("ErrorCode::HttpResponseBodySize"),
        "{r}"
    );
    assert!(r["bytes"].as_u64().unwrap() <= 1 << 20, "{r}");
}

#[test]
fn a_redirect_to_another_host_cannot_be_followed() {
    let f = Fixture::start(1);
    let elsewhere = format!(
        "http://localhost:{}/api/now/table/sys_user",
        f.emulator.addr().port()
    );
    f.state().inject(servicenow_emulator::FaultRule::next(
        servicenow_emulator::Fault::Redirect(elsewhere),
        1,
    ));
    let r = probe(
        &f,
        &[
            "mode = \"follow-redirect\"",
            "target = \"/api/now/table/sys_user\"",
        ],
    );
    assert_eq!(r["first"], "302");
    assert_eq!(r["followed"], "ErrorCode::HttpRequestDenied");
    assert_eq!(
        f.state().requests().len(),
        1,
        "only the first request reached a server"
    );
}
