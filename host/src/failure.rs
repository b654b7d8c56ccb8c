//! How a command fails: the exit status it deserves and one paragraph for
//! the operator.

use connector_sandbox::config::{Config, ConfigError};
use std::path::Path;

/// Exit status of a sync that stopped for a reason that passes by itself
/// (rate limits, unavailability, a stop signal): `EX_TEMPFAIL` from sysexits.h.
pub const EXIT_TEMPORARY_FAILURE: u8 = 75;

/// A failure with the exit status it deserves.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// 2 for configuration problems, 75 for an incomplete sync that the next
    /// run may complete by itself, 1 for everything else.
    pub exit_code: u8,
    /// One paragraph for the operator.
    pub message: String,
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure {
            exit_code: 2,
            message: e.to_string(),
        }
    }
}

/// A configuration problem (exit 2): `message` says what to change.
pub fn config_failure(message: impl Into<String>) -> anyhow::Error {
    Failure {
        exit_code: 2,
        message: message.into(),
    }
    .into()
}

/// Loads the configuration file; a problem with it is a [`Failure`] with exit 2.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| Failure::from(e).into())
}
