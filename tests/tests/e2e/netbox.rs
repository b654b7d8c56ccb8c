//! The bundled NetBox connector (`connector = "netbox"`) against the NetBox
//! emulator: every stream stored as the emulator's data says, a nested
//! export two levels deep, incremental reads and deletions from the change
//! log, both token formats, refusals, and conformance with and without
//! faults.

use connector_e2e::netbox::{by_id, NetBoxFixture, TOKEN_VAR};
use netbox_emulator::{now, Token, V1_TOKEN, V2_TOKEN};
use serde_json::{json, Value};
use std::collections::HashMap;

const STREAMS: [&str; 3] = ["devices", "interfaces", "ip_addresses"];

/// Blocks of 10,000 ids split among partitions: 25,000 devices reach a third block.
const DEVICES_ACROSS_BLOCKS: usize = 25_000;

#[test]
fn a_sync_stores_every_stream_as_the_data_says_in_one_or_several_partitions() {
    let f = NetBoxFixture::start(DEVICES_ACROSS_BLOCKS);
    for partitions in [1, 3] {
        let config = f.config(
            &format!("p{partitions}.toml"),
            &format!("[sync]\npartitions = {partitions}\npage_size = 1000"),
        );
        let report = f
            .cli(&["sync", "--json", "--config", config.to_str().unwrap()])
            .ok();
        let report: Value = serde_json::from_str(&report).unwrap();
        for stream in report["streams"].as_array().unwrap() {
            assert_eq!(stream["mode"], "full", "{stream:#}");
        }
        for stream in STREAMS {
            let stored = by_id(f.export(&config, stream, &[]));
            let expected = f.expected(stream);
            assert_eq!(
                stored.len(),
                expected.len(),
                "{stream}, {partitions} partitions"
            );
            assert!(
                stored == expected,
                "{stream}, {partitions} partitions: records differ"
            );
        }
    }
}

#[test]
fn the_nested_export_is_two_levels_deep() {
    let f = NetBoxFixture::start(300);
    let config = f.config("nb.toml", "");
    f.sync(&config).ok();
    let devices = f.export(&config, "devices", &["--nested"]);
    let interfaces = f.expected("interfaces");
    let addresses = f.expected("ip_addresses");
    let mut deepest = 0;
    for device in &devices {
        let id = &device["id"];
        let embedded = device["interfaces"]
            .as_array()
            .expect("devices carry interfaces");
        let expected: Vec<&Value> = interfaces.iter().filter(|i| i["deviceId"] == *id).collect();
        assert_eq!(embedded.len(), expected.len(), "device {id}");
        for interface in embedded {
            let ips = interface["ipAddresses"]
                .as_array()
                .expect("interfaces carry addresses");
            let expected: Vec<Value> = addresses
                .iter()
                .filter(|a| a["interfaceId"] == interface["id"])
                .cloned()
                .collect();
            assert_eq!(
                by_id(ips.clone()),
                expected,
                "interface {}",
                interface["id"]
            );
            deepest += ips.len();
        }
    }
    assert!(
        deepest > 100,
        "only {deepest} addresses embedded two levels down"
    );
}

