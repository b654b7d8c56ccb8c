//! Who may call the emulated instance: users with roles, Basic auth, OAuth
//! 2.0 tokens from `POST /oauth_token.do`, and `x-sn-apikey` keys.

use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine as _;
use rand::Rng as _;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A user of the emulated instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `user_name`.
    pub name: String,
    /// Password (Basic auth and the OAuth password grant).
    pub password: String,
    /// Roles, e.g. `cmdb_read`.
    pub roles: Vec<String>,
    /// An interactive (not "web service access only") user. When
    /// [`AuthState::restrict_basic_auth`] is on, its Basic calls are refused.
    pub interactive: bool,
}

impl User {
    /// A web-service user with the given roles.
    pub fn new(name: &str, password: &str, roles: &[&str]) -> Self {
        User {
            name: name.into(),
            password: password.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            interactive: false,
        }
    }

    /// Whether the user may read `table`.
    pub fn may_read(&self, table: &str) -> bool {
        let has = |r: &str| self.roles.iter().any(|x| x == r);
        if has("admin") {
            return true;
        }
        if table.starts_with("cmdb") {
            has("cmdb_read") || has("itil")
        } else if table.starts_with("sys_audit") {
            has(AUDIT_READER_ROLE)
        } else {
            true
        }
    }
}

/// The role that lets a non-admin read `sys_audit_delete` (and `sys_audit`).
///
/// ServiceNow ships the audit tables readable by admins only; a customer who
/// wants an integration user to see deletions adds a read ACL for a role of
/// their own. This is that role.
pub const AUDIT_READER_ROLE: &str = "u_audit_delete_reader";

/// An OAuth application registry entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// `client_id`.
    pub id: String,
    /// `client_secret`.
    pub secret: String,
    /// The "OAuth Application User" that client-credentials tokens act as.
    pub application_user: Option<String>,
}

#[derive(Debug, Clone)]
struct Token {
    user: String,
    expires: Instant,
}

/// Users, clients, keys and issued tokens.
#[derive(Debug)]
pub struct AuthState {
    /// Users.
    pub users: Vec<User>,
    /// OAuth clients.
    pub clients: Vec<OAuthClient>,
    /// API keys → user name.
    pub api_keys: HashMap<String, String>,
    /// Lifetime of access tokens (ServiceNow's default is 1800 s).
    pub token_lifetime: Duration,
    /// `glide.oauth.inbound.client.credential.grant_type.enabled`.
    pub client_credentials_enabled: bool,
    /// Refuse Basic auth for interactive users (as newer instances do).
    pub restrict_basic_auth: bool,
    /// Consecutive failed Basic logins after which a user is locked out:
    /// `glide.user.max_unlock_attempts` with the "SNC User Lockout Check"
    /// script action active (hardening guides ask for 5 at most). A locked
    /// user's requests are refused with 401 even with the right password; a
    /// successful login before that clears the count ("SNC User Clear").
    /// `None`: no lockout, ServiceNow's default.
    pub lockout_after: Option<u32>,
    /// Consecutive failed Basic logins, by user name.
    failed_logins: HashMap<String, u32>,
    access: HashMap<String, Token>,
    refresh: HashMap<String, (String, String)>,
    /// Tokens issued so far, by grant type (for tests).
    pub tokens_issued: HashMap<String, u64>,
}

/// The OAuth failure body ServiceNow answers with.
fn oauth_denied() -> (StatusCode, serde_json::Value) {
    (
        StatusCode::UNAUTHORIZED,
        serde_json::json!({"error_description": "access_denied", "error": "server_error"}),
    )
}

fn random_token() -> String {
    let mut rng = rand::rng();
    (0..86)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect()
}

impl AuthState {
    /// Users only; no OAuth clients or keys.
    pub fn new(users: Vec<User>) -> Self {
        AuthState {
            users,
            clients: Vec::new(),
            api_keys: HashMap::new(),
            token_lifetime: Duration::from_secs(1800),
            client_credentials_enabled: false,
            restrict_basic_auth: false,
            lockout_after: None,
            failed_logins: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            tokens_issued: HashMap::new(),
        }
    }

    fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The user a request authenticates as, if any. A failed Basic login
    /// of a known user counts towards its lockout ([`Self::lockout_after`]).
    pub fn authenticate(&mut self, headers: &HeaderMap) -> Option<User> {
        if let Some(key) = headers.get("x-sn-apikey").and_then(|v| v.to_str().ok()) {
            return self.api_keys.get(key).and_then(|u| self.user(u)).cloned();
        }
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        if let Some(token) = value.strip_prefix("Bearer ") {
            let t = self.access.get(token.trim())?;
            return (t.expires > Instant::now()).then(|| self.user(&t.user).cloned())?;
        }
        let encoded = value.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (name, password) = decoded.split_once(':')?;
        let user = self.user(name)?.clone();
        if self.is_locked_out(name) {
            return None;
        }
        if user.password != password {
            *self.failed_logins.entry(name.to_string()).or_default() += 1;
            return None;
        }
        self.failed_logins.remove(name);
        if self.restrict_basic_auth && user.interactive {
            return None;
        }
        Some(user)
    }

    /// Whether `user` has been locked out by failed logins.
    pub fn is_locked_out(&self, user: &str) -> bool {
        let failed = self.failed_logins.get(user).copied().unwrap_or(0);
        self.lockout_after.is_some_and(|limit| failed >= limit)
    }

    /// Makes every issued access token expire now.
    pub fn expire_access_tokens(&mut self) {
        let now = Instant::now();
        for t in self.access.values_mut() {
            t.expires = now;
        }
    }

