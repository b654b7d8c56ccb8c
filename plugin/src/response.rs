//! What a ServiceNow response means: rows, or an operator-ready error.

use crate::rows::{Envelope, ErrorBody};
use exposure_connector_sdk::http::{snippet, Response};
use exposure_connector_sdk::types::ConnectorError;

/// Text ServiceNow puts in a 200 body whose transaction hit the 60 s quota.
const TRANSACTION_CANCELLED: &str = "Transaction cancelled";
/// Marker of the page a hibernating developer instance serves.
const HIBERNATING: &str = "Instance Hibernating page";

/// Title of the page IP Address Access Control serves a denied address.
const ACCESS_RESTRICTED: &str = "<title>Access restricted</title>";

/// Where the instance's IP allow-list is, for messages that may be about it.
const IP_ACCESS_CONTROL: &str = "the instance's IP Address Access Control (System Security > IP Address Access Control) may not admit this host's public address: add it to an Allow rule";

/// Whether the body is ServiceNow's JSON error object (what the Table API
/// sends for its own refusals, e.g. an ACL's 403).
fn is_servicenow_error(body: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<Envelope>(body),
        Ok(Envelope { error: Some(_), .. })
    )
}

fn error_detail(body: &[u8]) -> String {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error: Some(e), .. }) => e.describe(),
        _ => snippet(body),
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

/// The instance's IP Address Access Control refused this host: its
/// "Access restricted" page, whatever the status it came with.
fn access_restricted(resp: &Response) -> Option<ConnectorError> {
    contains(&resp.body, ACCESS_RESTRICTED).then(|| {
        ConnectorError::Forbidden(format!(
            "The instance refused this host's address: it answered its \"Access restricted\" page (HTTP {}) before checking any credentials, which is what its IP Address Access Control does for an address that a Deny rule covers and no Allow rule admits. In System Security > IP Address Access Control, add an Allow rule (type Allow, direction Inbound) whose range holds the public address this host's requests leave from (a NAT gateway or proxy's address, not the machine's private one).",
            resp.status
        ))
    })
}

/// Maps a non-200 response to an error. `table` names what was read.
pub fn status_error(resp: &Response, table: &str) -> ConnectorError {
    if let Some(e) = hibernating(&resp.body).or_else(|| access_restricted(resp)) {
        return e;
    }
    let detail = error_detail(&resp.body);
    match resp.status {
        401 => ConnectorError::Unauthenticated(format!(
            "ServiceNow rejected the credentials (HTTP 401: {detail}). Check the user name and secret, that the user is active and not locked out, and that it may use web services: use a dedicated 'web service access only' user, since Basic authentication can be refused for interactive users. If all of that is right, {IP_ACCESS_CONTROL}."
        )),
        403 if !is_servicenow_error(&resp.body) => ConnectorError::Forbidden(format!(
            "The request for `{table}` was refused before the Table API answered (HTTP 403 without ServiceNow's error object: {detail}). Most likely {IP_ACCESS_CONTROL}; a web application firewall or proxy in between refuses the same way."
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
        429 => ConnectorError::rate_limited(
            resp.retry_after_seconds(),
            format!(
                "ServiceNow's rate limit for this user was exceeded (HTTP 429: {detail}). The sync waits and retries; if it happens often, give the connector a dedicated user with its own rate-limit rule."
            ),
        ),
        500..=599 => ConnectorError::TemporarilyUnavailable(format!(
            "ServiceNow answered HTTP {} ({detail}); the instance may be restarting or overloaded. It is retried automatically.",
            resp.status
        )),
        s => ConnectorError::BadResponse(format!(
            "ServiceNow answered HTTP {s} to a read of `{table}` ({detail})."
        )),
    }
}

/// Parses a 200 body into its envelope, refusing partial results.
pub fn parse_rows<'a>(resp: &'a Response, table: &str) -> Result<Envelope<'a>, ConnectorError> {
    let cancelled = || {
        ConnectorError::TemporarilyUnavailable(format!(
            "ServiceNow cancelled the read of `{table}`: \"Transaction cancelled: maximum execution time exceeded\". No rows of that response were kept; it is retried automatically. If it persists, lower the page size."
        ))
    };
    // UTF-8 checked once for the whole body, so that the parser need not
    // check each string again; a body that is not UTF-8 goes to the parser
    // as bytes for its error, which says where.
    let parsed = match std::str::from_utf8(&resp.body) {
        Ok(text) => crate::rows::parse_envelope(text),
        Err(_) => serde_json::from_slice::<Envelope>(&resp.body),
    };
    match parsed {
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
                    resp.snippet()
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

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("retry-after".into(), "7".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_refusal_without_servicenows_error_object_points_at_the_ip_allow_list() {
        let page = "<html><body>Access restricted</body></html>";
        for body in [page, ""] {
            let e = status_error(&resp(403, body), "cmdb_ci_computer");
            assert!(
                matches!(&e, ConnectorError::Forbidden(m) if m.contains("IP Address Access Control") && !m.contains("cmdb_read")),
                "{e:?}"
            );
        }
        // The Table API's own 403 (an ACL) still asks for the role.
        let acl = r#"{"error":{"message":"Insufficient rights to query records","detail":null},"status":"failure"}"#;
        let e = status_error(&resp(403, acl), "cmdb_ci_computer");
        assert!(
            matches!(&e, ConnectorError::Forbidden(m) if m.contains("cmdb_read") && !m.contains("IP Address")),
            "{e:?}"
        );
        // A 401 names the allow-list last, after the credentials.
        let env = r#"{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}"#;
        assert!(
            matches!(status_error(&resp(401, env), "t"), ConnectorError::Unauthenticated(m) if m.contains("IP Address Access Control"))
        );
    }

    #[test]
    fn the_access_restricted_page_names_the_allow_rule_to_add() {
        let page = "<!DOCTYPE html><html><head><title>Access restricted</title></head><body>no</body></html>";
        for status in [401, 403] {
            let e = status_error(&resp(status, page), "t");
            assert!(
                matches!(&e, ConnectorError::Forbidden(m) if m.contains("Access restricted") && m.contains("add an Allow rule") && !m.contains("credentials (HTTP")),
                "{e:?}"
            );
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
            ConnectorError::rate_limited(Some(7), status_error(&resp(429, env), "t").message())
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
    fn a_body_that_is_not_utf8_is_refused_with_where() {
        let mut response = resp(200, "");
        response.body = b"{\"result\":[{\"sys_id\":\"a\xff\"}]}".to_vec();
        assert!(
            matches!(parse_rows(&response, "t"), Err(ConnectorError::BadResponse(m)) if m.contains("line 1 column"))
        );
        response.body = "{\"result\":[{\"sys_id\":\"caf\u{e9}\"}]}".into();
        let env = parse_rows(&response, "t").unwrap();
        assert_eq!(
            env.result.unwrap()[0].get("sys_id").unwrap().text(),
            Some("café")
        );
    }
}
