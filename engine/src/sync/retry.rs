//! What to do after a failed read: retry after how long, or stop.

use super::SyncOptions;
use connector_sandbox::runtime::{connector_error_kind, CallError, ConnectorError};
use rand::Rng as _;
use std::time::Duration;

/// A jittered exponential back-off for the `attempt`-th retry.
fn backoff(options: &SyncOptions, attempt: u32) -> Duration {
    let exp = options
        .retry_base
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(options.retry_max);
    // Full jitter: anywhere between half the delay and the delay.
    let ms = exp.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms.max(1)))
}

/// What to do after a failed read.
pub(crate) enum Next {
    /// Wait, then read the same page again.
    Retry {
        /// How long.
        wait: Duration,
        /// Whether the server said how long (`Retry-After`).
        server_asked: bool,
    },
    /// Give up on the partition.
    Stop,
}

/// The decision after the `attempt`-th failed read (0 for the first).
pub(crate) fn decide(options: &SyncOptions, error: &CallError, attempt: u32) -> Next {
    if attempt + 1 >= options.max_attempts {
        return Next::Stop;
    }
    match error {
        CallError::Connector(ConnectorError::RateLimited(r)) => match r.retry_after_seconds {
            Some(s) if Duration::from_secs(s.into()) <= options.max_retry_after => Next::Retry {
                wait: Duration::from_secs(s.into()),
                server_asked: true,
            },
            Some(_) => Next::Stop,
            None => Next::Retry {
                wait: backoff(options, attempt),
                server_asked: false,
            },
        },
        CallError::Connector(ConnectorError::TemporarilyUnavailable(_)) => Next::Retry {
            wait: backoff(options, attempt),
            server_asked: false,
        },
        _ => Next::Stop,
    }
}

/// The report's name of an error's case.
pub(crate) fn error_kind(e: &CallError) -> String {
    match e {
        CallError::Connector(c) => connector_error_kind(c).to_string(),
        CallError::Trap(_) => "trap".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::SyncOptions;
    use connector_sandbox::runtime::exposure::connector::types::RateLimit;

    fn options() -> SyncOptions {
        SyncOptions {
            page_size: 10,
            partitions: 1,
            concurrency: 1,
            max_attempts: 3,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(60),
            force_full: false,
            requests_per_hour: None,
            stop: Default::default(),
        }
    }

    #[test]
    fn retry_after_is_honoured_exactly() {
        let e = CallError::Connector(ConnectorError::RateLimited(RateLimit {
            retry_after_seconds: Some(7),
            message: "m".into(),
        }));
        match decide(&options(), &e, 0) {
            Next::Retry { wait, server_asked } => {
                assert_eq!((wait, server_asked), (Duration::from_secs(7), true))
            }
            Next::Stop => panic!("should retry"),
        }
        assert!(matches!(decide(&options(), &e, 2), Next::Stop));
        let long = CallError::Connector(ConnectorError::RateLimited(RateLimit {
            retry_after_seconds: Some(7200),
            message: "m".into(),
        }));
        assert!(matches!(decide(&options(), &long, 0), Next::Stop));
    }

    #[test]
    fn only_temporary_errors_retry() {
        let t = CallError::Connector(ConnectorError::TemporarilyUnavailable("x".into()));
        match decide(&options(), &t, 1) {
            Next::Retry { wait, .. } => {
                assert!(wait >= Duration::from_millis(100) && wait <= Duration::from_millis(200))
            }
            Next::Stop => panic!("should retry"),
        }
        let f = CallError::Connector(ConnectorError::Forbidden("x".into()));
        assert!(matches!(decide(&options(), &f, 0), Next::Stop));
        assert!(matches!(
            decide(&options(), &CallError::Trap("x".into()), 0),
            Next::Stop
        ));
    }
}
