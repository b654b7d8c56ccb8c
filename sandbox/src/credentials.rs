//! Turning `[auth]` and the secrets it names into what the host attaches to
//! every request the component sends: Basic credentials, an OAuth 2.0 bearer
//! token (fetched and renewed by the host), or an API key header.

use crate::config::AuthConfig;
use crate::oauth::{Grant, OAuthBroker, TokenError};
use crate::origin::Origin;
use crate::runtime::{AuthMethod, ConnectorInfo, Oauth2Grant};
use crate::secrets::{read_secret, Environment, Secret};
use crate::sender::Sender;
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;

/// An OAuth 2.0 grant as the WIT spells it (`client-credentials`).
pub fn grant_name(grant: Oauth2Grant) -> &'static str {
    match grant {
        Oauth2Grant::ClientCredentials => "client-credentials",
        Oauth2Grant::Password => "password",
        Oauth2Grant::RefreshToken => "refresh-token",
    }
}

/// What the component declared it supports (from `info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredAuth {
    /// HTTP Basic.
    pub basic: bool,
    /// OAuth 2.0, when declared.
    pub oauth: Option<DeclaredOAuth>,
    /// API key formats, in the component's order of preference.
    pub api_keys: Vec<ApiKeyFormat>,
}

/// The component's OAuth 2.0 declaration (`oauth2-method`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredOAuth {
    /// Token endpoint path on the endpoint's origin.
    pub token_path: String,
    /// Grant names: `client-credentials`, `password`, `refresh-token`.
    pub grants: Vec<String>,
    /// What to check when a client-credentials token is refused.
    pub client_credentials_help: Option<String>,
}

/// How an API key is written into requests (`api-key-method`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyFormat {
    /// Header that carries the key.
    pub header: String,
    /// Text written before the key (`Token `), empty for none.
    pub value_prefix: String,
    /// The format applies only to keys starting with this text.
    pub key_prefix: Option<String>,
}

impl ApiKeyFormat {
    fn accepts(&self, key: &str) -> bool {
        self.key_prefix
            .as_deref()
            .is_none_or(|prefix| key.starts_with(prefix))
    }
}

/// The credential attached to outgoing requests.
#[derive(Clone)]
pub enum Credential {
    /// No authentication (`[auth]` absent).
    None,
    /// `Authorization: Basic ...` (the value is marked sensitive).
    Basic(HeaderValue),
    /// A static key in a header the component declared.
    ApiKey {
        /// Header name, e.g. `x-sn-apikey`.
        header: HeaderName,
        /// The key (marked sensitive).
        value: HeaderValue,
    },
    /// OAuth 2.0 bearer tokens from the host's broker.
    OAuth(Arc<OAuthBroker>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::None => "Credential::None",
            Credential::Basic(_) => "Credential::Basic(<redacted>)",
            Credential::ApiKey { .. } => "Credential::ApiKey(<redacted>)",
            Credential::OAuth(_) => "Credential::OAuth(<redacted>)",
        })
    }
}

/// The authentication methods `[auth] method` accepts.
pub const METHODS: &[&str] = &[
    "basic",
    "oauth2-client-credentials",
    "oauth2-password",
    "api-key",
];

fn sensitive(value: &str, what: &str) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        format!("the {what} contains characters that cannot be sent in an HTTP header")
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn required<'a>(value: &'a Option<String>, key: &str, method: &str) -> Result<&'a str, String> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("[auth] method = \"{method}\" needs `{key} = \"...\"`"))
}

fn not_declared(method: &str) -> String {
    format!("[auth] method = \"{method}\", but the component does not declare it; use a method it declares (see `connector-host info`)")
}

/// `Authorization: Basic ...`.
fn basic(
    auth: &AuthConfig,
    declared: &DeclaredAuth,
    env: &dyn Environment,
) -> Result<Credential, String> {
    if !declared.basic {
        return Err(not_declared("basic"));
    }
    let username = required(&auth.username, "username", "basic")?;
    if username.contains(':') {
        return Err(
            "[auth] username must not contain `:` (Basic authentication cannot carry it)".into(),
        );
    }
    let password = read_secret(
        "password",
        auth.password_env.as_deref(),
        auth.password_file.as_deref(),
        env,
    )?;
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose()));
    Ok(Credential::Basic(sensitive(
        &format!("Basic {token}"),
        "password",
    )?))
}

/// The key in the first declared format that accepts it.
fn api_key(
    auth: &AuthConfig,
    declared: &DeclaredAuth,
    env: &dyn Environment,
) -> Result<Credential, String> {
    if declared.api_keys.is_empty() {
        return Err(not_declared("api-key"));
    }
    let key = read_secret(
        "api key",
        auth.api_key_env.as_deref(),
        auth.api_key_file.as_deref(),
        env,
    )?;
    let format = declared
        .api_keys
        .iter()
        .find(|f| f.accepts(key.expose()))
        .ok_or_else(|| {
            let prefixes: Vec<&str> = declared
                .api_keys
                .iter()
                .filter_map(|f| f.key_prefix.as_deref())
                .collect();
            format!(
                "the API key has none of the formats the component declares (keys starting with {}); check that it is the right key",
                prefixes.join(" or ")
            )
        })?;
    let header = HeaderName::from_bytes(format.header.as_bytes()).map_err(|_| {
        format!(
            "the component declared an invalid API key header `{}`",
            format.header
        )
    })?;
    Ok(Credential::ApiKey {
        header,
        value: sensitive(
            &format!("{}{}", format.value_prefix, key.expose()),
            "API key",
        )?,
    })
}

