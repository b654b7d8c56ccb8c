//! The connector's settings: where NetBox is, and how incremental reads and
//! deletions behave.

use exposure_connector_sdk::settings::{self, endpoint_setting, setting, Endpoint};
use exposure_connector_sdk::types::{ConnectorError, SettingInfo};

/// The endpoint setting's name.
pub const URL: &str = "url";

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where NetBox is.
    pub url: Endpoint,
    /// NetBox's `BASE_PATH` (e.g. `/netbox`), empty when NetBox is at the root.
    pub base_path: String,
    /// Seconds subtracted from the server's clock for the watermark, for
    /// changes committed while a read ran.
    pub watermark_lag_seconds: u32,
    /// Whether deletions are read from the change log.
    pub change_log: bool,
}

/// The settings `info` declares.
pub fn setting_infos() -> Vec<SettingInfo> {
    vec![
        endpoint_setting(
            URL,
            "The NetBox server: `netbox.example.com`, `https://netbox.example.com:8443`, or `http://127.0.0.1:PORT` for a local test server.",
        ),
        setting(
            "base_path",
            "NetBox's BASE_PATH when it is served below the root, e.g. `/netbox`; empty when the API is at `/api/`.",
            Some(""),
        ),
        setting(
            "watermark_lag_seconds",
            "Seconds taken off the server's clock when an incremental read records where it started, so that changes committed while it ran are read again next time (0-86400).",
            Some("60"),
        ),
        setting(
            "change_log",
            "`auto` reads deletions of devices, interfaces and addresses from NetBox's change log (/api/core/object-changes/; the token needs the view permission on Object Changes, otherwise a warning); `off` does not read them.",
            Some("auto"),
        ),
    ]
}

impl Settings {
    /// Validates the name/value pairs the host passes.
    pub fn parse(pairs: &[(String, String)]) -> Result<Settings, ConnectorError> {
        let url = Endpoint::parse(URL, settings::required(pairs, URL)?)?;
        let base_path = settings::get(pairs, "base_path").unwrap_or("").trim();
        let base_path = base_path.trim_end_matches('/').to_string();
        if !base_path.is_empty()
            && (!base_path.starts_with('/')
                || !base_path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b)))
        {
            return Err(ConnectorError::InvalidSettings(format!(
                "The setting `base_path` must be a path such as `/netbox` (letters, digits, `/-_.~`), not `{base_path}`."
            )));
        }
        let watermark_lag_seconds = settings::number(pairs, "watermark_lag_seconds", 60)?;
        if watermark_lag_seconds > 86_400 {
            return Err(ConnectorError::InvalidSettings(format!(
                "The setting `watermark_lag_seconds` must be at most 86400 (a day), not {watermark_lag_seconds}."
            )));
        }
        let change_log = match settings::get(pairs, "change_log").unwrap_or("auto").trim() {
            "auto" | "" => true,
            "off" => false,
            other => {
                return Err(ConnectorError::InvalidSettings(format!(
                    "The setting `change_log` must be `auto` or `off`, not `{other}`."
                )))
            }
        };
        Ok(Settings {
            url,
            base_path,
            watermark_lag_seconds,
            change_log,
        })
    }

    /// The path of an API endpoint, e.g. `dcim/devices/` → `/api/dcim/devices/`.
    pub fn api_path(&self, endpoint: &str) -> String {
        format!("{}/api/{endpoint}", self.base_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut p = vec![(URL.to_string(), "netbox.example.com".to_string())];
        p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        p
    }

    #[test]
    fn defaults_and_paths() {
        let s = Settings::parse(&pairs(&[])).unwrap();
        assert_eq!((s.watermark_lag_seconds, s.change_log), (60, true));
        assert_eq!(s.api_path("dcim/devices/"), "/api/dcim/devices/");
        let s = Settings::parse(&pairs(&[("base_path", "/netbox/")])).unwrap();
        assert_eq!(s.api_path("dcim/devices/"), "/netbox/api/dcim/devices/");
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        for (name, value, says) in [
            ("base_path", "netbox", "must be a path"),
            ("base_path", "/a?b", "must be a path"),
            ("watermark_lag_seconds", "90000", "at most 86400"),
            ("change_log", "yes", "`auto` or `off`"),
        ] {
            let e = Settings::parse(&pairs(&[(name, value)])).unwrap_err();
            assert!(e.message().contains(says), "{name}={value}: {e:?}");
        }
        assert!(Settings::parse(&[])
            .unwrap_err()
            .message()
            .contains("`url` is required"));
    }
}
