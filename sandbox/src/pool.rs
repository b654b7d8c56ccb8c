//! Keep-alive HTTP/1 connections to the endpoint, kept between requests.
//!
//! A sync sends hundreds of requests to one origin. Opening a TCP and TLS
//! connection for each costs two round trips before the request leaves
//! (more through a proxy), which on a WAN is as much as the request itself.
//! A connection goes back into the pool once its response has been read to
//! the end (hyper reports it ready again); a response abandoned half-way
//! closes its connection instead. Idle connections are dropped after
//! [`IDLE_TIMEOUT`], before most servers and load balancers close them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::WasiBody;

/// How long an idle connection is kept. Servers close idle connections after
/// their own keep-alive time-out (Apache 5 s, nginx 75 s, load balancers
/// 60 s or more); a connection the server closed in the meantime is detected
/// at reuse and, for a request without a body, replaced transparently.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most idle connections kept per destination.
const MAX_IDLE_PER_DESTINATION: usize = 32;

/// The sending half of an HTTP/1 connection.
pub type Connection = hyper::client::conn::http1::SendRequest<WasiBody>;

/// Where a connection goes: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// HTTPS rather than HTTP.
    pub tls: bool,
    /// Host name or IP address (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

struct Idle {
    connection: Connection,
    since: Instant,
}

/// Idle connections by destination.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<Destination, Vec<Idle>>>,
}

impl Pool {
    /// An idle connection to `destination` that is still open, most recently
    /// used first; stale ones met on the way are closed.
    pub fn take(&self, destination: &Destination) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(destination)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < IDLE_TIMEOUT && entry.connection.is_ready() {
                return Some(entry.connection);
            }
        }
        None
    }

    /// Puts `connection` back once its response has been read to the end;
    /// drops it if it closes first. Needs a Tokio runtime.
    pub fn recycle(self: &Arc<Self>, destination: Destination, mut connection: Connection) {
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            if connection.ready().await.is_err() {
                return;
            }
            if let Some(pool) = pool.upgrade() {
                pool.put(destination, connection);
            }
        });
    }

    fn put(&self, destination: Destination, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(destination).or_default();
        list.retain(|entry| entry.since.elapsed() < IDLE_TIMEOUT && !entry.connection.is_closed());
        if list.len() < MAX_IDLE_PER_DESTINATION {
            list.push(Idle {
                connection,
                since: Instant::now(),
            });
        }
    }

    /// Idle connections held, all destinations together.
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.values().map(Vec::len).sum()
    }
}