/// The OAuth broker for the client-credentials or password grant.
fn oauth_broker(
    auth: &AuthConfig,
    declared: &DeclaredAuth,
    origin: &Origin,
    sender: Arc<Sender>,
    request_timeout: Duration,
    env: &dyn Environment,
) -> Result<OAuthBroker, String> {
    let method = auth.method.as_str();
    let oauth = declared
        .oauth
        .as_ref()
        .ok_or_else(|| not_declared(method))?;
    let password_grant = method == "oauth2-password";
    let grant_name = if password_grant {
        "password"
    } else {
        "client-credentials"
    };
    if !oauth.grants.iter().any(|g| g == grant_name) {
        return Err(not_declared(method));
    }
    let client_id = required(&auth.client_id, "client_id", method)?.to_string();
    let client_secret: Secret = read_secret(
        "client secret",
        auth.client_secret_env.as_deref(),
        auth.client_secret_file.as_deref(),
        env,
    )?;
    let grant = if password_grant {
        Grant::Password {
            username: required(&auth.username, "username", method)?.to_string(),
            password: read_secret(
                "password",
                auth.password_env.as_deref(),
                auth.password_file.as_deref(),
                env,
            )?,
        }
    } else {
        Grant::ClientCredentials {
            help: oauth.client_credentials_help.clone(),
        }
    };
    // The operator's pinned path wins over the component's declaration;
    // either way the broker keeps it on the endpoint's origin.
    let token_path = auth.token_path.as_deref().unwrap_or(&oauth.token_path);
    OAuthBroker::new(
        origin,
        sender,
        token_path,
        client_id,
        client_secret,
        grant,
        request_timeout,
    )
}

impl Credential {
    /// Builds the credential for `origin` from `[auth]`, checking that the
    /// component declared the method.
    pub fn from_config(
        auth: Option<&AuthConfig>,
        declared: &DeclaredAuth,
        origin: &Origin,
        sender: Arc<Sender>,
        request_timeout: Duration,
        env: &dyn Environment,
    ) -> Result<Credential, String> {
        let Some(auth) = auth else {
            return Ok(Credential::None);
        };
        match auth.method.as_str() {
            "basic" => basic(auth, declared, env),
            "api-key" => api_key(auth, declared, env),
            "oauth2-client-credentials" | "oauth2-password" => {
                let broker = oauth_broker(auth, declared, origin, sender, request_timeout, env)?;
                Ok(Credential::OAuth(Arc::new(broker)))
            }
            m => Err(format!(
                "[auth] method = \"{m}\" is unknown; use one of: {}",
                METHODS.join(", ")
            )),
        }
    }

    /// A header only the host may set (besides `authorization`, always guarded).
    pub fn guarded_header(&self) -> Option<HeaderName> {
        match self {
            Credential::ApiKey { header, .. } => Some(header.clone()),
            _ => None,
        }
    }

    /// Sets the credential on a request. Returns the `Authorization` value
    /// used when it was an OAuth token (to report a refusal back), or why
    /// no token could be had.
    pub async fn apply(&self, headers: &mut HeaderMap) -> Result<Option<HeaderValue>, TokenError> {
        match self {
            Credential::None => Ok(None),
            Credential::Basic(v) => {
                headers.insert(http::header::AUTHORIZATION, v.clone());
                Ok(None)
            }
            Credential::ApiKey { header, value } => {
                headers.insert(header.clone(), value.clone());
                Ok(None)
            }
            Credential::OAuth(broker) => {
                let v = broker.authorization().await?;
                headers.insert(http::header::AUTHORIZATION, v.clone());
                Ok(Some(v))
            }
        }
    }

