//! A small blocking HTTP client over `wasi:http`, and the types connector
//! logic sees: [`Request`], [`Response`], [`TransportError`].
//!
//! Connector logic takes a `&mut dyn Http`: [`WasiHttp`] in the component,
//! [`crate::testing::FakeHttp`] in native tests. The host decides what
//! actually leaves the sandbox: it allows only the endpoint's origin, adds
//! the credential, clamps the time-outs and caps the body, and each of its
//! refusals arrives here as a typed [`TransportError`].

use crate::settings::{Endpoint, Scheme};
use crate::types::ConnectorError;
use std::time::Duration;

/// Characters escaped in a query name or value: everything but the
/// unreserved set of RFC 3986.
const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Time-outs a request asks for; the host may clamp them further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting (TCP and TLS).
    pub connect: Duration,
    /// From sending the request to the response's first byte.
    pub first_byte: Duration,
    /// Between two chunks of the response body.
    pub between_bytes: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            first_byte: Duration::from_secs(120),
            between_bytes: Duration::from_secs(60),
        }
    }
}

/// One GET request to the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Scheme.
    pub scheme: Scheme,
    /// `host[:port]`.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
    /// Extra request headers (names lower case). `accept: application/json`
    /// is sent unless set here.
    pub headers: Vec<(String, String)>,
    /// Time-outs.
    pub timeouts: Timeouts,
}

impl Request {
    /// A GET of `path` (starting with `/`, already percent-encoded) on the endpoint.
    pub fn get(endpoint: &Endpoint, path: &str) -> Request {
        Request {
            scheme: endpoint.scheme,
            authority: endpoint.authority.clone(),
            path_and_query: path.to_string(),
            headers: Vec::new(),
            timeouts: Timeouts::default(),
        }
    }

    /// Appends `name=value` to the query, percent-encoding both.
    pub fn query(mut self, name: &str, value: &str) -> Request {
        let sep = if self.path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        self.path_and_query.push(sep);
        self.path_and_query
            .extend(percent_encoding::utf8_percent_encode(name, QUERY));
        self.path_and_query.push('=');
        self.path_and_query
            .extend(percent_encoding::utf8_percent_encode(value, QUERY));
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Sets the time-outs.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Request {
        self.timeouts = timeouts;
        self
    }

    /// The request's URL, for messages.
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority,
            self.path_and_query
        )
    }

    /// The host name of the authority (without port or IPv6 brackets).
    pub fn host(&self) -> &str {
        let a = self.authority.as_str();
        match a.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => a.rsplit_once(':').map_or(a, |(h, _)| h),
        }
    }
}

/// A complete HTTP response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Retry-After` in seconds, when the server sent the delta-seconds form.
    pub fn retry_after_seconds(&self) -> Option<u32> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u32>().ok())
    }

    /// A short, printable, one-line excerpt of the body for messages.
    pub fn snippet(&self) -> String {
        snippet(&self.body)
    }
}

/// A short, printable, one-line excerpt of a body for messages:
/// `body starts with `...`` (160 bytes at most), or `empty body`.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(160)]);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.trim().is_empty() {
        "empty body".into()
    } else {
        format!("body starts with `{}`", one_line.trim())
    }
}

/// Why a request produced no complete response.
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
    /// The host's network policy refused the request (not the endpoint).
    Denied(String),
    /// The name resolved only to addresses the host refuses (private, local).
    Prohibited(String),
    /// The response body exceeded the host's size cap.
    BodyTooLarge(String),
    /// Anything else (connection reset, protocol error, ...).
    Other(String),
}

