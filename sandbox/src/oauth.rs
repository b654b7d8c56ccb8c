//! OAuth 2.0 tokens, fetched and refreshed by the host.
//!
//! The host posts to the token endpoint the component declared (ServiceNow:
//! `/oauth_token.do`), or the one the operator pinned in `[auth] token_path`,
//! always on the endpoint's origin, form-encoded, with the client-credentials
//! or the password grant. Tokens live in memory only, for
//! one run: reused until shortly before they expire, renewed with the
//! refresh token when the server gave one, and dropped when the server
//! answers 401 so the next request fetches a fresh one.
//!
//! A grant the endpoint refuses is not asked again for
//! [`REFUSAL_HELD_FOR`]: the partitions of a run renewing at once would
//! otherwise each send the refused password, and a hardened instance locks
//! the user out after five failed logins.

use crate::origin::Origin;
use crate::secrets::Secret;
use crate::sender::Sender;
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime_wasi_http::RequestOptions;

/// Why the token endpoint issued no token, told apart by what the
/// operator does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// It refused the client or the user, or answered without a token: the
    /// configuration or the source's OAuth set-up needs the operator.
    #[error("{0}")]
    Refused(String),
    /// It could not be reached (DNS, connect, TLS, an address refused by
    /// the host): check the address and the network.
    #[error("{0}")]
    Unreachable(String),
    /// It answered 5xx or 429, timed out, or broke its answer off: this
    /// passes by itself.
    #[error("{0}")]
    Unavailable(String),
}

/// The grant used to obtain tokens.
pub enum Grant {
    /// `client_credentials`: the token acts as the OAuth application's user.
    ClientCredentials {
        /// What to check when the source refuses a token (the component's
        /// `client-credentials-help`).
        help: Option<String>,
    },
    /// `password`: the token acts as `username`.
    Password {
        /// The integration user.
        username: String,
        /// Its password.
        password: Secret,
    },
}

struct Token {
    authorization: HeaderValue,
    refresh: Option<Secret>,
    renew_at: Instant,
}

/// Fetches, caches and renews access tokens for one run.
pub struct OAuthBroker {
    token_url: http::Uri,
    sender: Arc<Sender>,
    client_id: String,
    client_secret: Secret,
    grant: Grant,
    timeout: Duration,
    token: tokio::sync::Mutex<Slot>,
    fetches: AtomicU64,
}

/// What the broker holds: the token in use, or the grant's last refusal.
#[derive(Default)]
struct Slot {
    token: Option<Token>,
    refused: Option<(TokenError, Instant)>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Access tokens without `expires_in` are assumed to last this long (pysnc does the same).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// How long a refused grant is answered with its refusal instead of being
/// sent again: longer than a run's partitions take to meet it, shorter
/// than the interval between scheduled runs.
pub const REFUSAL_HELD_FOR: Duration = Duration::from_secs(60);

impl OAuthBroker {
    /// A broker for the token endpoint at `token_path` on `origin`.
    pub fn new(
        origin: &Origin,
        sender: Arc<Sender>,
        token_path: &str,
        client_id: String,
        client_secret: Secret,
        grant: Grant,
        timeout: Duration,
    ) -> Result<OAuthBroker, String> {
        let path = if token_path.starts_with('/') {
            token_path.to_string()
        } else {
            format!("/{token_path}")
        };
        let token_url: http::Uri = format!("{origin}{path}")
            .parse()
            .map_err(|_| format!("the OAuth token path `{token_path}` is not a usable path"))?;
        if !origin.matches(&token_url) {
            return Err(format!(
                "the OAuth token path `{token_path}` leads outside the endpoint's origin"
            ));
        }
        Ok(OAuthBroker {
            token_url,
            sender,
            client_id,
            client_secret,
            grant,
            timeout,
            token: tokio::sync::Mutex::new(Slot::default()),
            fetches: AtomicU64::new(0),
        })
    }

    /// Token requests made so far (for reports and tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The `Authorization` value to send now, fetching or renewing the token
    /// if needed. A grant refused less than [`REFUSAL_HELD_FOR`] ago fails
    /// with its refusal, and nothing is sent.
    pub async fn authorization(&self) -> Result<HeaderValue, TokenError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.token.as_ref() {
            if Instant::now() < t.renew_at {
                return Ok(t.authorization.clone());
            }
        }
        if let Some((refusal, at)) = &slot.refused {
            if at.elapsed() < REFUSAL_HELD_FOR {
                return Err(refusal.clone());
            }
        }
        let refresh = slot.token.as_ref().and_then(|t| t.refresh.clone());
        let renewed = match refresh {
            Some(refresh) => match self.request(Some(&refresh)).await {
                // An expired or revoked refresh token: start over with the
                // grant. An endpoint out of reach would not answer it either.
                Err(TokenError::Refused(_)) => self.request(None).await,
                other => other,
            },
            None => self.request(None).await,
        };
        match renewed {
            Ok(token) => {
                let value = token.authorization.clone();
                *slot = Slot {
                    token: Some(token),
                    refused: None,
                };
                Ok(value)
            }
            Err(refusal @ TokenError::Refused(_)) => {
                slot.refused = Some((refusal.clone(), Instant::now()));
                Err(refusal)
            }
            Err(e) => Err(e),
        }
    }

    /// Forgets the token that was just refused (HTTP 401), keeping its
    /// refresh token, so the next request renews it.
    pub async fn refused(&self, used: &HeaderValue) {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.token.as_mut() {
            if t.authorization == *used {
                t.renew_at = Instant::now();
            }
        }
    }

