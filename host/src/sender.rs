//! Sending one HTTP request for the component (and for the host's own OAuth
//! token requests): DNS resolution with an address check, an optional HTTPS
//! proxy (CONNECT), TLS with the Mozilla roots plus an optional CA bundle,
//! and the connect / first-byte / between-bytes time-outs.
//!
//! Why not `wasmtime_wasi_http::default_send_request`: it connects to
//! whatever a name resolves to and trusts only the built-in roots. A
//! connector host must not let a DNS answer (rebinding, a poisoned resolver)
//! point the component at the internal network, and corporate networks need
//! their own CA and proxy.

use crate::origin::Origin;
use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// The future that drives a connection after its response arrived.
pub type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// How the host reaches the instance.
pub struct Sender {
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<String>,
    /// The instance is a loopback IP written in the configuration: loopback
    /// addresses are allowed (and no proxy is used).
    loopback: bool,
}

/// Whether an address is on the public internet (not private, loopback,
/// link-local, metadata, shared, documentation, multicast or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)
                || (first == 0x64 && v6.segments()[1] == 0xff9b))
        }
    }
}

impl Sender {
    /// A sender for `origin`, trusting the Mozilla roots plus the
    /// certificates in `ca_file`, and tunnelling through `proxy` (`host:port`).
    pub fn new(
        origin: &Origin,
        ca_file: Option<&Path>,
        proxy: Option<String>,
    ) -> Result<Sender, String> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_file {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    format!(
                        "the CA file {} is not PEM certificates: {e}",
                        path.display()
                    )
                })?;
            if certs.is_empty() {
                return Err(format!(
                    "the CA file {} holds no certificate",
                    path.display()
                ));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    format!(
                        "the CA file {} holds an unusable certificate: {e}",
                        path.display()
                    )
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up failed: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Sender {
            tls: Arc::new(tls),
            proxy,
            loopback: origin.is_loopback_ip(),
        })
    }

    /// Sends `request`, applying the time-outs in `options`.
    pub async fn send(
        &self,
        mut request: http::Request<WasiBody>,
        options: RequestOptions,
    ) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
        let uri = request.uri().clone();
        let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = uri.scheme() == Some(&Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let connect_timeout = options.connect_timeout.unwrap_or(Duration::from_secs(60));
        let stream = tokio::time::timeout(connect_timeout, self.connect(&host, port))
            .await
            .map_err(|_| Error::ConnectionTimeout)??;
        let stream: Box<dyn Stream> = if tls {
            let name = match host.parse::<IpAddr>() {
                Ok(ip) => ServerName::from(ip),
                Err(_) => {
                    ServerName::try_from(host.clone()).map_err(|_| Error::HttpRequestUriInvalid)?
                }
            };
            let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
            let handshake = tokio::time::timeout(connect_timeout, connector.connect(name, stream))
                .await
                .map_err(|_| Error::ConnectionTimeout)?;
            Box::new(handshake.map_err(tls_error)?)
        } else {
            stream
        };
        let (mut sender, conn) = tokio::time::timeout(
            connect_timeout,
            hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
        )
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
        // Only the path goes on the request line (the Host header names the server).
        *request.uri_mut() = http::Uri::builder()
            .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
            .build()
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        let first_byte = options
            .first_byte_timeout
            .unwrap_or(Duration::from_secs(60));
        let between_bytes = options
            .between_bytes_timeout
            .unwrap_or(Duration::from_secs(60));
        let mut conn = Box::pin(conn);
        let response = {
            let send = sender.send_request(request);
            tokio::pin!(send);
            // Drive the connection while waiting for the response head.
            let wait = async {
                tokio::select! {
                    r = &mut send => r.map_err(Error::from),
                    c = &mut conn => {
                        c.map_err(Error::from)?;
                        send.await.map_err(Error::from)
                    }
                }
            };
            tokio::time::timeout(first_byte, wait)
                .await
                .map_err(|_| Error::ConnectionReadTimeout)??
        };
        drop(sender);
        let response = response.map(|incoming| {
            TimeoutBody {
                inner: incoming,
                timeout: between_bytes,
                sleep: Box::pin(tokio::time::sleep(between_bytes)),
            }
            .boxed_unsync()
        });
        let io: IoFuture = Box::new(async move { conn.await.map_err(Error::from) });
        Ok((response, io))
    }

    async fn connect(&self, host: &str, port: u16) -> Result<Box<dyn Stream>, Error> {
        if let (Some(proxy), false) = (&self.proxy, self.loopback) {
            return self.tunnel(proxy, host, port).await;
        }
        let candidates: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| Error::DnsError {
                    rcode: Some(format!("{host} could not be resolved")),
                    info_code: None,
                })?
                .collect(),
        };
        let allowed: Vec<SocketAddr> = candidates
            .iter()
            .copied()
            .filter(|a| is_public(a.ip()) || (self.loopback && a.ip().is_loopback()))
            .collect();
        if allowed.is_empty() {
            tracing::warn!(
                target: "egress",
                host,
                addresses = ?candidates,
                "refused: the instance does not resolve to a public address"
            );
            return Err(Error::DestinationIpProhibited);
        }
        let mut last = Error::ConnectionRefused;
        for addr in allowed {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(Box::new(s));
                }
                Err(e) => last = Error::Connect(e),
            }
        }
        Err(last)
    }

    /// Opens a tunnel to `host:port` through the proxy with HTTP CONNECT.
    async fn tunnel(&self, proxy: &str, host: &str, port: u16) -> Result<Box<dyn Stream>, Error> {
        let mut stream = TcpStream::connect(proxy).await.map_err(Error::Connect)?;
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let hello = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        stream
            .write_all(hello.as_bytes())
            .await
            .map_err(Error::Connect)?;
        // Read the proxy's answer head byte by byte: nothing past it may be consumed.
        let mut head = Vec::with_capacity(256);
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 8192 {
                return Err(Error::DestinationUnavailable);
            }
            let byte = stream.read_u8().await.map_err(Error::Connect)?;
            head.push(byte);
        }
        let status_line = String::from_utf8_lossy(&head);
        let ok = status_line
            .split_whitespace()
            .nth(1)
            .is_some_and(|code| code.starts_with('2'));
        if !ok {
            tracing::warn!(target: "egress", proxy, answer = %status_line.lines().next().unwrap_or(""), "the proxy refused the tunnel");
            return Err(Error::DestinationUnavailable);
        }
        Ok(Box::new(stream))
    }
}

fn tls_error(e: std::io::Error) -> Error {
    let certificate = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
    if certificate {
        Error::TlsCertificateError
    } else {
        Error::TlsProtocolError
    }
}

/// A response body that fails when no frame arrives within `timeout`.
struct TimeoutBody {
    inner: hyper::body::Incoming,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Body for TimeoutBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + this.timeout;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "192.0.2.1",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "::",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "149.96.1.1",
            "8.8.8.8",
            "2620:0:2d0:200::7",
            "::ffff:149.96.1.1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
