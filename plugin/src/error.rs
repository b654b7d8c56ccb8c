//! The connector's error type, mirroring the WIT `connector-error` variant.

use std::fmt;

/// Why a connector call failed. Each message says what happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorError {
    /// Settings missing or malformed.
    InvalidSettings(String),
    /// DNS, connect or TLS failure.
    Unreachable(String),
    /// HTTP 401.
    Unauthenticated(String),
    /// HTTP 403.
    Forbidden(String),
    /// Unknown table or endpoint.
    NotFound(String),
    /// HTTP 429, with the server's Retry-After in seconds when given.
    RateLimited {
        /// Seconds to wait, if the server said.
        retry_after_seconds: Option<u32>,
        /// What happened and what to do.
        message: String,
    },
    /// 5xx, time-outs, hibernation, cancelled transactions.
    TemporarilyUnavailable(String),
    /// A response the connector cannot use.
    BadResponse(String),
    /// A connector bug.
    Internal(String),
}

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
            Self::RateLimited { message, .. } => message,
        }
    }

    /// Whether the failure prevents probing any stream (used by `check`).
    pub fn is_connection_wide(&self) -> bool {
        matches!(
            self,
            Self::InvalidSettings(_) | Self::Unreachable(_) | Self::Unauthenticated(_)
        )
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ConnectorError {}
