//! Turning `[auth]` and the secrets it names into the header the host
//! attaches to every request the component sends.

use crate::config::AuthConfig;
use crate::secrets::{read_secret, Environment};
use base64::Engine as _;
use http::HeaderValue;

/// The credential attached to outgoing requests.
#[derive(Clone)]
pub enum Credential {
    /// No authentication (`[auth]` absent).
    None,
    /// `Authorization: Basic ...` (the value is marked sensitive).
    Basic(HeaderValue),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("Credential::None"),
            Credential::Basic(_) => f.write_str("Credential::Basic(<redacted>)"),
        }
    }
}

/// Authentication methods this host can broker.
pub const SUPPORTED_METHODS: &[&str] = &["basic"];
/// Methods the configuration format reserves (declared by connectors, brokered in a later version).
pub const RESERVED_METHODS: &[&str] = &["oauth2-client-credentials", "oauth2-password", "api-key"];

impl Credential {
    /// Builds the credential. `component_supports_basic` is what the
    /// component declared in `info`.
    pub fn from_config(
        auth: Option<&AuthConfig>,
        component_supports_basic: bool,
        env: &dyn Environment,
    ) -> Result<Credential, String> {
        let Some(auth) = auth else {
            return Ok(Credential::None);
        };
        match auth.method.as_str() {
            "basic" => {
                if !component_supports_basic {
                    return Err("[auth] method = \"basic\", but the component does not declare Basic authentication; use a method it declares (see `connector-host info`)".into());
                }
                let username = auth.username.as_deref().filter(|u| !u.is_empty()).ok_or(
                    "[auth] method = \"basic\" needs `username = \"...\"` (the integration user)",
                )?;
                if username.contains(':') {
                    return Err("[auth] username must not contain `:` (Basic authentication cannot carry it)".into());
                }
                let password = read_secret(
                    "password",
                    auth.password_env.as_deref(),
                    auth.password_file.as_deref(),
                    env,
                )?;
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()));
                let mut value = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|_| "the password contains characters that cannot be sent".to_string())?;
                value.set_sensitive(true);
                Ok(Credential::Basic(value))
            }
            m if RESERVED_METHODS.contains(&m) => Err(format!(
                "[auth] method = \"{m}\" is not supported by this version of connector-host; use method = \"basic\""
            )),
            m => Err(format!(
                "[auth] method = \"{m}\" is unknown; use one of: {}",
                SUPPORTED_METHODS
                    .iter()
                    .chain(RESERVED_METHODS)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The `Authorization` header value, if any.
    pub fn authorization(&self) -> Option<&HeaderValue> {
        match self {
            Credential::None => None,
            Credential::Basic(v) => Some(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn basic(user: &str) -> AuthConfig {
        AuthConfig {
            method: "basic".into(),
            username: Some(user.into()),
            password_env: Some("PW".into()),
            password_file: None,
        }
    }

    #[test]
    fn basic_header_is_sensitive_and_redacted() {
        let env = HashMap::from([("PW".to_string(), "p@ss".to_string())]);
        let c = Credential::from_config(Some(&basic("svc")), true, &env).unwrap();
        let v = c.authorization().unwrap();
        assert!(v.is_sensitive());
        assert_eq!(v.to_str().unwrap(), "Basic c3ZjOnBAc3M=");
        assert!(!format!("{c:?}").contains("c3Zj"));
    }

    #[test]
    fn errors_say_what_to_do() {
        let env = HashMap::new();
        let e = Credential::from_config(Some(&basic("svc")), true, &env).unwrap_err();
        assert!(e.contains("PW"));
        let mut a = basic("svc");
        a.method = "kerberos".into();
        assert!(Credential::from_config(Some(&a), true, &env)
            .unwrap_err()
            .contains("unknown"));
    }
}
