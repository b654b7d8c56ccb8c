//! The HTTP transport the connector logic runs on.
//!
//! The ServiceNow logic only needs "GET this path on the instance". In the
//! component the transport is `wasi:http` (see `component.rs`); in native tests
//! and benchmarks it is a plain HTTP client or a scripted fake.

/// URL scheme of the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `https://` (every real instance).
    Https,
    /// `http://` (loopback test servers only; the host enforces that).
    Http,
}

impl Scheme {
    /// `"https"` or `"http"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// One GET request to the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Scheme.
    pub scheme: Scheme,
    /// `host[:port]`.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

/// A complete HTTP response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request produced no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The host name did not resolve.
    Dns(String),
    /// The TCP connection was refused or failed.
    Connect(String),
    /// The TLS handshake or certificate check failed.
    Tls(String),
    /// A connect, first-byte or between-bytes time-out.
    Timeout(String),
    /// The host's network policy refused the request.
    Denied(String),
    /// The name resolved only to addresses the host refuses (private, local).
    Prohibited(String),
    /// The response body exceeded the host's size cap.
    BodyTooLarge(String),
    /// Anything else (connection reset, protocol error, ...).
    Other(String),
}

/// Sends GET requests. Implemented by the `wasi:http` transport in the
/// component and by test doubles natively.
pub trait Transport {
    /// Sends `request` and returns the whole response.
    fn get(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError>;

    /// Passes a warning for the operator to the host (the component sends it
    /// to the contract's `log` import); a read goes on after it. Test doubles
    /// may ignore it.
    fn warn(&mut self, message: &str) {
        let _ = message;
    }
}
