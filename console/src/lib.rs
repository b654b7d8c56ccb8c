//! The operator console of `connector-host serve`: server-rendered pages
//! over the connections a host runs, and the metrics operations teams
//! scrape.
//!
//! The console knows HTTP and HTML, not stores or components: the host
//! gives it a [`Backend`] that answers in the plain types of [`view`].
//!
//! | Route | Session | What |
//! |---|---|---|
//! | `GET /signin?token=…` | no | opens a session from the sign-in link, sends the browser to `/` |
//! | `GET /` | yes | the Data connectors page |
//! | `GET /connections/{id}` | yes | a connection: health, its last runs with their completeness report |
//! | `POST /connections/{id}/sync` | yes, and its CSRF token | "Sync now" |
//! | `GET /connections/{id}/progress` | yes | server-sent events: the schedule and a running sync's progress |
//! | `GET /connections/{id}/disconnect` | yes | asks whether to disconnect, and whether to delete the records |
//! | `POST /connections/{id}/disconnect` | yes, and its CSRF token | "Disconnect" |
//! | `GET /connect/{connector}` | yes | the Connect form, made from the connector's `info` |
//! | `POST /connect/{connector}` | yes, and its CSRF token | "Test connection" (`action=test`) or "Connect" (`action=connect`) |
//! | `GET /connections/{id}/streams/{stream}?q=&offset=` | yes | the record browser: a search, a page at a time |
//! | `GET /connections/{id}/streams/{stream}/records/{key}` | yes | one record, what is embedded into it and what it names |
//! | `GET /assets/console.css`, `/assets/console.js`, `/assets/icon.svg` | no | the stylesheet, the script (follows a sync, shows the chosen sign-in method's fields) and the icon, embedded |
//! | `GET /healthz` | no | `ok` |
//! | `GET /metrics` | no | Prometheus text format |
//!
//! Every response carries a strict Content-Security-Policy (nothing from
//! another origin, no inline script or style), `nosniff`, `no-referrer`
//! (the sign-in link's token never leaves in a `Referer`) and
//! `frame-ancestors 'none'`.
//!
//! ```no_run
//! # async fn example(backend: std::sync::Arc<dyn connector_console::Backend>) -> std::io::Result<()> {
//! use connector_console::{auth::SignInToken, Console};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let token = SignInToken::random();
//! println!("sign in: http://{}/signin?token={}", listener.local_addr()?, token.expose());
//! Console::new(backend, token, false)
//!     .serve(listener, std::future::pending())
//!     .await
//! # }
//! ```

pub mod auth;
pub mod connect;
mod metrics;
mod pages;
mod progress;
mod records;
pub mod tls;
pub mod view;

use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use std::sync::Arc;

pub use connect::form::{
    AuthChoice, AuthField, ConnectRequest, Connected, ConnectorForm, SecretValue, SettingField,
    StreamCheckView, TestOutcome,
};
pub use metrics::exposition;
pub use view::{
    ConnectionDetail, ConnectionView, HealthState, HealthView, LastSync, PartitionRunView,
    ProgressView, RecordView, RecordsView, RunView, ScheduleView, StreamRunView, StreamView,
};

