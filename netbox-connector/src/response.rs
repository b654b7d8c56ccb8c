//! What NetBox's answers mean: a page of objects, or an operator-ready
//! error. NetBox refuses a bad token with 403 (not 401), and tells it from
//! a missing permission only by its `detail` text.

use exposure_connector_sdk::http::Response;
use exposure_connector_sdk::types::ConnectorError;
use serde::Deserialize;
use serde_json::Value;

/// A list view's answer.
#[derive(Debug, Deserialize)]
pub struct ListPage {
    /// Objects matching the query (NetBox 4.6's cursor mode sends null).
    pub count: Option<u64>,
    /// This page's objects.
    pub results: Vec<Value>,
}

/// `{"detail": "..."}`, how NetBox (Django REST framework) explains a refusal.
#[derive(Debug, Deserialize)]
struct Detail {
    detail: String,
}

fn detail_of(resp: &Response) -> Option<String> {
    serde_json::from_slice::<Detail>(&resp.body)
        .ok()
        .map(|d| d.detail)
}

/// Whether a 403's detail is about the token itself (invalid, expired,
/// missing, malformed) rather than a permission the token's user lacks.
fn is_token_refusal(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    (d.contains("token")
        && (d.contains("invalid") || d.contains("expired") || d.contains("disabled")))
        || d.contains("credentials were not provided")
        || d.contains("authentication credentials")
}

/// Maps a response that is not a 200 to an error; `what` names what was read.
pub fn status_error(resp: &Response, what: &str, permission: &str) -> ConnectorError {
    let detail = detail_of(resp);
    let said = detail.clone().unwrap_or_else(|| resp.snippet());
    // NetBox sends `API-Version` with every API answer: a 401 or 404
    // without it came from something else.
    if matches!(resp.status, 401 | 404) && resp.header("api-version").is_none() {
        return ConnectorError::NotFound(format!(
            "The request for {what} was answered by something that is not NetBox's API (HTTP {} without NetBox's `API-Version` header: {said}). Check `url` (the NetBox server, without `/api`) and `base_path`; a proxy or login page in NetBox's place answers this way too.",
            resp.status
        ));
    }
    match resp.status {
        401 => unauthenticated(401, &said),
        403 if detail.as_deref().is_some_and(is_token_refusal) => unauthenticated(403, &said),
        403 if detail.is_some() => ConnectorError::Forbidden(format!(
            "NetBox refused to let the token's user view {what} (HTTP 403: {said}). Give the user (or the token's group) a permission with the view action on {permission}; a read-only token is enough."
        )),
        403 => ConnectorError::Forbidden(format!(
            "The request for {what} was refused before NetBox answered (HTTP 403 without NetBox's `detail`: {said}). A proxy, web application firewall or single sign-on gateway in front of NetBox refuses this host; have it admit the API (`/api/`) for this host."
        )),
        404 => ConnectorError::NotFound(format!(
            "There is no NetBox API for {what} at this address (HTTP 404: {said}). Check `url` (the NetBox server, without `/api`) and `base_path` (NetBox's BASE_PATH, if it is served below the root)."
        )),
        429 => ConnectorError::rate_limited(
            resp.retry_after_seconds(),
            format!("NetBox, or a proxy in front of it, asked to slow down (HTTP 429: {said}). The sync waits and retries."),
        ),
        500..=599 => ConnectorError::TemporarilyUnavailable(format!(
            "NetBox answered HTTP {} ({said}); it may be restarting, migrating or overloaded. It is retried automatically.",
            resp.status
        )),
        300..=399 => ConnectorError::BadResponse(format!(
            "NetBox's address redirected the request for {what} (HTTP {} to `{}`): a login page or a proxy is in front of the API, or `url` names the wrong scheme or host.",
            resp.status,
            resp.header("location").unwrap_or("nowhere")
        )),
        s => ConnectorError::BadResponse(format!("NetBox answered HTTP {s} to a read of {what} ({said}).")),
    }
}

fn unauthenticated(status: u16, said: &str) -> ConnectorError {
    ConnectorError::Unauthenticated(format!(
        "NetBox rejected the API token (HTTP {status}: {said}). Check the token the configuration names in [auth]: it may be mistyped, expired, disabled or deleted; a v2 token is written whole, `nbt_<key>.<secret>`. Create a read-only token under your user's API Tokens in NetBox."
    ))
}

/// Parses a 200 list answer.
pub fn list_page(resp: &Response, what: &str) -> Result<ListPage, ConnectorError> {
    serde_json::from_slice::<ListPage>(&resp.body).map_err(|e| {
        ConnectorError::BadResponse(format!(
            "The answer for {what} is not a NetBox list (`count` and `results`): {e}; {}. Is `url` a NetBox server, and is nothing (a login page, a proxy) answering in its place?",
            resp.snippet()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![
                ("retry-after".into(), "3".into()),
                ("api-version".into(), "4.5".into()),
            ],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_bad_token_is_unauthenticated_and_a_missing_permission_forbidden() {
        for detail in [
            "Invalid v1 token",
            "Invalid v2 token",
            "Token expired",
            "Authentication credentials were not provided.",
        ] {
            let e = status_error(
                &resp(403, &format!(r#"{{"detail":"{detail}"}}"#)),
                "devices",
                "dcim.view_device",
            );
            assert!(
                matches!(&e, ConnectorError::Unauthenticated(m) if m.contains(detail)),
                "{e:?}"
            );
        }
        let e = status_error(
            &resp(
                403,
                r#"{"detail":"You do not have permission to perform this action."}"#,
            ),
            "devices",
            "dcim.view_device",
        );
        assert!(
            matches!(&e, ConnectorError::Forbidden(m) if m.contains("dcim.view_device")),
            "{e:?}"
        );
        let e = status_error(&resp(403, "<html>denied</html>"), "devices", "p");
        assert!(
            matches!(&e, ConnectorError::Forbidden(m) if m.contains("proxy")),
            "{e:?}"
        );
    }

    #[test]
    fn other_statuses_map_to_their_cases() {
        let case = |status: u16| status_error(&resp(status, "<html></html>"), "devices", "p");
        assert!(matches!(case(401), ConnectorError::Unauthenticated(_)));
        assert!(matches!(case(404), ConnectorError::NotFound(m) if m.contains("base_path")));
        assert_eq!(
            case(429),
            ConnectorError::rate_limited(Some(3), case(429).message())
        );
        assert!(matches!(
            case(502),
            ConnectorError::TemporarilyUnavailable(_)
        ));
        assert!(matches!(case(302), ConnectorError::BadResponse(m) if m.contains("redirected")));
        assert!(list_page(&resp(200, "<html>login</html>"), "devices").is_err());
        let mut foreign = resp(401, r#"{"error":{"message":"User Not Authenticated"}}"#);
        foreign.headers.retain(|(n, _)| n != "api-version");
        let e = status_error(&foreign, "devices", "p");
        assert!(
            matches!(&e, ConnectorError::NotFound(m) if m.contains("not NetBox's API")),
            "{e:?}"
        );
        assert!(list_page(&resp(200, r#"{"count":1,"results":[{"id":1}]}"#), "devices").is_ok());
    }
}
