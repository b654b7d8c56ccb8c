//! A local ServiceNow Table API emulator.
//!
//! Tests, the demo and the benchmarks run against it. It serves generated,
//! deterministic CMDB data (devices of several computer classes, network
//! adapters, business applications) through `GET /api/now/table/{table}` with
//! Basic authentication, roles, encoded queries, keyset and offset paging,
//! `sysparm_fields`, `X-Total-Count` and `Link`, row-level ACLs that empty
//! pages after the limit is applied, and scripted faults (429, 5xx, HTML
//! pages, cancelled transactions).
//!
//! ```no_run
//! use servicenow_emulator::{Emulator, EmulatorConfig};
//! let emulator = Emulator::start(EmulatorConfig::default()).unwrap();
//! println!("serving {} devices at {}", 100, emulator.base_url());
//! ```

pub mod auth;
pub mod data;
pub mod faults;
pub mod limits;
pub mod mutator;
pub mod query;
pub mod server;
pub mod tls;

pub use auth::{OAuthClient, User};
pub use data::{generate, DataSpec, Database, Table};
pub use faults::{Fault, FaultRule, RandomFaults};
pub use limits::RateRule;
pub use mutator::{Mutation, MutationKind};
pub use server::{RequestRecord, State};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The generated data.
    pub data: DataSpec,
    /// Users; the default is `admin`/`admin` with the `admin` role and
    /// `svc_exposure`/`exposure` with `cmdb_read`.
    pub users: Vec<User>,
    /// Added latency per request.
    pub latency: Duration,
    /// Time each new connection waits before it is served (the handshakes'
    /// round trips; see [`State::with_wan`]).
    pub handshake: Duration,
    /// Server time per row a list answer returns.
    pub row_time: Duration,
    /// Serve HTTPS with a generated certificate (see [`Emulator::ca_pem`]).
    pub tls: bool,
    /// With `tls`: accept only clients presenting a certificate of the
    /// generated CA (see [`Emulator::client_identity_pem`]).
    pub require_client_cert: bool,
    /// OAuth clients accepted at `/oauth_token.do`.
    pub oauth_clients: Vec<OAuthClient>,
    /// Whether the client-credentials grant is enabled.
    pub client_credentials: bool,
    /// API keys (`x-sn-apikey`) and the users they act as.
    pub api_keys: Vec<(String, String)>,
    /// Access-token lifetime.
    pub token_lifetime: Duration,
    /// Requests served at once (None: unlimited); see [`State::with_semaphore`].
    pub max_concurrent: Option<usize>,
    /// Requests queued beyond `max_concurrent` before a bare 429.
    pub queue_depth: usize,
    /// Changes per second made to the data while serving (0: none).
    pub mutations_per_second: f64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: DataSpec {
                devices: 100,
                seed: 1,
            },
            users: vec![
                User::new("admin", "admin", &["admin"]),
                User::new("svc_exposure", "exposure", &["cmdb_read"]),
            ],
            latency: Duration::ZERO,
            handshake: Duration::ZERO,
            row_time: Duration::ZERO,
            tls: false,
            require_client_cert: false,
            oauth_clients: Vec::new(),
            client_credentials: false,
            api_keys: Vec::new(),
            token_lifetime: Duration::from_secs(1800),
            max_concurrent: None,
            queue_depth: 50,
            mutations_per_second: 0.0,
        }
    }
}

fn router(state: Arc<State>) -> axum::Router {
    axum::Router::new().fallback(move |req: axum::extract::Request| {
        let state = state.clone();
        async move { server::handle(&state, req).await }
    })
}

/// Serves `state` over plain HTTP on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) -> std::io::Result<()> {
    accept_loop(listener, state, None).await
}

/// Serves `state` over HTTPS on `listener` until the future is dropped.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    accept_loop(
        listener,
        state,
        Some(tokio_rustls::TlsAcceptor::from(config)),
    )
    .await
}

/// Accepts connections (counting them in `state`) and serves each with
/// keep-alive, over TLS when `tls` is given.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let app = router(state.clone());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // A connection that failed while queued concerns that client only.
            Err(e) if is_connection_error(&e) => continue,
            // Out of file descriptors or the like: wait for some to close, as
            // `axum::serve` does, rather than stop serving.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        state.connection_accepted();
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let app = app.clone();
        let handshake = state.handshake;
        tokio::spawn(async move {
            if !handshake.is_zero() {
                tokio::time::sleep(handshake).await;
            }
            match tls {
                Some(acceptor) => match acceptor.accept(stream).into_fallible().await {
                    Ok(stream) => serve_connection(app, stream).await,
                    // A failed handshake concerns that client only; its
                    // alert is sent.
                    Err((_, stream)) => close_after_the_client(stream).await,
                },
                None => serve_connection(app, stream).await,
            }
        });
    }
}

/// Closes `stream` once the client has closed its side (at most 5 s
/// later), reading what it sent meanwhile. A connection closed with bytes
/// unread is reset, and a reset may make the client lose what it had not
/// read yet: a TLS 1.3 client sends its request right after its half of
/// the handshake, and the alert refusing it (a client certificate
/// required) would then be lost some of the times.
async fn close_after_the_client(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    let _ = stream.shutdown().await;
    let mut sink = tokio::io::sink();
    let drained = tokio::io::copy(&mut stream, &mut sink);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drained).await;
}