/// What the console asks of the host.
pub trait Backend: Send + Sync + 'static {
    /// Every configured connection, as it is now.
    fn connections(&self) -> anyhow::Result<Vec<ConnectionView>>;

    /// The connection `id` with its recent runs; `None` when there is no such connection.
    fn connection(&self, id: &str) -> anyhow::Result<Option<ConnectionDetail>>;

    /// Starts a sync of connection `id` now (or right after the one
    /// running); `false` when the host keeps no schedule for it.
    fn sync_now(&self, id: &str) -> anyhow::Result<bool>;

    /// Where connection `id`'s schedule stands, without reading its
    /// database (asked twice a second while a browser follows a sync);
    /// `None` when the host keeps no schedule for it.
    fn schedule(&self, id: &str) -> anyhow::Result<Option<ScheduleView>>;

    /// Disconnects connection `id`: no more syncs, and its stored records
    /// deleted when `delete_records`; `false` when there is no such
    /// connection to disconnect.
    fn disconnect(&self, id: &str, delete_records: bool) -> anyhow::Result<bool>;

    /// Page `offset` of the live records of `stream` of connection `id`
    /// whose values, or their embedded records' values, contain `term`;
    /// `None` when there is no such connection or stream.
    fn records(
        &self,
        id: &str,
        stream: &str,
        term: &str,
        offset: u64,
    ) -> anyhow::Result<Option<RecordsView>>;

    /// The live record `key` of `stream` of connection `id`, with the records
    /// embedded into it and those it names; `None` when there is none.
    fn record(&self, id: &str, stream: &str, key: &str) -> anyhow::Result<Option<RecordView>>;

    /// The connectors an operator can connect, each with its form.
    fn connectors_available(&self) -> anyhow::Result<Vec<ConnectorForm>>;

    /// Tests `request` without keeping anything: the connector's `check`.
    fn test_connection(&self, request: &ConnectRequest) -> anyhow::Result<TestOutcome>;

    /// Tests `request` and, when it passes, writes the connection (its
    /// secrets apart, owner-only) and starts its first sync.
    fn connect(&self, request: &ConnectRequest) -> anyhow::Result<Connected>;
}

/// The state every handler shares.
#[derive(Clone)]
pub struct ConsoleState {
    backend: Arc<dyn Backend>,
    /// Becomes `true` when the console stops: open event streams end, so
    /// the graceful shutdown does not wait for browsers to leave.
    closing: tokio::sync::watch::Receiver<bool>,
    /// Secrets waiting between "Test connection" and "Connect".
    drafts: connect::drafts::Drafts,
}

/// The console: a router over a backend, with its sessions.
pub struct Console {
    state: ConsoleState,
    sessions: auth::Sessions,
    close: tokio::sync::watch::Sender<bool>,
}

/// The Content-Security-Policy of every response: only this origin, no
/// inline code, no framing, forms post only here.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

impl Console {
    /// A console over `backend`, opened by `token`; `tls` when the host
    /// serves it over HTTPS (cookies are then `Secure`).
    pub fn new(backend: Arc<dyn Backend>, token: auth::SignInToken, tls: bool) -> Console {
        let (close, closing) = tokio::sync::watch::channel(false);
        Console {
            state: ConsoleState {
                backend,
                closing,
                drafts: Default::default(),
            },
            sessions: auth::Sessions::new(token, tls),
            close,
        }
    }

    /// The routes, with the session check and the security headers.
    pub fn router(self) -> Router {
        let signed_in = Router::new()
            .route("/", get(pages::connectors))
            .route("/connections/{id}", get(pages::connection))
            .route(
                "/connect/{connector}",
                get(connect::start).post(connect::submit),
            )
            .route("/connections/{id}/sync", post(pages::sync_now))
            .route("/connections/{id}/progress", get(progress::events))
            .route(
                "/connections/{id}/disconnect",
                get(pages::confirm_disconnect).post(pages::disconnect),
            )
            .route("/connections/{id}/streams/{stream}", get(records::records))
            .route(
                "/connections/{id}/streams/{stream}/records/{key}",
                get(records::record),
            )
            .with_state(self.state.clone())
            .layer(from_fn_with_state(
                self.sessions.clone(),
                auth::require_session,
            ));
        let open = Router::new()
            .route("/healthz", get(pages::healthz))
            .route("/metrics", get(metrics::metrics))
            .with_state(self.state)
            .route("/assets/console.css", get(pages::stylesheet))
            .route("/assets/console.js", get(pages::script))
            .route("/assets/icon.svg", get(pages::icon))
            .route(
                "/signin",
                get(auth::sign_in).with_state(self.sessions.clone()),
            );
        signed_in.merge(open).layer(from_fn(security_headers))
    }

    /// Serves on `listener` (a `TcpListener`, or a [`tls::TlsListener`])
    /// until `shutdown` completes: requests in flight finish, event streams end.
    pub async fn serve<L>(
        self,
        listener: L,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()>
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let close = self.close.clone();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = close.send(true);
            })
            .await
    }
}

/// Adds the security headers to every response.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