    /// The form-encoded body of a token request.
    fn form(&self, refresh: Option<&Secret>) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        match (refresh, &self.grant) {
            (Some(r), _) => {
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", r.expose());
            }
            (None, Grant::ClientCredentials { .. }) => {
                form.append_pair("grant_type", "client_credentials");
            }
            (None, Grant::Password { username, password }) => {
                form.append_pair("grant_type", "password")
                    .append_pair("username", username)
                    .append_pair("password", password.expose());
            }
        }
        form.append_pair("client_id", &self.client_id)
            .append_pair("client_secret", self.client_secret.expose());
        form.finish()
    }

    async fn request(&self, refresh: Option<&Secret>) -> Result<Token, TokenError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (status, bytes) = self.post_token_request(refresh).await?;
        let endpoint = &self.token_url;
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            return Err(TokenError::Unavailable(format!(
                "the OAuth token endpoint {endpoint} answered HTTP {status}: the source is unavailable for now (maintenance, overload or a rate limit); the next sync tries again"
            )));
        }
        let parsed: TokenResponse = serde_json::from_slice(&bytes).map_err(|_| {
            TokenError::Refused(format!("the OAuth token endpoint {endpoint} answered HTTP {status} without a JSON token response; check that OAuth is active at the source and that the token path is right (`[auth] token_path` sets another)"))
        })?;
        match (status.is_success(), &parsed.access_token) {
            (true, Some(access)) if !access.is_empty() => {
                token_from(access, &parsed, refresh).map_err(TokenError::Refused)
            }
            _ => Err(TokenError::Refused(self.refusal(status, &parsed, refresh))),
        }
    }

    /// Posts the token request (the grant's form) and reads the whole answer.
    async fn post_token_request(
        &self,
        refresh: Option<&Secret>,
    ) -> Result<(http::StatusCode, Bytes), TokenError> {
        let body = Full::new(Bytes::from(self.form(refresh)))
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = http::Request::post(self.token_url.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::HOST,
                self.token_url.authority().map_or("", |a| a.as_str()),
            )
            .body(body)
            .map_err(|e| {
                TokenError::Refused(format!("cannot build the OAuth token request: {e}"))
            })?;
        let options = RequestOptions {
            connect_timeout: Some(self.timeout),
            first_byte_timeout: Some(self.timeout),
            between_bytes_timeout: Some(self.timeout),
        };
        let endpoint = &self.token_url;
        let (response, io) = Box::into_pin(Box::new(self.sender.send(request, options)))
            .await
            .map_err(|e| unsent(endpoint, &e))?;
        let status = response.status();
        let read = async {
            Limited::new(response.into_body(), MAX_TOKEN_RESPONSE)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .map_err(|e| {
                    TokenError::Unavailable(format!(
                        "reading the OAuth token response of {endpoint} failed: {e}; the next sync tries again"
                    ))
                })
        };
        let (bytes, _) = tokio::join!(read, Box::into_pin(io));
        Ok((status, bytes?))
    }

    /// The operator's message when the endpoint issued no token.
    fn refusal(
        &self,
        status: http::StatusCode,
        parsed: &TokenResponse,
        refresh: Option<&Secret>,
    ) -> String {
        let reason = [parsed.error.as_deref(), parsed.error_description.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        let advice = match (refresh, &self.grant) {
            (Some(_), _) => "the refresh token was refused".to_string(),
            (None, Grant::ClientCredentials { help }) => {
                let general = "check client_id and the client secret";
                match help {
                    Some(help) => format!("{general}; {help}"),
                    None => format!("{general}, and that the client-credentials grant is enabled for this client"),
                }
            }
            (None, Grant::Password { .. }) => {
                "check client_id, the client secret, the user name and the password, and that the user is active and not locked out".to_string()
            }
        };
        format!(
            "the endpoint refused to issue an OAuth token (HTTP {status}{}): {advice}",
            if reason.is_empty() {
                String::new()
            } else {
                format!(", {reason}")
            }
        )
    }
}

/// Why the token request to `endpoint` was not answered: a time-out
/// passes by itself, anything else (DNS, connect, TLS, an address the host
/// refuses) needs the address or the network looked at.
fn unsent(endpoint: &http::Uri, e: &wasmtime_wasi_http::Error) -> TokenError {
    use wasmtime_wasi_http::Error;
    match e {
        Error::ConnectionTimeout | Error::ConnectionReadTimeout | Error::HttpResponseTimeout => {
            TokenError::Unavailable(format!(
                "the OAuth token endpoint {endpoint} did not answer in time ({e}); the next sync tries again"
            ))
        }
        _ => TokenError::Unreachable(format!(
            "the OAuth token endpoint {endpoint} could not be reached: {e}; check the endpoint's address and that this machine may reach it (firewall, proxy)"
        )),
    }
}

/// The token an endpoint issued: the `Authorization` value, the refresh
/// token (the new one, else the one used), and when to renew it.
fn token_from(
    access: &str,
    parsed: &TokenResponse,
    refresh: Option<&Secret>,
) -> Result<Token, String> {
    let lifetime = parsed
        .expires_in
        .as_ref()
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .map_or(DEFAULT_LIFETIME, Duration::from_secs);
    // Renew a little before expiry: a minute, or a quarter of short lifetimes.
    let margin = (lifetime / 4).min(Duration::from_secs(60));
    let mut authorization = HeaderValue::from_str(&format!("Bearer {access}"))
        .map_err(|_| "the OAuth token endpoint returned an unusable access token".to_string())?;
    authorization.set_sensitive(true);
    Ok(Token {
        authorization,
        refresh: parsed
            .refresh_token
            .clone()
            .filter(|r| !r.is_empty())
            .map(Secret::new)
            .or_else(|| refresh.cloned()),
        renew_at: Instant::now() + lifetime - margin,
    })
}
