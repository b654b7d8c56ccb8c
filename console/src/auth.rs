//! Who may use the console: a session obtained from the sign-in link the
//! host prints when it starts, kept in an `HttpOnly`, `SameSite=Strict`
//! cookie, and a CSRF token per session that state-changing forms carry.

use axum::extract::{Query, Request, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The cookie that carries the session.
pub const SESSION_COOKIE: &str = "console_session";

/// The secret of the sign-in link. `Debug` prints `<redacted>`.
#[derive(Clone)]
pub struct SignInToken(String);

impl SignInToken {
    /// A random token (256 bits, hex).
    pub fn random() -> SignInToken {
        SignInToken(random_hex())
    }

    /// A token the operator chose (`--token-env VAR`); refused when shorter
    /// than 16 characters, which a guess could find.
    pub fn chosen(value: String) -> Result<SignInToken, String> {
        if value.chars().count() < 16 {
            return Err("the sign-in token must be at least 16 characters long".into());
        }
        Ok(SignInToken(value))
    }

    /// The value, for the one place that prints the link.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the token, in time independent of where they differ.
    fn matches(&self, given: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), given.as_bytes())
    }
}

impl std::fmt::Debug for SignInToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// 256 random bits, as hex: tokens, session and draft identifiers.
pub(crate) fn random_hex() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The token its state-changing forms must carry.
    pub csrf: String,
}

impl Session {
    /// Whether a form's `csrf` field is this session's token (constant time).
    pub fn accepts(&self, given: &str) -> bool {
        constant_time_eq(self.csrf.as_bytes(), given.as_bytes())
    }
}

/// Equality in time independent of where the values differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The sign-in token and the sessions it opened.
#[derive(Debug, Clone)]
pub struct Sessions {
    token: SignInToken,
    open: Arc<Mutex<HashMap<String, Session>>>,
    secure_cookie: bool,
}

impl Sessions {
    /// Sessions opened by `token`; `secure_cookie` when served over TLS.
    pub fn new(token: SignInToken, secure_cookie: bool) -> Sessions {
        Sessions {
            token,
            open: Arc::default(),
            secure_cookie,
        }
    }

    fn open(&self) -> (String, Session) {
        let id = random_hex();
        let session = Session { csrf: random_hex() };
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), session.clone());
        (id, session)
    }

    /// The session the request's cookie names, if it is open.
    pub fn of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// `?token=` of the sign-in link.
#[derive(Debug, serde::Deserialize)]
pub struct SignInQuery {
    token: Option<String>,
}

/// `GET /signin?token=…`: opens a session and sends the browser home, or
/// refuses (401) without saying how close the guess was.
pub async fn sign_in(State(sessions): State<Sessions>, Query(q): Query<SignInQuery>) -> Response {
    if !q
        .token
        .as_deref()
        .is_some_and(|t| sessions.token.matches(t))
    {
        return signed_out(
            StatusCode::UNAUTHORIZED,
            "This sign-in link is not valid. Use the link connector-host serve printed when it started.",
        );
    }
    let (id, _) = sessions.open();
    let secure = if sessions.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{secure}");
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(LOCATION, HeaderValue::from_static("/"));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.insert(SET_COOKIE, value);
    }
    response
}

/// Middleware: pages and API calls need an open session.
pub async fn require_session(
    State(sessions): State<Sessions>,
    mut request: Request,
    next: Next,
) -> Response {
    match sessions.of(request.headers()) {
        Some(session) => {
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        None => signed_out(
            StatusCode::UNAUTHORIZED,
            "Sign in with the link connector-host serve printed when it started.",
        ),
    }
}

/// A page for a browser without a session.
fn signed_out(status: StatusCode, message: &'static str) -> Response {
    crate::pages::notice(status, "Sign in", message)
}
