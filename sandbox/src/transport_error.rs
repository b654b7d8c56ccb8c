//! What the component is told when the connection fails: the transport's
//! `hyper` and socket errors as `wasi:http` error codes.
//!
//! `wasmtime-wasi-http` leaves this to [`WasiHttpHooks`]; its defaults log
//! each failure as a warning (a `Debug` dump of hyper's internals) and call
//! every hyper error a protocol error. Here the failure goes to the component
//! as the most exact code there is, the engine retries and reports it in the
//! run report, and the log gets one `debug` line under the `egress` target:
//! a server dropping a kept-alive connection is routine, not a warning on
//! every operator's terminal.
//!
//! [`WasiHttpHooks`]: wasmtime_wasi_http::WasiHttpHooks

use std::error::Error as _;
use std::io::ErrorKind;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

/// The code for a `hyper` error met while a response came in (its head or
/// its body; the component's requests have no body to send).
pub fn from_hyper(err: &hyper::Error) -> ErrorCode {
    let code = classify_hyper(err);
    tracing::debug!(target: "egress", error = %err, ?code, "the connection failed during a response");
    code
}

/// The code for a failure to open a connection (to the server or to the
/// proxy): refused, as `wasmtime-wasi-http` says, or timed out.
pub fn from_connect(err: &std::io::Error) -> ErrorCode {
    let code = match err.kind() {
        ErrorKind::TimedOut => ErrorCode::ConnectionTimeout,
        _ => ErrorCode::ConnectionRefused,
    };
    tracing::debug!(target: "egress", error = %err, ?code, "the connection could not be opened");
    code
}

fn classify_hyper(err: &hyper::Error) -> ErrorCode {
    if err.is_timeout() {
        return ErrorCode::HttpResponseTimeout;
    }
    if err.is_incomplete_message() {
        return ErrorCode::HttpResponseIncomplete;
    }
    match io_error_kind(err) {
        // A body cut short: over TLS, a close without `close_notify`.
        Some(ErrorKind::UnexpectedEof) => ErrorCode::HttpResponseIncomplete,
        Some(ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe) => {
            ErrorCode::ConnectionTerminated
        }
        Some(ErrorKind::TimedOut) => ErrorCode::ConnectionReadTimeout,
        _ if err.is_canceled() || err.is_closed() => ErrorCode::ConnectionTerminated,
        _ => ErrorCode::HttpProtocolError,
    }
}

/// The kind of the I/O error under `err`, if one caused it.
fn io_error_kind(err: &hyper::Error) -> Option<ErrorKind> {
    let mut cause = err.source();
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cause = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// The error a hyper client meets reading the answer of a loopback
    /// server that writes `answer` and then closes the connection.
    async fn error_reading(answer: &'static [u8]) -> hyper::Error {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await.unwrap();
            socket.write_all(answer).await.unwrap();
        });
        let stream = TcpStream::connect(address).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = http::Request::get("/")
            .header("host", "127.0.0.1")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let outcome = match sender.send_request(request).await {
            Ok(response) => response.into_body().collect().await.map(|_| ()),
            Err(e) => Err(e),
        };
        server.await.unwrap();
        outcome.expect_err("the answer is broken")
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_incomplete_response() {
        let err =
            error_reading(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"result\":[").await;
        assert_eq!(
            format!("{:?}", from_hyper(&err)),
            "ErrorCode::HttpResponseIncomplete",
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_head_is_an_incomplete_response() {
        let err = error_reading(b"").await;
        assert_eq!(
            format!("{:?}", from_hyper(&err)),
            "ErrorCode::HttpResponseIncomplete",
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_answer_that_is_not_http_is_a_protocol_error() {
        let err = error_reading(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
        assert_eq!(
            format!("{:?}", from_hyper(&err)),
            "ErrorCode::HttpProtocolError",
            "{err:?}"
        );
    }

    #[test]
    fn a_refused_or_timed_out_connect_keeps_its_code() {
        let refused = std::io::Error::from(ErrorKind::ConnectionRefused);
        let timed_out = std::io::Error::from(ErrorKind::TimedOut);
        assert_eq!(
            format!("{:?}", from_connect(&refused)),
            "ErrorCode::ConnectionRefused"
        );
        assert_eq!(
            format!("{:?}", from_connect(&timed_out)),
            "ErrorCode::ConnectionTimeout"
        );
    }
}
