//! The small JSON inventory API the guide's example connector reads:
//! `GET /api/devices?after=ID&limit=N` with `Authorization: Token <key>`,
//! served on 127.0.0.1 from its own thread.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The example connector component (`examples/inventory`).
pub static EXAMPLE_COMPONENT: &[u8] = include_bytes!(env!("EXAMPLE_COMPONENT_PATH"));

/// The example broken one way per `violation` setting (`tests/components/broken`).
pub static BROKEN_COMPONENT: &[u8] = include_bytes!(env!("BROKEN_COMPONENT_PATH"));

/// The variable the configurations read the key from.
pub const TOKEN_VAR: &str = "INVENTORY_TOKEN";

/// The broken component built with `bad-info`: its `info` breaks the contract.
pub static BROKEN_INFO_COMPONENT: &[u8] = include_bytes!(env!("BROKEN_INFO_COMPONENT_PATH"));

/// A running inventory server.
pub struct InventoryServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

struct Inventory {
    /// Devices as the API serves them, in id order.
    devices: Vec<serde_json::Value>,
    token: String,
}

impl InventoryServer {
    /// Serves `count` generated devices to clients sending `token`.
    pub fn start(count: u64, token: &str) -> InventoryServer {
        let inventory = Arc::new(Inventory {
            devices: (1..=count).map(device).collect(),
            token: token.to_string(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new()
                    .route("/api/devices", get(devices))
                    .with_state(inventory);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        InventoryServer {
            url,
            shutdown: Some(shutdown),
        }
    }

    /// Writes `inventory.toml` in `dir` for `component` (written beside it)
    /// reading this server with the key from `INVENTORY_TOKEN`; `settings`
    /// are more lines under `[settings]`, `sync` under `[sync]`.
    pub fn config(&self, dir: &Path, component: &[u8], settings: &str, sync: &str) -> PathBuf {
        let plugin = dir.join("component.wasm");
        std::fs::write(&plugin, component).expect("writing the component");
        let path = dir.join("inventory.toml");
        let text = format!(
            "database = \"example.db\"\nplugin = {:?}\n[settings]\nurl = {:?}\n{settings}\n[sync]\n{sync}\n[auth]\nmethod = \"api-key\"\napi_key_env = \"{TOKEN_VAR}\"\n",
            plugin.display().to_string(),
            self.url
        );
        std::fs::write(&path, text).expect("writing the config");
        path
    }

    /// The environment that gives `token` as the configurations' key.
    pub fn env(token: &str) -> HashMap<String, String> {
        HashMap::from([(TOKEN_VAR.to_string(), token.to_string())])
    }

    /// The records the example connector should produce, in id order.
    pub fn expected_records(count: u64) -> Vec<serde_json::Value> {
        (1..=count)
            .map(|id| {
                let mut d = device(id);
                let updated = d["updated"].take();
                let record = d.as_object_mut().expect("object");
                record.remove("updated");
                record.insert("updatedAt".into(), updated);
                d
            })
            .collect()
    }
}

impl Drop for InventoryServer {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

/// Device `id`: every third one has no OS.
fn device(id: u64) -> serde_json::Value {
    let mut d = serde_json::json!({
        "id": id,
        "name": format!("host-{id:04}"),
        "updated": format!("2026-11-{:02}T10:00:00Z", 1 + id % 28),
    });
    if !id.is_multiple_of(3) {
        d["os"] = serde_json::json!(if id.is_multiple_of(2) {
            "linux"
        } else {
            "windows"
        });
    }
    d
}

async fn devices(
    State(inventory): State<Arc<Inventory>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let expected = format!("Token {}", inventory.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, "{\"detail\":\"Invalid token\"}").into_response();
    }
    let number = |name: &str, default: u64| {
        query
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (after, limit) = (number("after", 0), number("limit", 50).min(500) as usize);
    let page: Vec<&serde_json::Value> = inventory
        .devices
        .iter()
        .filter(|d| d["id"].as_u64().is_some_and(|id| id > after))
        .take(limit)
        .collect();
    axum::Json(serde_json::json!({ "devices": page })).into_response()
}