    /// Obtains what must be obtained before the first request (an OAuth
    /// token), so a misconfiguration is reported before any work starts.
    pub async fn prepare(&self) -> Result<(), TokenError> {
        match self {
            Credential::OAuth(broker) => broker.authorization().await.map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Tells the broker the server refused `used` (HTTP 401). Returns
    /// whether a retry with a fresh token makes sense.
    pub async fn refused(&self, used: Option<&HeaderValue>) -> bool {
        match (self, used) {
            (Credential::OAuth(broker), Some(v)) => {
                broker.refused(v).await;
                true
            }
            _ => false,
        }
    }

    /// OAuth token requests made so far.
    pub fn token_fetches(&self) -> u64 {
        match self {
            Credential::OAuth(broker) => broker.fetches(),
            _ => 0,
        }
    }
}

impl DeclaredAuth {
    /// What the component declared about authentication, in the host's terms.
    pub fn of(info: &ConnectorInfo) -> DeclaredAuth {
        let mut declared = DeclaredAuth::default();
        for m in &info.auth_methods {
            match m {
                AuthMethod::Basic => declared.basic = true,
                AuthMethod::Oauth2(o) => {
                    let grants = o
                        .grants
                        .iter()
                        .map(|g| grant_name(*g).to_string())
                        .collect();
                    declared.oauth = Some(DeclaredOAuth {
                        token_path: o.token_path.clone(),
                        grants,
                        client_credentials_help: o.client_credentials_help.clone(),
                    });
                }
                AuthMethod::ApiKey(k) => declared.api_keys.push(ApiKeyFormat {
                    header: k.header_name.clone(),
                    value_prefix: k.value_prefix.clone().unwrap_or_default(),
                    key_prefix: k.key_prefix.clone(),
                }),
            }
        }
        declared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn auth(method: &str) -> AuthConfig {
        AuthConfig {
            method: method.into(),
            username: Some("svc".into()),
            password_env: Some("PW".into()),
            password_file: None,
            client_id: Some("cid".into()),
            client_secret_env: Some("CS".into()),
            client_secret_file: None,
            api_key_env: Some("KEY".into()),
            api_key_file: None,
            token_path: None,
        }
    }

    fn declared() -> DeclaredAuth {
        DeclaredAuth {
            basic: true,
            oauth: Some(DeclaredOAuth {
                token_path: "/oauth_token.do".into(),
                grants: vec!["client-credentials".into(), "password".into()],
                client_credentials_help: None,
            }),
            api_keys: vec![ApiKeyFormat {
                header: "x-sn-apikey".into(),
                value_prefix: String::new(),
                key_prefix: None,
            }],
        }
    }

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("PW".to_string(), "p@ss".to_string()),
            ("CS".into(), "sec".into()),
            ("KEY".into(), "k1".into()),
        ])
    }

    fn origin() -> Origin {
        Origin::parse("instance", "contoso.service-now.com").unwrap()
    }

    fn sender() -> Arc<Sender> {
        Arc::new(Sender::new(&origin(), &crate::sender::SenderOptions::default()).unwrap())
    }

    fn build(
        a: &AuthConfig,
        d: &DeclaredAuth,
        e: &HashMap<String, String>,
    ) -> Result<Credential, String> {
        Credential::from_config(Some(a), d, &origin(), sender(), Duration::from_secs(5), e)
    }

    #[tokio::test]
    async fn basic_and_api_key_headers_are_sensitive() {
        let c = build(&auth("basic"), &declared(), &env()).unwrap();
        let mut h = HeaderMap::new();
        c.apply(&mut h).await.unwrap();
        assert_eq!(h["authorization"], "Basic c3ZjOnBAc3M=");
        assert!(h["authorization"].is_sensitive());
        assert!(!format!("{c:?}").contains("c3Zj"));
        let k = build(&auth("api-key"), &declared(), &env()).unwrap();
        let mut h = HeaderMap::new();
        k.apply(&mut h).await.unwrap();
        assert_eq!(h["x-sn-apikey"], "k1");
        assert_eq!(k.guarded_header().unwrap(), "x-sn-apikey");
    }

    #[tokio::test]
    async fn api_keys_take_the_first_format_their_prefix_matches() {
        let format = |prefix: &str, key_prefix: Option<&str>| ApiKeyFormat {
            header: "authorization".into(),
            value_prefix: prefix.into(),
            key_prefix: key_prefix.map(str::to_string),
        };
        let two_formats = DeclaredAuth {
            api_keys: vec![format("Bearer ", Some("nbt_")), format("Token ", None)],
            ..Default::default()
        };
        for (key, written) in [
            ("nbt_abc.def", "Bearer nbt_abc.def"),
            ("0123abcd", "Token 0123abcd"),
        ] {
            let env = HashMap::from([("KEY".to_string(), key.to_string())]);
            let c = build(&auth("api-key"), &two_formats, &env).unwrap();
            let mut h = HeaderMap::new();
            c.apply(&mut h).await.unwrap();
            assert_eq!(h["authorization"], written);
            assert!(h["authorization"].is_sensitive());
        }
        let only_v2 = DeclaredAuth {
            api_keys: vec![format("Bearer ", Some("nbt_"))],
            ..Default::default()
        };
        let env = HashMap::from([("KEY".to_string(), "s3cret-v1".to_string())]);
        let e = build(&auth("api-key"), &only_v2, &env).unwrap_err();
        assert!(e.contains("nbt_") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = build(&auth("basic"), &declared(), &HashMap::new()).unwrap_err();
        assert!(e.contains("PW"), "{e}");
        let e = build(&auth("kerberos"), &declared(), &env()).unwrap_err();
        assert!(e.contains("unknown"), "{e}");
        let basic_only = DeclaredAuth {
            basic: true,
            ..Default::default()
        };
        let e = build(&auth("api-key"), &basic_only, &env()).unwrap_err();
        assert!(e.contains("does not declare"), "{e}");
        let mut a = auth("oauth2-client-credentials");
        a.client_id = None;
        let e = build(&a, &declared(), &env()).unwrap_err();
        assert!(e.contains("client_id"), "{e}");
    }
}
