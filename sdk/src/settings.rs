//! Reading settings, declaring them, and parsing the endpoint setting.
//!
//! Settings reach a connector as name/value pairs (never secrets). The
//! endpoint is the one setting a connector marks `endpoint: true` in
//! `info`: the origin the host lets it contact. [`Endpoint::parse`] applies
//! the same rules as the reference host, so a value the host accepts is one
//! the connector understands.

use crate::types::{ConnectorError, SettingInfo};

/// Settings as the host passes them.
pub type Settings = [(String, String)];

/// The value of setting `name`, if given.
pub fn get<'a>(settings: &'a Settings, name: &str) -> Option<&'a str> {
    settings
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The value of a required setting, or `invalid-settings` naming it.
pub fn required<'a>(settings: &'a Settings, name: &str) -> Result<&'a str, ConnectorError> {
    get(settings, name)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            ConnectorError::InvalidSettings(format!(
                "The setting `{name}` is required; set it in [settings]."
            ))
        })
}

/// A whole-number setting, its default when absent.
pub fn number(settings: &Settings, name: &str, default: u32) -> Result<u32, ConnectorError> {
    match get(settings, name) {
        None => Ok(default),
        Some(text) => text.trim().parse().map_err(|_| {
            ConnectorError::InvalidSettings(format!(
                "The setting `{name}` must be a whole number from 0 to {}, not `{text}`.",
                u32::MAX
            ))
        }),
    }
}

/// Declares the endpoint setting (required, `endpoint: true`).
pub fn endpoint_setting(name: &str, description: &str) -> SettingInfo {
    SettingInfo {
        name: name.into(),
        description: description.into(),
        required: true,
        default_value: None,
        endpoint: true,
    }
}

/// Declares an ordinary optional setting with its default.
pub fn setting(name: &str, description: &str, default: Option<&str>) -> SettingInfo {
    SettingInfo {
        name: name.into(),
        description: description.into(),
        required: false,
        default_value: default.map(str::to_string),
        endpoint: false,
    }
}

/// URL scheme of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `https://` (every real source).
    Https,
    /// `http://`, only to an explicit loopback IP (local test servers).
    Http,
}

impl Scheme {
    /// `"https"` or `"http"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// Where the source is: scheme and `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Scheme.
    pub scheme: Scheme,
    /// `host[:port]` as written (lower-cased).
    pub authority: String,
}

impl Endpoint {
    /// Parses an endpoint value: `host`, `host:port`, `https://host[:port]`
    /// (a trailing `/` is allowed), or `http://IP:port` for a loopback IP.
    /// `setting` names the setting in error messages.
    pub fn parse(setting: &str, value: &str) -> Result<Endpoint, ConnectorError> {
        let bad = |why: &str| {
            ConnectorError::InvalidSettings(format!(
                "The setting `{setting}` = `{value}` is not usable: {why}. Write a host name such as `source.example.com` or `https://source.example.com:8443`."
            ))
        };
        let value = value.trim();
        let (scheme, rest) = match value.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("https") => (Scheme::Https, rest),
            Some((s, rest)) if s.eq_ignore_ascii_case("http") => (Scheme::Http, rest),
            Some((other, _)) => return Err(bad(&format!("the scheme `{other}` is not supported"))),
            None => (Scheme::Https, value),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest).to_ascii_lowercase();
        if authority.is_empty() {
            return Err(bad("it has no host name"));
        }
        if authority.contains('@') {
            return Err(bad("it contains user information (`@`)"));
        }
        if authority.contains(['/', '?', '#', '\\'])
            || authority
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("it contains a path, query or fragment"));
        }
        let host_chars =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']');
        if !authority.chars().all(host_chars) {
            return Err(bad("it contains characters not allowed in a host name"));
        }
        if scheme == Scheme::Http && !is_loopback_ip_authority(&authority) {
            return Err(bad(
                "plain http is allowed only to a loopback address such as http://127.0.0.1:PORT",
            ));
        }
        Ok(Endpoint { scheme, authority })
    }

    /// `scheme://authority`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority)
    }
}

/// Whether `host[:port]` names a loopback IP literal.
fn is_loopback_ip_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_hosts_rules() {
        let e = Endpoint::parse("url", "Source.Example.com").unwrap();
        assert_eq!(e.origin(), "https://source.example.com");
        let e = Endpoint::parse("url", "http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (e.scheme, e.authority.as_str()),
            (Scheme::Http, "127.0.0.1:8080")
        );
        assert!(Endpoint::parse("url", "http://[::1]:80").is_ok());
        for bad in [
            "http://example.com",
            "https://u:p@x.y",
            "https://x.y/path",
            "ftp://x",
            "",
            "https://a?b",
            "a%2fb.c",
        ] {
            let e = Endpoint::parse("url", bad).unwrap_err();
            assert!(
                matches!(e, ConnectorError::InvalidSettings(ref m) if m.contains("`url`")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn numbers_and_required_settings_say_what_is_wrong() {
        let s = vec![
            ("n".to_string(), "x".to_string()),
            ("e".to_string(), " ".to_string()),
        ];
        assert!(number(&s, "n", 1).is_err());
        assert_eq!(number(&s, "absent", 7).unwrap(), 7);
        assert!(required(&s, "e").is_err());
        assert_eq!(get(&s, "n"), Some("x"));
    }
}
