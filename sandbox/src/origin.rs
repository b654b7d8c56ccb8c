//! The one origin (scheme, host, port) a component may contact: the value of
//! the setting the component declares as its endpoint.

use std::net::IpAddr;

/// Scheme, host and port of the configured endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `https`, or `http` for an explicit loopback address.
    pub scheme: &'static str,
    /// Lower-case host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (443 / 80 when not written).
    pub port: u16,
}

impl Origin {
    /// Parses the value of the endpoint setting `setting`: `host`,
    /// `host:port`, `https://host[:port]`, or `http://LOOPBACK-IP:port`. User
    /// information, paths, queries and plain http to anything but a loopback
    /// address are refused.
    pub fn parse(setting: &str, value: &str) -> Result<Origin, String> {
        let bad = |why: &str| {
            format!("the endpoint setting {setting} = \"{value}\" is not allowed: {why}. Write the host name, e.g. {setting} = \"source.example.com\" or \"https://source.example.com:8443\"")
        };
        let (scheme, rest) = match value.split_once("://") {
            Some(("https", rest)) => ("https", rest),
            Some(("http", rest)) => ("http", rest),
            Some((other, _)) => {
                return Err(bad(&format!(
                    "the scheme `{other}` is not supported (https only)"
                )))
            }
            None => ("https", value),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        // The host and port alone, as the operator should write them.
        let (authority, beyond) =
            rest.split_at(rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len()));
        if rest.contains('@') {
            // What comes before `@` may be a password (one with a `/` too):
            // the value is not repeated, only the host after it.
            let write = match authority.rsplit_once('@') {
                Some((_, host)) => format!("Write {setting} = \"{scheme}://{host}\""),
                None => {
                    format!("Write the host name alone, e.g. {setting} = \"source.example.com\"")
                }
            };
            return Err(format!(
                "the endpoint setting {setting} holds user information (`…@`), which is not allowed: credentials go in [auth], never in the address. {write}"
            ));
        }
        if !beyond.is_empty() {
            return Err(format!(
                "the endpoint setting {setting} = \"{value}\" is not allowed: it contains a path, query or fragment (`{beyond}`). Write the host alone: {setting} = \"{scheme}://{authority}\""
            ));
        }
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains spaces or control characters"));
        }
        let uri: http::uri::Authority = rest.parse().map_err(|_| bad("it is not a host name"))?;
        let host = uri
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(bad("it has no host name"));
        }
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let origin = Origin { scheme, host, port };
        if scheme == "http" && !origin.is_loopback_ip() {
            return Err(bad(
                "plain http is only allowed to a loopback address such as http://127.0.0.1:PORT",
            ));
        }
        Ok(origin)
    }

    /// Whether the host is a loopback IP literal.
    pub fn is_loopback_ip(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// `host:port` (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether a request URI targets exactly this origin.
    pub fn matches(&self, uri: &http::Uri) -> bool {
        let scheme_ok = uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(self.scheme));
        let Some(authority) = uri.authority() else {
            return false;
        };
        if authority.as_str().contains('@') {
            return false;
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        scheme_ok
            && host.eq_ignore_ascii_case(&self.host)
            && authority.port_u16().unwrap_or(default_port) == self.port
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let o = Origin::parse("instance", "Contoso.service-now.com").unwrap();
        assert_eq!(o.to_string(), "https://contoso.service-now.com:443");
        assert!(o.matches(&"https://contoso.service-now.com/api".parse().unwrap()));
        assert!(o.matches(&"https://CONTOSO.service-now.com:443/api".parse().unwrap()));
        assert!(!o.matches(&"http://contoso.service-now.com/api".parse().unwrap()));
        assert!(!o.matches(&"https://contoso.service-now.com:8443/".parse().unwrap()));
        assert!(!o.matches(&"https://evil.com/".parse().unwrap()));
        let l = Origin::parse("instance", "http://127.0.0.1:8080").unwrap();
        assert!(l.matches(&"http://127.0.0.1:8080/x".parse().unwrap()));
        assert!(Origin::parse("instance", "http://[::1]:80")
            .unwrap()
            .is_loopback_ip());
    }

    #[test]
    fn refuses_tricks() {
        for bad in [
            "evil.com@contoso.service-now.com",
            "https://contoso.service-now.com/path",
            "https://contoso.service-now.com?x=1",
            "http://contoso.service-now.com",
            "http://localhost.evil.com:80",
            "http://10.0.0.1:80",
            "ftp://contoso",
            "",
        ] {
            assert!(Origin::parse("instance", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refusal_says_what_to_write_and_never_repeats_user_information() {
        let e = Origin::parse(
            "instance",
            "https://contoso.service-now.com/now/nav/ui/classic/params/target/cmdb_ci_list.do",
        )
        .unwrap_err();
        assert!(
            e.contains("contains a path")
                && e.contains("instance = \"https://contoso.service-now.com\""),
            "{e}"
        );
        let e = Origin::parse(
            "instance",
            "https://admin:Hunter2@contoso.service-now.com:8443/x",
        )
        .unwrap_err();
        assert!(!e.contains("Hunter2") && !e.contains("admin"), "{e}");
        assert!(
            e.contains("user information")
                && e.contains("instance = \"https://contoso.service-now.com:8443\""),
            "{e}"
        );
        let e = Origin::parse("instance", "svc:pa/ss@contoso.service-now.com").unwrap_err();
        assert!(
            !e.contains("pa/ss") && e.contains("user information"),
            "{e}"
        );
        let e = Origin::parse("instance", "contoso.service-now.com?x=1").unwrap_err();
        assert!(
            e.contains("instance = \"https://contoso.service-now.com\""),
            "{e}"
        );
    }
}
