//! A local NetBox REST API emulator.
//!
//! The NetBox connector's tests, the demo and the benchmarks run against it,
//! and NetBox's own Python client (pynetbox) proves it in CI. It serves
//! generated, deterministic DCIM/IPAM data as NetBox 4.5 does:
//! `/api/dcim/devices/`, `/api/dcim/interfaces/`, `/api/ipam/ip-addresses/`
//! and the change log `/api/core/object-changes/`, each with list views
//! (`limit`/`offset` paging capped at 1,000, `count`, `next` links,
//! `ordering`, id lookups, `last_updated__gte`, the endpoint's filters) and
//! detail views; `/api/` with `API-Version` and `/api/status/`. Tokens of
//! both formats authenticate (`Token <v1>` and `Bearer nbt_<key>.<token>`);
//! an invalid one gets NetBox's 403.
//!
//! ```no_run
//! use netbox_emulator::{NetBox, NetBoxConfig};
//! let netbox = NetBox::start(NetBoxConfig::default()).unwrap();
//! println!("serving at {}", netbox.base_url());
//! ```

pub mod data;
pub mod query;
pub mod render;
pub mod server;

pub use data::{generate, DataSpec, Database};
pub use server::{now, RequestRecord, State, Token};

use std::net::SocketAddr;
use std::sync::Arc;

/// A v1 token (40 hexadecimal characters) the default configuration accepts.
pub const V1_TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";
/// A v2 token the default configuration accepts.
pub const V2_TOKEN: &str = "nbt_8Hk2qT4mZx.Wc9vJr3LpN7sYd2FgA6hUe1KoBi5XtMq";

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct NetBoxConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The generated data.
    pub data: DataSpec,
    /// Accepted tokens; by default [`V1_TOKEN`] and [`V2_TOKEN`], both
    /// allowed to view everything.
    pub tokens: Vec<Token>,
}

impl Default for NetBoxConfig {
    fn default() -> Self {
        NetBoxConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: DataSpec {
                devices: 100,
                seed: 1,
            },
            tokens: vec![Token::full(V1_TOKEN), Token::full(V2_TOKEN)],
        }
    }
}

/// The axum application over `state`.
pub fn router(state: Arc<State>) -> axum::Router {
    axum::Router::new().fallback(move |req: axum::extract::Request| {
        let state = state.clone();
        async move { server::handle(&state, req).await }
    })
}

/// An emulator running on its own thread and runtime; stops when dropped.
pub struct NetBox {
    state: Arc<State>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NetBox {
    /// Generates the data and starts serving; returns once the port is bound.
    pub fn start(config: NetBoxConfig) -> anyhow::Result<NetBox> {
        let state = Arc::new(State::new(generate(config.data), config.tokens));
        let std_listener = std::net::TcpListener::bind(config.listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(state.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("netbox-emulator".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = shutdown_rx.await;
                        })
                        .await;
                });
            })?;
        Ok(NetBox {
            state,
            addr,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state (data, tokens, faults, request log).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }
}

impl Drop for NetBox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