    /// Deactivates OAuth: every access and refresh token is revoked and
    /// no client may get another.
    pub fn revoke_oauth(&mut self) {
        self.access.clear();
        self.refresh.clear();
        self.clients.clear();
    }

    fn issue(
        &mut self,
        user: &str,
        client: &str,
        grant: &str,
        with_refresh: bool,
    ) -> (StatusCode, serde_json::Value) {
        let access = random_token();
        self.access.insert(
            access.clone(),
            Token {
                user: user.to_string(),
                expires: Instant::now() + self.token_lifetime,
            },
        );
        *self.tokens_issued.entry(grant.to_string()).or_default() += 1;
        let mut body = serde_json::json!({
            "access_token": access,
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": self.token_lifetime.as_secs().saturating_sub(1),
        });
        if with_refresh {
            let refresh = random_token();
            self.refresh
                .insert(refresh.clone(), (user.to_string(), client.to_string()));
            body["refresh_token"] = serde_json::Value::String(refresh);
        }
        (StatusCode::OK, body)
    }

    /// `POST /oauth_token.do` with a form-encoded body.
    pub fn token_endpoint(
        &mut self,
        form: &HashMap<String, String>,
    ) -> (StatusCode, serde_json::Value) {
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let client = self
            .clients
            .iter()
            .find(|c| c.id == get("client_id") && c.secret == get("client_secret"))
            .cloned();
        let Some(client) = client else {
            return oauth_denied();
        };
        match get("grant_type") {
            "password" => {
                let ok = self
                    .user(get("username"))
                    .is_some_and(|u| u.password == get("password"));
                if !ok {
                    return oauth_denied();
                }
                let user = get("username").to_string();
                self.issue(&user, &client.id, "password", true)
            }
            "refresh_token" => match self.refresh.get(get("refresh_token")).cloned() {
                Some((user, c)) if c == client.id => {
                    self.issue(&user, &client.id, "refresh_token", false)
                }
                _ => oauth_denied(),
            },
            "client_credentials" => {
                match (&client.application_user, self.client_credentials_enabled) {
                    (Some(user), true) => {
                        let user = user.clone();
                        self.issue(&user, &client.id, "client_credentials", false)
                    }
                    _ => oauth_denied(),
                }
            }
            _ => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error_description": "unsupported grant_type", "error": "unsupported_grant_type"}),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AuthState {
        let mut s = AuthState::new(vec![User::new("svc", "pw", &["cmdb_read"])]);
        s.clients.push(OAuthClient {
            id: "cid".into(),
            secret: "cs".into(),
            application_user: Some("svc".into()),
        });
        s.api_keys.insert("key1".into(), "svc".into());
        s
    }

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn password_grant_refresh_and_expiry() {
        let mut s = state();
        let (code, body) = s.token_endpoint(&form(&[
            ("grant_type", "password"),
            ("client_id", "cid"),
            ("client_secret", "cs"),
            ("username", "svc"),
            ("password", "pw"),
        ]));
        assert_eq!(code, StatusCode::OK);
        let access = body["access_token"].as_str().unwrap().to_string();
        assert_eq!(s.authenticate(&bearer(&access)).unwrap().name, "svc");
        s.expire_access_tokens();
        assert!(s.authenticate(&bearer(&access)).is_none());
        let refresh = body["refresh_token"].as_str().unwrap();
        let (code, body) = s.token_endpoint(&form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "cid"),
            ("client_secret", "cs"),
            ("refresh_token", refresh),
        ]));
        assert_eq!(code, StatusCode::OK);
        assert!(s
            .authenticate(&bearer(body["access_token"].as_str().unwrap()))
            .is_some());
        let (code, _) = s.token_endpoint(&form(&[
            ("grant_type", "password"),
            ("client_id", "cid"),
            ("client_secret", "bad"),
            ("username", "svc"),
            ("password", "pw"),
        ]));
        assert_eq!(code, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn client_credentials_need_enabling() {
        let mut s = state();
        let f = form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "cid"),
            ("client_secret", "cs"),
        ]);
        let (code, body) = s.token_endpoint(&f);
        assert_eq!(
            (code, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("server_error"))
        );
        s.client_credentials_enabled = true;
        assert_eq!(s.token_endpoint(&f).0, StatusCode::OK);
    }

    #[test]
    fn api_keys_and_basic_restrictions() {
        let mut s = state();
        let mut h = HeaderMap::new();
        h.insert("x-sn-apikey", "key1".parse().unwrap());
        assert_eq!(s.authenticate(&h).unwrap().name, "svc");
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, "Basic c3ZjOnB3".parse().unwrap());
        assert!(s.authenticate(&basic).is_some());
        s.users[0].interactive = true;
        s.restrict_basic_auth = true;
        assert!(s.authenticate(&basic).is_none());
    }

    #[test]
    fn failed_basic_logins_lock_a_user_out_and_a_success_clears_the_count() {
        let basic = |password: &str| {
            let mut h = HeaderMap::new();
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("svc:{password}"));
            h.insert(
                header::AUTHORIZATION,
                format!("Basic {encoded}").parse().unwrap(),
            );
            h
        };
        let mut s = state();
        s.lockout_after = Some(3);
        for _ in 0..2 {
            assert!(s.authenticate(&basic("bad")).is_none());
        }
        assert!(
            s.authenticate(&basic("pw")).is_some(),
            "two failures of three"
        );
        for _ in 0..3 {
            assert!(s.authenticate(&basic("bad")).is_none());
        }
        assert!(s.is_locked_out("svc"));
        assert!(
            s.authenticate(&basic("pw")).is_none(),
            "a locked-out user is refused with the right password"
        );
    }
}