#[test]
fn incremental_reads_take_changes_and_the_change_log_marks_deletions() {
    let f = NetBoxFixture::start(400);
    let config = f.config("nb.toml", "");
    f.sync(&config).ok();
    let (deleted, updated) = f.state().with_db(|db| {
        let mut ids = db.devices.keys().copied();
        (ids.next().unwrap(), ids.nth(10).unwrap())
    });
    let gone_interfaces: Vec<u64> = f.state().with_db(|db| {
        db.interfaces
            .values()
            .filter(|i| i.device == deleted)
            .map(|i| i.id)
            .collect()
    });
    f.state().with_db_mut(|db| {
        assert!(db.delete_device(deleted, now()));
        assert!(db.update_device(updated, now()));
    });
    let report = f
        .cli(&["sync", "--json", "--config", config.to_str().unwrap()])
        .ok();
    let report: Value = serde_json::from_str(&report).unwrap();
    let devices = &report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "devices")
        .unwrap()
        .clone();
    assert_eq!(devices["mode"], "incremental", "{report:#}");
    // Only what changed since the watermark (less its lag) came back.
    let records: u64 = devices["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["records"].as_u64().unwrap())
        .sum();
    assert!((1..50).contains(&records), "{devices:#}");
    let all = f.export(&config, "devices", &["--include-deleted"]);
    let find = |id: u64| all.iter().find(|d| d["id"] == json!(id)).unwrap().clone();
    assert_eq!(find(deleted)["deletionReason"], "deleted-at-source");
    assert!(find(updated)["serial"]
        .as_str()
        .unwrap()
        .starts_with("SN-CHANGED-"));
    let interfaces = f.export(&config, "interfaces", &["--include-deleted"]);
    for id in gone_interfaces {
        let i = interfaces.iter().find(|i| i["id"] == json!(id)).unwrap();
        assert_eq!(i["deletionReason"], "deleted-at-source", "interface {id}");
    }
    // The live records are exactly the data now.
    for stream in STREAMS {
        assert!(
            by_id(f.export(&config, stream, &[])) == f.expected(stream),
            "{stream}"
        );
    }
}

#[test]
fn both_token_formats_work_and_a_bad_token_is_told_to_the_operator() {
    let f = NetBoxFixture::start(20);
    let config = f.config("nb.toml", "");
    for token in [V1_TOKEN, V2_TOKEN] {
        let env = HashMap::from([(TOKEN_VAR.to_string(), token.to_string())]);
        connector_e2e::run_cli(&["check", "--config", config.to_str().unwrap()], &env).ok();
    }
    for (token, says) in [
        ("f".repeat(40), "Invalid v1 token"),
        ("nbt_x.y".into(), "Invalid v2 token"),
    ] {
        let env = HashMap::from([(TOKEN_VAR.to_string(), token.clone())]);
        let (code, message) =
            connector_e2e::run_cli(&["sync", "--config", config.to_str().unwrap()], &env).err();
        assert_eq!(code, 1);
        assert!(
            message.contains("NetBox rejected the API token") && message.contains(says),
            "{message}"
        );
        assert!(!message.contains(&token), "the token leaked: {message}");
    }
}

#[test]
fn a_token_that_may_not_read_the_change_log_syncs_with_a_warning() {
    let token = Token {
        view_changes: false,
        ..Token::full(V2_TOKEN)
    };
    let f = NetBoxFixture::start_with_tokens(30, vec![token]);
    let config = f.config("nb.toml", "");
    let check = f.cli(&["check", "--config", config.to_str().unwrap()]).ok();
    assert!(
        check.contains("Deletions cannot be read") && check.contains("core.view_objectchange"),
        "{check}"
    );
    f.sync(&config).ok();
    let first = f.state().with_db(|db| *db.devices.keys().next().unwrap());
    f.state().with_db_mut(|db| db.delete_device(first, now()));
    let out = f.sync(&config).ok();
    assert!(out.contains("change log is not readable"), "{out}");
}

#[test]
fn a_token_without_view_permission_is_forbidden_not_unauthenticated() {
    let token = Token {
        view_objects: false,
        ..Token::full(V2_TOKEN)
    };
    let f = NetBoxFixture::start_with_tokens(5, vec![token]);
    let config = f.config("nb.toml", "");
    let out = f.cli(&["check", "--config", config.to_str().unwrap()]);
    let (_, message) = out.err();
    assert!(
        message.contains("dcim.view_device") && !message.contains("rejected the API token"),
        "{message}"
    );
}

/// `conformance --json` on `config`, asserting every check passes.
fn conformance(f: &NetBoxFixture, config: &std::path::Path) -> Value {
    f.cli(&[
        "conformance",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ])
    .conformant()
}