impl TransportError {
    /// The contract's error for this failure, with an operator message.
    /// `noun` names the source in the messages (`instance`, `NetBox server`).
    pub fn to_connector_error(&self, request: &Request, noun: &str) -> ConnectorError {
        let (host, authority) = (request.host(), &request.authority);
        match self {
            TransportError::Dns(d) => ConnectorError::Unreachable(format!(
                "The remote server name could not be resolved: check the {noun} hostname (`{host}`). ({d})"
            )),
            TransportError::Connect(d) => ConnectorError::Unreachable(format!(
                "Could not connect to `{authority}`: check the {noun} address and that this machine may reach it (firewall, proxy). ({d})"
            )),
            TransportError::Tls(d) => ConnectorError::Unreachable(format!(
                "The TLS connection to `{authority}` failed: the server's certificate is not trusted or the handshake failed. Check the address, or configure the CA that signs the {noun}'s certificate. ({d})"
            )),
            TransportError::Timeout(d) => ConnectorError::TemporarilyUnavailable(format!(
                "The request to `{authority}` timed out; the {noun} may be overloaded. It is retried automatically; if it persists, lower the page size. ({d})"
            )),
            TransportError::Denied(d) => ConnectorError::Unreachable(format!(
                "The host's network policy refused the request to `{authority}`: only the configured {noun} may be contacted. ({d})"
            )),
            TransportError::Prohibited(d) => ConnectorError::Unreachable(format!(
                "`{host}` resolves only to addresses that are not public (private, loopback, link-local or cloud metadata), which the host refuses for a non-loopback {noun}. Check the {noun} name and your DNS, or reach it through an HTTPS proxy. ({d})"
            )),
            TransportError::BodyTooLarge(d) => ConnectorError::BadResponse(format!(
                "The response from `{authority}` was larger than the host allows; lower the page size. ({d})"
            )),
            TransportError::Other(d) => ConnectorError::TemporarilyUnavailable(format!(
                "The connection to `{authority}` failed before a complete response arrived; it is retried automatically. ({d})"
            )),
        }
    }
}

/// Sends requests and returns whole responses.
pub trait Http {
    /// Sends `request`; the whole response, or why there is none.
    fn send(&mut self, request: &Request) -> Result<Response, TransportError>;
}

/// The `wasi:http` client of a component: one blocking request per call.
///
/// Outside a WebAssembly component there is no `wasi:http`; there every
/// request fails with [`TransportError::Other`] (use
/// [`crate::testing::FakeHttp`] in native tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct WasiHttp;

impl Http for WasiHttp {
    fn send(&mut self, request: &Request) -> Result<Response, TransportError> {
        #[cfg(target_arch = "wasm32")]
        {
            crate::http::wasi::send(request)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Err(TransportError::Other(format!(
                "wasi:http exists only inside a WebAssembly component; {} was not sent",
                request.url()
            )))
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod wasi;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded_and_hosts_found() {
        let e = Endpoint::parse("url", "https://[::1]:8443").unwrap();
        let r = Request::get(&e, "/api/x/")
            .query("a b", "c&d=é")
            .query("limit", "5");
        assert_eq!(r.path_and_query, "/api/x/?a%20b=c%26d%3D%C3%A9&limit=5");
        assert_eq!(r.host(), "::1");
        let e = Endpoint::parse("url", "nb.example.com:8080").unwrap();
        assert_eq!(Request::get(&e, "/").host(), "nb.example.com");
        assert!(matches!(
            WasiHttp.send(&Request::get(&e, "/")),
            Err(TransportError::Other(_))
        ));
    }

    #[test]
    fn transport_failures_name_the_host_and_case() {
        let e = Endpoint::parse("url", "nope.example.com").unwrap();
        let r = Request::get(&e, "/");
        let m = TransportError::Dns("x".into()).to_connector_error(&r, "instance");
        assert!(
            matches!(m, ConnectorError::Unreachable(ref t) if t.starts_with("The remote server name could not be resolved: check the instance hostname (`nope.example.com`)")),
            "{m:?}"
        );
        assert!(matches!(
            TransportError::Timeout("t".into()).to_connector_error(&r, "server"),
            ConnectorError::TemporarilyUnavailable(_)
        ));
        assert!(matches!(
            TransportError::BodyTooLarge("t".into()).to_connector_error(&r, "server"),
            ConnectorError::BadResponse(_)
        ));
    }
}
