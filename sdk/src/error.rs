//! Helpers for the contract's `connector-error`.
//!
//! Each case is one thing an operator, or the host's retry policy, acts on
//! differently; each message says what happened and what to do. The
//! generic HTTP mapping here ([`from_status`]) is a starting point: a
//! connector that knows what its source's error bodies mean should say so.

use crate::http::Response;
use crate::types::{ConnectorError, RateLimit};

impl ConnectorError {
    /// The operator-facing message of any case.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidSettings(m)
            | Self::Unreachable(m)
            | Self::Unauthenticated(m)
            | Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::TemporarilyUnavailable(m)
            | Self::BadResponse(m)
            | Self::Internal(m) => m,
            Self::RateLimited(r) => &r.message,
        }
    }

    /// A `rate-limited` error.
    pub fn rate_limited(retry_after_seconds: Option<u32>, message: impl Into<String>) -> Self {
        Self::RateLimited(RateLimit {
            retry_after_seconds,
            message: message.into(),
        })
    }

    /// Whether the failure keeps every stream from being probed (settings,
    /// network, credentials): `check` returns it instead of a report.
    pub fn is_connection_wide(&self) -> bool {
        matches!(
            self,
            Self::InvalidSettings(_) | Self::Unreachable(_) | Self::Unauthenticated(_)
        )
    }
}

/// The contract's error for a response that is not a success, by status:
/// 401 `unauthenticated`, 403 `forbidden`, 404 `not-found`, 429
/// `rate-limited` (with `Retry-After`), 5xx `temporarily-unavailable`,
/// anything else `bad-response`. `source` names the source and `what` the
/// resource read, in the messages.
pub fn from_status(response: &Response, source: &str, what: &str) -> ConnectorError {
    let status = response.status;
    let detail = response.snippet();
    match status {
        401 => ConnectorError::Unauthenticated(format!(
            "{source} rejected the credentials (HTTP 401: {detail}). Check the secret in [auth] and that the account is active."
        )),
        403 => ConnectorError::Forbidden(format!(
            "{source} refused to let the account read {what} (HTTP 403: {detail}). Grant it read access."
        )),
        404 => ConnectorError::NotFound(format!(
            "{source} has no {what} at this address (HTTP 404: {detail}). Check the endpoint setting."
        )),
        429 => ConnectorError::rate_limited(
            response.retry_after_seconds(),
            format!("{source} asked to slow down (HTTP 429: {detail}). The host waits and retries."),
        ),
        500..=599 => ConnectorError::TemporarilyUnavailable(format!(
            "{source} answered HTTP {status} ({detail}); it may be restarting or overloaded. It is retried automatically."
        )),
        _ => ConnectorError::BadResponse(format!(
            "{source} answered HTTP {status} to a read of {what} ({detail})."
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHttp;

    #[test]
    fn statuses_map_to_cases() {
        let case = |status| from_status(&FakeHttp::json(status, "{}"), "S", "items");
        assert!(matches!(case(401), ConnectorError::Unauthenticated(_)));
        assert!(matches!(case(403), ConnectorError::Forbidden(_)));
        assert!(matches!(case(404), ConnectorError::NotFound(_)));
        assert!(matches!(
            case(503),
            ConnectorError::TemporarilyUnavailable(_)
        ));
        assert!(matches!(case(418), ConnectorError::BadResponse(_)));
        let mut limited = FakeHttp::json(429, "");
        limited.headers.push(("Retry-After".into(), "7".into()));
        let e = from_status(&limited, "S", "items");
        assert_eq!(e, ConnectorError::rate_limited(Some(7), e.message()));
        assert!(e.message().contains("empty body"));
    }
}
