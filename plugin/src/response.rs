//! What a ServiceNow response means: rows, or an operator-ready error.

use crate::error::ConnectorError;
use crate::rows::{Envelope, ErrorBody};
use crate::transport::{HttpRequest, HttpResponse, TransportError};

/// Text ServiceNow puts in a 200 body whose transaction hit the 60 s quota.
const TRANSACTION_CANCELLED: &str = "Transaction cancelled";
/// Marker of the page a hibernating developer instance serves.
const HIBERNATING: &str = "Instance Hibernating page";

/// Turns a transport failure into a connector error.
pub fn transport_error(request: &HttpRequest, e: TransportError) -> ConnectorError {
    let host = host_of(&request.authority);
    match e {
        TransportError::Dns(d) => ConnectorError::Unreachable(format!(
            "The remote server name could not be resolved: check the instance hostname (`{host}`). ({d})"
        )),
        TransportError::Connect(d) => ConnectorError::Unreachable(format!(
            "Could not connect to `{}`: check the instance address and that this machine may reach it (firewall, proxy). ({d})",
            request.authority
        )),
        TransportError::Tls(d) => ConnectorError::Unreachable(format!(
            "The TLS connection to `{}` failed: the server's certificate is not trusted or the handshake failed. Check the address, or configure the CA that signs the instance's certificate. ({d})",
            request.authority
        )),
        TransportError::Timeout(d) => ConnectorError::TemporarilyUnavailable(format!(
            "The request to `{}` timed out; the instance may be overloaded. It is retried automatically; if it persists, lower the page size. ({d})",
            request.authority
        )),
        TransportError::Denied(d) => ConnectorError::Unreachable(format!(
            "The host's network policy refused the request to `{}`: only the configured instance may be contacted. ({d})",
            request.authority
        )),
        TransportError::Prohibited(d) => ConnectorError::Unreachable(format!(
            "`{host}` resolves only to addresses that are not public (private, loopback, link-local or cloud metadata), which the host refuses for a non-loopback instance. Check the instance name and your DNS, or reach the instance through an HTTPS proxy. ({d})"
        )),
        TransportError::BodyTooLarge(d) => ConnectorError::BadResponse(format!(
            "The response from `{}` was larger than the host allows; lower the page size. ({d})",
            request.authority
        )),
        TransportError::Other(d) => ConnectorError::TemporarilyUnavailable(format!(
            "The connection to `{}` failed before a complete response arrived; it is retried automatically. ({d})",
            request.authority
        )),
    }
}

fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split(']').next().map_or(authority, |h| &h[1..]);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn error_detail(body: &[u8]) -> String {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error: Some(e), .. }) => e.describe(),
        _ => snippet(body),
    }
}

/// A short, printable excerpt of a body for error messages.
fn snippet(body: &[u8]) -> String {
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

fn contains(body: &[u8], needle: &str) -> bool {
    body.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn hibernating(body: &[u8]) -> Option<ConnectorError> {
    contains(body, HIBERNATING).then(|| {
        ConnectorError::TemporarilyUnavailable(
            "The ServiceNow instance is hibernating (developer instances sleep when idle). Wake it by signing in at developer.servicenow.com; the sync is retried automatically.".into(),
        )
    })
}

/// Maps a non-200 response to an error. `table` names what was read.
pub fn status_error(resp: &HttpResponse, table: &str) -> ConnectorError {
    if let Some(e) = hibernating(&resp.body) {
        return e;
    }
    let detail = error_detail(&resp.body);
    match resp.status {
        401 => ConnectorError::Unauthenticated(format!(
            "ServiceNow rejected the credentials (HTTP 401: {detail}). Check the user name and secret, that the user is active and not locked out, and that it may use web services: use a dedicated 'web service access only' user, since Basic authentication can be refused for interactive users."
        )),
        403 => ConnectorError::Forbidden(format!(
            "ServiceNow refused to let the user read `{table}` (HTTP 403: {detail}). Grant the integration user the `cmdb_read` role."
        )),
        404 => ConnectorError::NotFound(format!(
            "ServiceNow has no `{table}` table or API at this address (HTTP 404: {detail}). Check the table settings and the instance address."
        )),
        400 if detail.contains("Invalid table") => ConnectorError::NotFound(format!(
            "The table `{table}` does not exist on this instance (HTTP 400: {detail}). Check the table settings (e.g. `device_table`)."
        )),
        429 => ConnectorError::RateLimited {
            retry_after_seconds: resp.header("retry-after").and_then(parse_retry_after),
            message: format!(
                "ServiceNow's rate limit for this user was exceeded (HTTP 429: {detail}). The sync waits and retries; if it happens often, give the connector a dedicated user with its own rate-limit rule."
            ),
        },
        500..=599 => ConnectorError::TemporarilyUnavailable(format!(
            "ServiceNow answered HTTP {} ({detail}); the instance may be restarting or overloaded. It is retried automatically.",
            resp.status
        )),
        s => ConnectorError::BadResponse(format!(
            "ServiceNow answered HTTP {s} to a read of `{table}` ({detail})."
        )),
    }
}

/// `Retry-After` in seconds (the date form is not used by ServiceNow).
pub fn parse_retry_after(value: &str) -> Option<u32> {
    value.trim().parse::<u32>().ok()
}

/// Parses a 200 body into its envelope, refusing partial results.
pub fn parse_rows<'a>(resp: &'a HttpResponse, table: &str) -> Result<Envelope<'a>, ConnectorError> {
    let cancelled = || {
        ConnectorError::TemporarilyUnavailable(format!(
            "ServiceNow cancelled the read of `{table}`: \"Transaction cancelled: maximum execution time exceeded\". No rows of that response were kept; it is retried automatically. If it persists, lower the page size."
        ))
    };
    match serde_json::from_slice::<Envelope>(&resp.body) {
        Ok(Envelope { error: Some(e), .. }) => {
            if describe_contains(&e, TRANSACTION_CANCELLED) {
                Err(cancelled())
            } else {
                Err(ConnectorError::BadResponse(format!(
                    "ServiceNow reported an error while reading `{table}`: {}.",
                    e.describe()
                )))
            }
        }
        Ok(env @ Envelope { result: Some(_), .. }) => Ok(env),
        Ok(_) => Err(ConnectorError::BadResponse(format!(
            "ServiceNow's answer for `{table}` has no `result` list; is the instance address a ServiceNow instance?"
        ))),
        Err(e) => {
            if let Some(h) = hibernating(&resp.body) {
                Err(h)
            } else if contains(&resp.body, TRANSACTION_CANCELLED) {
                Err(cancelled())
            } else {
                Err(ConnectorError::BadResponse(format!(
                    "ServiceNow's answer for `{table}` is not the expected JSON ({e}; {}). Is the instance address a ServiceNow instance?",
                    snippet(&resp.body)
                )))
            }
        }
    }
}

