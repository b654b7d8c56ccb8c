//! The raw `wasi:http` transport: no async runtime, one request at a time,
//! blocking on the host's pollable. (An async client was measured to turn
//! host denials into "connection reset" now and then; raw calls never did.)

use super::{Request, Response, TransportError};
use crate::settings::Scheme;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingRequest, RequestOptions,
};
use wasip2::io::streams::StreamError;

/// Bytes asked for per read of a response body.
const READ_CHUNK: u64 = 1 << 20;
/// Largest body buffer allocated up front from `Content-Length` (the host caps bodies anyway).
const MAX_PRESIZE: usize = 64 << 20;

/// Sends `request` and reads the whole response.
pub(super) fn send(request: &Request) -> Result<Response, TransportError> {
    let outgoing = outgoing_request(request)?;
    let future = outgoing_handler::handle(outgoing, Some(options(request))).map_err(from_code)?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(from_code(code)),
        Some(Err(())) | None => {
            return Err(TransportError::Other(
                "the response future was already consumed".into(),
            ))
        }
    };
    let status = response.status();
    let headers: Vec<(String, String)> = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect();
    let body = read_body(
        response
            .consume()
            .map_err(|_| TransportError::Other("the response body was already consumed".into()))?,
        &headers,
    )?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn outgoing_request(request: &Request) -> Result<OutgoingRequest, TransportError> {
    let mut fields: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), v.as_bytes().to_vec()))
        .collect();
    if !request.headers.iter().any(|(n, _)| n == "accept") {
        fields.push(("accept".into(), b"application/json".to_vec()));
    }
    let headers = Fields::from_list(&fields).map_err(|e| {
        TransportError::Denied(format!("the host refused the request headers: {e:?}"))
    })?;
    let outgoing = OutgoingRequest::new(headers);
    let invalid =
        |what: &str| TransportError::Other(format!("the host refused the request {what}"));
    let scheme = match request.scheme {
        Scheme::Https => wasip2::http::types::Scheme::Https,
        Scheme::Http => wasip2::http::types::Scheme::Http,
    };
    outgoing
        .set_method(&Method::Get)
        .map_err(|_| invalid("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|_| invalid("scheme"))?;
    outgoing
        .set_authority(Some(&request.authority))
        .map_err(|_| invalid("authority"))?;
    outgoing
        .set_path_with_query(Some(&request.path_and_query))
        .map_err(|_| invalid("path"))?;
    Ok(outgoing)
}

fn options(request: &Request) -> RequestOptions {
    let options = RequestOptions::new();
    let ns = |d: std::time::Duration| Some(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    // A host may refuse to let the guest set time-outs; its own apply then.
    let _ = options.set_connect_timeout(ns(request.timeouts.connect));
    let _ = options.set_first_byte_timeout(ns(request.timeouts.first_byte));
    let _ = options.set_between_bytes_timeout(ns(request.timeouts.between_bytes));
    options
}

fn read_body(body: IncomingBody, headers: &[(String, String)]) -> Result<Vec<u8>, TransportError> {
    let stream = body
        .stream()
        .map_err(|_| TransportError::Other("the response body stream is unavailable".into()))?;
    let declared = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_PRESIZE);
    let mut bytes = Vec::with_capacity(declared);
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                // The first line says what happened; the rest may be a host backtrace.
                let detail = e
                    .to_debug_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                drop(stream);
                return Err(match wasip2::http::types::http_error_code(&e) {
                    Some(code) => from_code(code),
                    None => TransportError::Other(format!("reading the response body: {detail}")),
                });
            }
        }
    }
    drop(stream);
    let _trailers = IncomingBody::finish(body);
    Ok(bytes)
}

fn from_code(code: ErrorCode) -> TransportError {
    let detail = format!("{code:?}");
    match code {
        ErrorCode::DnsError(_) | ErrorCode::DnsTimeout => TransportError::Dns(detail),
        ErrorCode::DestinationIpProhibited => TransportError::Prohibited(detail),
        ErrorCode::ConnectionRefused
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::DestinationNotFound => TransportError::Connect(detail),
        ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_) => TransportError::Tls(detail),
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout => TransportError::Timeout(detail),
        ErrorCode::HttpRequestDenied => TransportError::Denied(detail),
        ErrorCode::HttpResponseBodySize(_) => TransportError::BodyTooLarge(detail),
        _ => TransportError::Other(detail),
    }
}
