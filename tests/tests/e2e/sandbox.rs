//! What a component cannot do: set credentials, reach other hosts, read
//! the host's environment, or import the filesystem or sockets.

use connector_e2e::{ConfigSpec, Fixture, PROBE_COMPONENT};
use serde_json::Value;

fn probe(f: &Fixture, settings: &[&str]) -> Value {
    let plugin = f.dir.path().join("probe.wasm");
    std::fs::write(&plugin, PROBE_COMPONENT).unwrap();
    let config = f.config(&ConfigSpec {
        plugin: Some(plugin),
        settings: settings.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    });
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
}

#[test]
fn a_component_importing_the_filesystem_is_refused_at_load() {
    let f = Fixture::start(1);
    let component = wat::parse_str(
        r#"(component (import "wasi:filesystem/preopens@0.2.3" (instance)) (import "wasi:sockets/tcp@0.2.3" (instance)))"#,
    )
    .unwrap();
    let plugin = f.dir.path().join("fs.wasm");
    std::fs::write(&plugin, component).unwrap();
    let (code, message) = f.cli(&["info", "--plugin", plugin.to_str().unwrap()]).err();
    assert_eq!(code, 2);
    assert!(
        message.contains("imports `wasi:filesystem/preopens@0.2.3`"),
        "{message}"
    );
}
