//! The WebAssembly component: WIT bindings and the `wasi:http` transport.
//!
//! Only compiled for `wasm32`. Converts between the generated WIT types and
//! the plain-Rust types of [`crate::contract`], and sends requests with raw
//! `wasi:http` calls (no async runtime: one request at a time, blocking on
//! the host's pollable).

use crate::contract;
use crate::error::ConnectorError as Error;
use crate::transport::{HttpRequest, HttpResponse, Scheme, Transport, TransportError};

wit_bindgen::generate!({
    path: "../wit",
    world: "connector",
});

use exports::exposure::connector::source::Guest;
use exposure::connector::types as wit;

use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingRequest, RequestOptions};
use wasi::io::streams::StreamError;

struct Component;

impl Guest for Component {
    fn info() -> wit::ConnectorInfo {
        to_wit_info(crate::connector::info())
    }

    fn check(settings: wit::Settings) -> Result<wit::CheckReport, wit::ConnectorError> {
        let streams =
            crate::connector::check(&settings, &mut WasiTransport).map_err(to_wit_error)?;
        Ok(wit::CheckReport {
            streams: streams
                .into_iter()
                .map(|s| wit::StreamCheck {
                    stream_name: s.stream_name,
                    readable: s.readable,
                    missing_columns: s.missing_columns,
                    message: s.message,
                })
                .collect(),
        })
    }

    fn read(
        settings: wit::Settings,
        request: wit::ReadRequest,
    ) -> Result<wit::Page, wit::ConnectorError> {
        let request = contract::ReadRequest {
            stream_name: request.stream_name,
            partition: contract::Partition {
                index: request.partition.index,
                count: request.partition.count,
            },
            cursor: request.cursor,
            watermark: request.watermark,
            deletions_since: request.deletions_since,
            page_size: request.page_size,
        };
        let page = crate::connector::read(&settings, &request, &mut WasiTransport)
            .map_err(to_wit_error)?;
        Ok(wit::Page {
            records: page.records,
            deleted: page
                .deleted
                .into_iter()
                .map(|t| wit::Tombstone {
                    key: t.key,
                    deleted_at: t.deleted_at,
                })
                .collect(),
            window_start: page.window_start,
            next_cursor: page.next_cursor,
            watermark: page.watermark,
            counters: wit::PageCounters {
                rows_requested: page.counters.rows_requested,
                rows_returned: page.counters.rows_returned,
                server_total: page.counters.server_total,
                requests: page.counters.requests,
            },
        })
    }
}

export!(Component);

fn to_wit_error(e: Error) -> wit::ConnectorError {
    match e {
        Error::InvalidSettings(m) => wit::ConnectorError::InvalidSettings(m),
        Error::Unreachable(m) => wit::ConnectorError::Unreachable(m),
        Error::Unauthenticated(m) => wit::ConnectorError::Unauthenticated(m),
        Error::Forbidden(m) => wit::ConnectorError::Forbidden(m),
        Error::NotFound(m) => wit::ConnectorError::NotFound(m),
        Error::RateLimited {
            retry_after_seconds,
            message,
        } => wit::ConnectorError::RateLimited(wit::RateLimit {
            retry_after_seconds,
            message,
        }),
        Error::TemporarilyUnavailable(m) => wit::ConnectorError::TemporarilyUnavailable(m),
        Error::BadResponse(m) => wit::ConnectorError::BadResponse(m),
        Error::Internal(m) => wit::ConnectorError::Internal(m),
    }
}

