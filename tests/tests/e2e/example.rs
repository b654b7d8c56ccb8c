//! The guide's example connector (`examples/inventory`), written with the SDK
//! and knowing nothing of this host, run by the host against its JSON API
//! on 127.0.0.1: the host finds the endpoint from the setting the component
//! declares, writes the key as `Authorization: Token <key>`, and stores
//! every record exactly once.

use connector_e2e::inventory::{InventoryServer, EXAMPLE_COMPONENT};
use connector_e2e::Fixture;
use std::collections::HashMap;

const TOKEN: &str = "0123456789abcdef";

fn config(f: &Fixture, server: &InventoryServer) -> std::path::PathBuf {
    server.config(f.dir.path(), EXAMPLE_COMPONENT, "", "page_size = 7")
}

fn env(token: &str) -> HashMap<String, String> {
    InventoryServer::env(token)
}

#[test]
fn the_example_connector_syncs_every_device_once() {
    let f = Fixture::start(1);
    let server = InventoryServer::start(40, TOKEN);
    let path = config(&f, &server);
    let config = path.to_str().unwrap();
    let info = f
        .cli(&[
            "info",
            "--plugin",
            f.dir.path().join("component.wasm").to_str().unwrap(),
        ])
        .ok();
    assert!(info.contains("url [required] [endpoint"), "{info}");
    assert!(
        info.contains("api-key (authorization: Token <key>)"),
        "{info}"
    );
    f.cli_with_env(&["sync", "--config", config], &env(TOKEN))
        .ok();
    // Twice: the second full read finds the same records, none doubled.
    f.cli_with_env(&["sync", "--full", "--config", config], &env(TOKEN))
        .ok();
    let exported = f
        .cli(&["export", "--config", config, "--stream", "devices"])
        .ok();
    let mut records: Vec<serde_json::Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Integer keys are stored as their digits: export's key order is text order.
    let ids: Vec<u64> = records.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0].to_string() < w[1].to_string()),
        "{ids:?}"
    );
    records.sort_by_key(|r| r["id"].as_u64());
    assert_eq!(records, InventoryServer::expected_records(40));
}

#[test]
fn a_wrong_token_is_reported_as_rejected_credentials() {
    let f = Fixture::start(1);
    let server = InventoryServer::start(3, TOKEN);
    let path = config(&f, &server);
    let (code, message) = f
        .cli_with_env(&["sync", "--config", path.to_str().unwrap()], &env("wrong"))
        .err();
    assert_eq!(code, 1, "{message}");
    assert!(
        message.contains("The inventory server rejected the credentials (HTTP 401"),
        "{message}"
    );
    assert!(!message.contains(TOKEN), "{message}");
}