/// Serves HTTP/1 or HTTP/2 on one connection until it closes.
async fn serve_connection<S>(app: axum::Router, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// An emulator running on its own thread and runtime; stops when dropped.
pub struct Emulator {
    state: Arc<State>,
    addr: SocketAddr,
    ca_pem: Option<String>,
    client_identity_pem: Option<(String, String)>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    /// Generates the data and starts serving; returns once the port is bound.
    pub fn start(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let db = generate(config.data);
        let tls = config
            .tls
            .then(|| tls::generate(config.require_client_cert))
            .transpose()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let state = Arc::new(
            State::new(db, config.users, config.latency, scheme)
                .with_semaphore(config.max_concurrent, config.queue_depth)
                .with_wan(config.handshake, config.row_time),
        );
        state.configure_auth(|auth| {
            auth.clients = config.oauth_clients.clone();
            auth.client_credentials_enabled = config.client_credentials;
            auth.api_keys = config.api_keys.iter().cloned().collect();
            auth.token_lifetime = config.token_lifetime;
        });
        let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        let client_identity_pem = tls
            .as_ref()
            .map(|t| (t.client_cert_pem.clone(), t.client_key_pem.clone()));
        let server_config = tls.map(|t| t.server_config);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let server = ServerThread {
            listen: config.listen,
            mutations_per_second: config.mutations_per_second,
            mutation_seed: config.data.seed ^ 0x5EED,
            state: state.clone(),
            tls: server_config,
        };
        let thread = std::thread::Builder::new()
            .name("servicenow-emulator".into())
            .spawn(move || server.run(addr_tx, shutdown_rx))?;
        let addr = addr_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the emulator thread stopped before listening"))??;
        Ok(Emulator {
            state,
            addr,
            ca_pem,
            client_identity_pem,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.state.scheme, self.addr)
    }

    /// The PEM certificate of the CA that signed the emulator's certificate (TLS only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A client certificate and its key (PEM) signed by the emulator's CA
    /// (TLS only): what a client presents where `require_client_cert` is set.
    pub fn client_identity_pem(&self) -> Option<(&str, &str)> {
        self.client_identity_pem
            .as_ref()
            .map(|(cert, key)| (cert.as_str(), key.as_str()))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (data, faults, ACLs, request log).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }
}

/// What the emulator's own thread serves, and how.
struct ServerThread {
    listen: SocketAddr,
    mutations_per_second: f64,
    mutation_seed: u64,
    state: Arc<State>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl ServerThread {
    /// Listens, reports the bound address (or why not) on `bound`, then
    /// serves (and mutates the data, if asked) until `shutdown`.
    fn run(
        self,
        bound: std::sync::mpsc::Sender<anyhow::Result<SocketAddr>>,
        shutdown: tokio::sync::oneshot::Receiver<()>,
    ) {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = bound.send(Err(anyhow::Error::from(e)));
                return;
            }
        };
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::bind(self.listen).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = bound.send(Err(anyhow::anyhow!(
                        "cannot listen on {}: {e}",
                        self.listen
                    )));
                    return;
                }
            };
            let _ = bound.send(listener.local_addr().map_err(Into::into));
            let mutator = mutator::run(
                self.state.clone(),
                self.mutations_per_second,
                self.mutation_seed,
            );
            let state = self.state;
            let server = async move {
                match self.tls {
                    Some(c) => serve_tls(listener, state, c).await,
                    None => serve(listener, state).await,
                }
            };
            tokio::select! {
                _ = server => {}
                _ = mutator => {}
                _ = shutdown => {}
            }
        });
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    /// Sends one keep-alive read on `connection` and reads its answer whole.
    async fn one_read(connection: &mut BufReader<tokio::net::TcpStream>) -> String {
        let request = "GET /api/now/table/cmdb_ci_computer?sysparm_limit=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dTpw\r\n\r\n";
        connection
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            connection.read_line(&mut line).await.unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        connection.read_exact(&mut body).await.unwrap();
        head
    }

    /// On tokio's paused clock (real sockets on 127.0.0.1): a new connection
    /// waits the handshake time once; the next read on it does not.
    #[tokio::test(start_paused = true)]
    async fn a_new_connection_costs_the_handshake_once() {
        let db = generate(DataSpec {
            devices: 10,
            seed: 1,
        });
        let users = vec![User::new("u", "p", &["cmdb_read"])];
        let state = State::new(db, users, Duration::ZERO, "http")
            .with_wan(Duration::from_millis(160), Duration::ZERO);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(state)));

        let started = tokio::time::Instant::now();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut connection = BufReader::new(stream);
        let head = one_read(&mut connection).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(started.elapsed(), Duration::from_millis(160));

        let started = tokio::time::Instant::now();
        let head = one_read(&mut connection).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(started.elapsed(), Duration::ZERO, "the connection was kept");
    }
}