fn to_wit_info(i: contract::ConnectorInfo) -> wit::ConnectorInfo {
    wit::ConnectorInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        settings: i
            .settings
            .into_iter()
            .map(|s| wit::SettingInfo {
                name: s.name,
                description: s.description,
                required: s.required,
                default_value: s.default_value,
            })
            .collect(),
        auth_methods: i
            .auth_methods
            .into_iter()
            .map(|a| match a {
                contract::AuthMethod::Basic => wit::AuthMethod::Basic,
                contract::AuthMethod::OAuth2 { token_path, grants } => {
                    wit::AuthMethod::Oauth2(wit::Oauth2Method {
                        token_path,
                        grants: grants
                            .into_iter()
                            .map(|g| match g {
                                contract::OAuth2Grant::ClientCredentials => {
                                    wit::Oauth2Grant::ClientCredentials
                                }
                                contract::OAuth2Grant::Password => wit::Oauth2Grant::Password,
                                contract::OAuth2Grant::RefreshToken => {
                                    wit::Oauth2Grant::RefreshToken
                                }
                            })
                            .collect(),
                    })
                }
                contract::AuthMethod::ApiKey { header_name } => {
                    wit::AuthMethod::ApiKey(wit::ApiKeyMethod { header_name })
                }
            })
            .collect(),
        streams: i
            .streams
            .into_iter()
            .map(|s| wit::StreamInfo {
                name: s.name,
                description: s.description,
                key_field: s.key_field,
                json_schema: s.json_schema,
                supports_incremental: s.supports_incremental,
                references: s
                    .references
                    .into_iter()
                    .map(|r| wit::StreamReference {
                        field: r.field,
                        target_stream: r.target_stream,
                        embed_as: r.embed_as,
                    })
                    .collect(),
                updated_field: s.updated_field,
            })
            .collect(),
    }
}

/// Time-outs the component asks for; the host clamps them further.
const CONNECT_TIMEOUT_NS: u64 = 30_000_000_000;
const FIRST_BYTE_TIMEOUT_NS: u64 = 120_000_000_000;
const BETWEEN_BYTES_TIMEOUT_NS: u64 = 60_000_000_000;

/// Bytes asked for per read of a response body.
const READ_CHUNK: u64 = 1 << 20;
/// Largest body buffer allocated up front from `Content-Length`.
const MAX_PRESIZE: usize = 64 << 20;

/// The `content-length` header, if present and numeric.
fn headers_content_length(headers: &[(String, String)]) -> Option<usize> {
    headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// `wasi:http` transport: one blocking GET per call.
struct WasiTransport;

impl Transport for WasiTransport {
    fn warn(&mut self, message: &str) {
        exposure::connector::log::log(exposure::connector::log::Level::Warn, message);
    }

    fn get(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let headers = Fields::from_list(&[("accept".to_string(), b"application/json".to_vec())])
            .map_err(|e| TransportError::Other(format!("building headers: {e:?}")))?;
        let outgoing = OutgoingRequest::new(headers);
        let scheme = match request.scheme {
            Scheme::Https => wasi::http::types::Scheme::Https,
            Scheme::Http => wasi::http::types::Scheme::Http,
        };
        let invalid =
            |what: &str| TransportError::Other(format!("the host refused the request {what}"));
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
        let options = RequestOptions::new();
        // The host may refuse to let the guest set time-outs; its own apply then.
        let _ = options.set_connect_timeout(Some(CONNECT_TIMEOUT_NS));
        let _ = options.set_first_byte_timeout(Some(FIRST_BYTE_TIMEOUT_NS));
        let _ = options.set_between_bytes_timeout(Some(BETWEEN_BYTES_TIMEOUT_NS));

        let future = outgoing_handler::handle(outgoing, Some(options)).map_err(map_error_code)?;
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(map_error_code(code)),
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
        let body_resource = response
            .consume()
            .map_err(|_| TransportError::Other("response body already consumed".into()))?;
        let stream = body_resource
            .stream()
            .map_err(|_| TransportError::Other("response body stream unavailable".into()))?;
        // Sized once from Content-Length (capped: the host caps bodies anyway).
        let declared = headers_content_length(&headers)
            .unwrap_or(0)
            .min(MAX_PRESIZE);
        let mut body = Vec::with_capacity(declared);
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => body.extend_from_slice(&chunk),
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
                    return Err(match wasi::http::types::http_error_code(&e) {
                        Some(code) => map_error_code(code),
                        None => {
                            TransportError::Other(format!("reading the response body: {detail}"))
                        }
                    });
                }
            }
        }
        drop(stream);
        let _trailers = wasi::http::types::IncomingBody::finish(body_resource);
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

fn map_error_code(code: ErrorCode) -> TransportError {
    let detail = format!("{code:?}");
    match code {
        ErrorCode::DnsError(_) => TransportError::Dns(detail),
        ErrorCode::DnsTimeout => TransportError::Dns(detail),
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