fn describe_contains(e: &ErrorBody<'_>, needle: &str) -> bool {
    e.describe().contains(needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("retry-after".into(), "7".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn statuses_map_to_cases() {
        let env = r#"{"error":{"message":"m","detail":"d"},"status":"failure"}"#;
        assert!(
            matches!(status_error(&resp(401, env), "t"), ConnectorError::Unauthenticated(m) if m.contains("m: d"))
        );
        assert!(
            matches!(status_error(&resp(403, env), "t"), ConnectorError::Forbidden(m) if m.contains("cmdb_read"))
        );
        assert!(matches!(
            status_error(&resp(404, env), "t"),
            ConnectorError::NotFound(_)
        ));
        let invalid = r#"{"error":{"message":"Invalid table x","detail":null},"status":"failure"}"#;
        assert!(matches!(
            status_error(&resp(400, invalid), "x"),
            ConnectorError::NotFound(_)
        ));
        assert_eq!(
            status_error(&resp(429, env), "t"),
            ConnectorError::RateLimited {
                retry_after_seconds: Some(7),
                message: status_error(&resp(429, env), "t").message().to_string()
            }
        );
        assert!(
            matches!(status_error(&resp(502, "<html>bad gateway</html>"), "t"), ConnectorError::TemporarilyUnavailable(m) if m.contains("bad gateway"))
        );
        let hib = "<html><title>Instance Hibernating page</title></html>";
        assert!(
            matches!(status_error(&resp(503, hib), "t"), ConnectorError::TemporarilyUnavailable(m) if m.contains("hibernating"))
        );
        assert!(matches!(
            status_error(&resp(418, ""), "t"),
            ConnectorError::BadResponse(_)
        ));
    }

    #[test]
    fn refuses_partial_and_foreign_bodies() {
        let truncated = r#"{"result":[{"sys_id":"a"},{"sys_id":"b","na"error":{"detail":"Transaction cancelled: maximum execution time exceeded. Check logs for error trace.","message":"Transaction cancelled: maximum execution time exceeded"},"status":"failure"}"#;
        assert!(
            matches!(parse_rows(&resp(200, truncated), "t"), Err(ConnectorError::TemporarilyUnavailable(m)) if m.contains("No rows"))
        );
        let valid_both = r#"{"result":[{"sys_id":"a"}],"error":{"message":"Transaction cancelled: maximum execution time exceeded"},"status":"failure"}"#;
        assert!(matches!(
            parse_rows(&resp(200, valid_both), "t"),
            Err(ConnectorError::TemporarilyUnavailable(_))
        ));
        let hib = "<html><title>Instance Hibernating page</title></html>";
        assert!(
            matches!(parse_rows(&resp(200, hib), "t"), Err(ConnectorError::TemporarilyUnavailable(m)) if m.contains("hibernating"))
        );
        assert!(matches!(
            parse_rows(&resp(200, "<html>login</html>"), "t"),
            Err(ConnectorError::BadResponse(_))
        ));
        assert!(matches!(
            parse_rows(&resp(200, "{}"), "t"),
            Err(ConnectorError::BadResponse(_))
        ));
        assert_eq!(
            parse_rows(&resp(200, r#"{"result":[]}"#), "t")
                .unwrap()
                .result
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn dns_message_names_the_host() {
        let req = HttpRequest {
            scheme: crate::transport::Scheme::Https,
            authority: "nope.service-now.com:443".into(),
            path_and_query: "/".into(),
        };
        let e = transport_error(&req, TransportError::Dns("x".into()));
        assert!(e.message().starts_with("The remote server name could not be resolved: check the instance hostname (`nope.service-now.com`)"));
    }
}