/// Runs conformance on the bundled NetBox component against an emulator
/// failing `fault_rate` of its list requests; asserts every check passes
/// and returns how many requests the emulator answered.
fn netbox_conformance(fault_rate: f64) -> usize {
    let f = NetBoxFixture::start(150);
    f.state().set_random_faults(fault_rate, 5);
    let config = f.config("nb.toml", "");
    conformance(&f, &config);
    f.state().requests().len()
}

#[test]
fn the_netbox_component_is_conformant_with_and_without_faults() {
    let clean = netbox_conformance(0.0);
    // One list request in five: a 502 or 503 page, or a 429 with Retry-After.
    let faulted = netbox_conformance(0.2);
    assert!(
        faulted > clean,
        "{faulted} requests with faults, {clean} without"
    );
}

#[test]
fn a_url_that_is_not_netbox_is_told_to_the_operator() {
    // The ServiceNow emulator: an HTTP server with its own API and refusals.
    let other = connector_e2e::Fixture::start(3);
    let f = NetBoxFixture::start(3);
    let text = std::fs::read_to_string(f.config("nb.toml", "")).unwrap();
    let config = f.dir.path().join("wrong.toml");
    std::fs::write(
        &config,
        text.replace(&f.netbox.base_url(), &other.emulator.base_url()),
    )
    .unwrap();
    for command in ["check", "sync"] {
        let (code, message) = f
            .cli(&[command, "--config", config.to_str().unwrap()])
            .err();
        assert_eq!(code, 1, "{command}");
        assert!(
            message.contains("not NetBox's API")
                && message.contains("`url`")
                && !message.contains("token"),
            "{command}: {message}"
        );
    }
}

/// The Python NetBox connector (`examples/python-netbox`, built by
/// componentize-py), whose path `tests/run-all.sh` passes in
/// `PYTHON_NETBOX_COMPONENT` after building it.
fn python_component() -> std::path::PathBuf {
    std::env::var_os("PYTHON_NETBOX_COMPONENT")
        .map(std::path::PathBuf::from)
        .expect(
            "PYTHON_NETBOX_COMPONENT names the built Python connector (tests/run-all.sh builds it)",
        )
}

/// A configuration loading the Python component.
fn python_config(f: &NetBoxFixture, file: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(f.config(file, ""))
        .unwrap()
        .replace(
            "connector = \"netbox\"",
            &format!("plugin = {:?}", python_component().display().to_string()),
        );
    let path = f.dir.path().join(file);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
#[ignore = "needs the Python component: tests/run-all.sh builds it with componentize-py and runs this"]
fn the_python_connector_reads_the_same_devices_and_is_conformant_with_and_without_faults() {
    let f = NetBoxFixture::start(2500);
    let config = python_config(&f, "py.toml");
    f.sync(&config).ok();
    let stored = by_id(f.export(&config, "devices", &[]));
    assert!(
        stored == f.expected("devices"),
        "the Python connector's devices differ from the data"
    );
    let mut requests = Vec::new();
    for fault_rate in [0.0, 0.2] {
        f.state().set_random_faults(fault_rate, 3);
        let before = f.state().requests().len();
        conformance(&f, &config);
        requests.push(f.state().requests().len() - before);
    }
    assert!(
        requests[1] > requests[0],
        "faults cost no retries: {requests:?}"
    );
}

#[test]
fn sync_reads_only_the_streams_it_is_given() {
    let f = NetBoxFixture::start(40);
    let config = f.config("nb.toml", "");
    let path = config.to_str().unwrap();
    f.cli(&["sync", "--config", path, "--stream", "devices"])
        .ok();
    assert_eq!(f.export(&config, "devices", &[]).len(), 40);
    assert!(f.export(&config, "interfaces", &[]).is_empty());
    let (code, message) = f
        .cli(&["sync", "--config", path, "--stream", "vlans"])
        .err();
    assert_eq!(code, 2);
    assert!(
        message.contains("no stream `vlans`")
            && message.contains("devices, interfaces, ip_addresses"),
        "{message}"
    );
}
