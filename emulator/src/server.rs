//! The HTTP side: routing, authentication, roles, ACLs, paging and faults.

use crate::auth::{AuthState, User};
use crate::data::{Database, Row, Table};
use crate::faults::{
    Fault, FaultQueue, RandomFaults, ACCESS_RESTRICTED_PAGE, HIBERNATING_PAGE, MAINTENANCE_PAGE,
};
use crate::limits::{ApiSemaphore, RateDecision, RateLimits};
use crate::query::{Query, SysIdRange};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use futures::StreamExt as _;
use percent_encoding::percent_decode_str;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, RwLock};
use std::time::Duration;

/// What the emulator saw of one request (for tests' assertions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Path without the query.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// The authenticated user, if the credentials were valid.
    pub user: Option<String>,
    /// Whether an `Authorization` header was present.
    pub had_authorization: bool,
    /// Status answered.
    pub status: u16,
}

/// Shared state of a running emulator.
#[derive(Debug)]
pub struct State {
    /// The data.
    pub db: RwLock<Database>,
    /// Users, OAuth clients, API keys and tokens.
    pub auth: Mutex<AuthState>,
    /// Pending scripted faults.
    pub faults: Mutex<FaultQueue>,
    /// Faults drawn at random for a share of requests (off by default).
    pub random_faults: Mutex<Option<RandomFaults>>,
    /// Rate-limit rules and counters.
    pub rate_limits: Mutex<RateLimits>,
    /// The API semaphore (unlimited by default).
    pub semaphore: ApiSemaphore,
    /// Rows hidden from every user by ACLs: table → sys_ids.
    pub hidden: RwLock<HashMap<String, HashSet<String>>>,
    /// Every request received, in order.
    pub log: Mutex<Vec<RequestRecord>>,
    /// Notified whenever a request is added to `log`.
    logged: Condvar,
    /// TCP connections accepted.
    connections: AtomicUsize,
    /// Requests between their arrival and their answer being built.
    in_flight: AtomicUsize,
    /// The most requests ever in flight at once (see [`State::most_in_flight`]).
    most_in_flight: AtomicUsize,
    /// Every change the mutator made, in order.
    mutations: Mutex<Vec<crate::mutator::Mutation>>,
    /// Whether the background mutator may change data.
    mutating: AtomicBool,
    /// Added latency per request.
    pub latency: Duration,
    /// Time a new connection waits before it is served: the round trips of
    /// the TCP and TLS handshakes over a long path (see [`State::with_wan`]).
    pub handshake: Duration,
    /// Server time per row a list answer returns, spent before answering
    /// (an instance runs business rules and ACLs on each row it reads).
    pub row_time: Duration,
    /// Scheme used in `Link` and reference links.
    pub scheme: &'static str,
    /// Send reference fields as `{"link", "value"}` even when the caller
    /// asked `sysparm_exclude_reference_link=true` (some proxies and older
    /// releases do).
    pub force_reference_links: AtomicBool,
    /// IP Address Access Control with a deny rule over every address and no
    /// allow rule: each request gets the "Access restricted" page (see
    /// [`ACCESS_RESTRICTED_PAGE`]).
    pub deny_all_ips: AtomicBool,
    /// Answer every request with `Connection: close`, so that no client
    /// reuses a connection. A test of a fault that breaks a connection
    /// needs it: a client may send a request again, unseen, when a
    /// connection it reused closes before any byte of the answer (as it
    /// should for a server's idle time-out), and a broken answer whose
    /// first bytes were never flushed looks just like that.
    pub close_connections: AtomicBool,
    /// Becomes `true` when held answers ([`Fault::Held`]) may go.
    held: tokio::sync::watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// New state over a database.
    pub fn new(db: Database, users: Vec<User>, latency: Duration, scheme: &'static str) -> Self {
        State {
            db: RwLock::new(db),
            auth: Mutex::new(AuthState::new(users)),
            faults: Mutex::new(FaultQueue::default()),
            random_faults: Mutex::new(None),
            rate_limits: Mutex::new(RateLimits::new(Duration::from_secs(3600))),
            semaphore: ApiSemaphore::new(None, 0),
            hidden: RwLock::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            logged: Condvar::new(),
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            mutations: Mutex::new(Vec::new()),
            mutating: AtomicBool::new(true),
            latency,
            handshake: Duration::ZERO,
            row_time: Duration::ZERO,
            scheme,
            force_reference_links: AtomicBool::new(false),
            deny_all_ips: AtomicBool::new(false),
            close_connections: AtomicBool::new(false),
            held: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Lets every held answer ([`Fault::Held`]) go, and those held later too.
    pub fn release_held(&self) {
        self.held.send_replace(true);
    }

    /// TCP connections accepted so far (clients that keep connections alive
    /// make fewer than requests).
    pub fn connections_accepted(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub(crate) fn connection_accepted(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// The most requests in flight at once so far, each counted from its
    /// arrival (before the added latency) until its answer is built: a
    /// client sees an answer end only after that, so a client keeping `n`
    /// requests in flight is never seen with more than `n`.
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request in flight until the guard is dropped.
    fn arrived(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(&self.in_flight)
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).clone()
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        lock(&self.log).len()
    }

    /// Blocks until `n` requests have been answered (their response built,
    /// not necessarily delivered) or `timeout` has passed; returns the count
    /// then. Lets a test act at an exact point of a client's progress.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> usize {
        let guard = lock(&self.log);
        let (guard, _) = self
            .logged
            .wait_timeout_while(guard, timeout, |log| log.len() < n)
            .unwrap_or_else(|p| p.into_inner());
        guard.len()
    }

    /// Changes made to the data so far, in order.
    pub fn mutations(&self) -> Vec<crate::mutator::Mutation> {
        lock(&self.mutations).clone()
    }

    /// Pauses (false) or resumes (true) the background mutator.
    pub fn set_mutating(&self, on: bool) {
        self.mutating.store(on, Ordering::SeqCst);
    }

    /// Whether the background mutator may change data.
    pub fn mutating(&self) -> bool {
        self.mutating.load(Ordering::SeqCst)
    }

    pub(crate) fn record_mutation(&self, m: crate::mutator::Mutation) {
        lock(&self.mutations).push(m);
    }

    /// Adds a scripted fault.
    pub fn inject(&self, rule: crate::faults::FaultRule) {
        lock(&self.faults).push(rule);
    }

    /// Faults still pending.
    pub fn pending_faults(&self) -> u32 {
        lock(&self.faults).pending()
    }

    /// Hides rows of `table` from every user (row-level ACL).
    pub fn hide(&self, table: &str, sys_ids: impl IntoIterator<Item = String>) {
        self.hidden
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(table.to_string())
            .or_default()
            .extend(sys_ids);
    }

    /// Limits concurrent requests to `concurrent`, queueing `queue_depth`
    /// more; further requests get a bare 429. Call before serving.
    pub fn with_semaphore(mut self, concurrent: Option<usize>, queue_depth: usize) -> Self {
        self.semaphore = ApiSemaphore::new(concurrent, queue_depth);
        self
    }

    /// Makes the emulator cost what a distant instance costs beyond its
    /// latency: `handshake` before each new connection is served, and
    /// `row_time` for each row a list answer returns. Call before serving.
    pub fn with_wan(mut self, handshake: Duration, row_time: Duration) -> Self {
        self.handshake = handshake;
        self.row_time = row_time;
        self
    }

    /// Adds a rate-limit rule.
    pub fn add_rate_rule(&self, rule: crate::limits::RateRule) {
        lock(&self.rate_limits).add(rule);
    }

    /// Sets the rate-limit window (an hour on ServiceNow; shorter for tests).
    pub fn set_rate_window(&self, window: Duration) {
        let mut limits = lock(&self.rate_limits);
        let rules = std::mem::replace(&mut *limits, RateLimits::new(window));
        limits.take_rules_from(rules);
    }

    /// Fails `rate` of the requests with random faults drawn from `seed`.
    pub fn set_random_faults(&self, rate: f64, seed: u64) {
        *lock(&self.random_faults) = (rate > 0.0).then(|| RandomFaults::new(rate, seed));
    }

    /// Changes users, OAuth clients, API keys or token settings.
    pub fn configure_auth<R>(&self, f: impl FnOnce(&mut AuthState) -> R) -> R {
        f(&mut lock(&self.auth))
    }

    /// Runs `f` with read access to the data.
    pub fn with_db<R>(&self, f: impl FnOnce(&Database) -> R) -> R {
        f(&read(&self.db))
    }

    /// Runs `f` with write access to the data.
    pub fn with_db_mut<R>(&self, f: impl FnOnce(&mut Database) -> R) -> R {
        f(&mut self.db.write().unwrap_or_else(|p| p.into_inner()))
    }

    fn authenticate(&self, headers: &HeaderMap) -> Option<User> {
        lock(&self.auth).authenticate(headers)
    }
}

/// Characters left as they are in query values of `Link` URLs (RFC 3986 unreserved).
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Query-string parameters, decoded (`+` is a space, as browsers and ServiceNow treat it).
fn parse_params(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn error_response(status: StatusCode, message: &str, detail: Option<&str>) -> Response<Body> {
    let body = serde_json::json!({
        "error": {"message": message, "detail": detail},
        "status": "failure",
    });
    json_response(status, body.to_string())
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

fn html_response(status: StatusCode, page: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(page));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=UTF-8"),
    );
    r
}

fn fault_response(fault: &Fault) -> Option<Response<Body>> {
    Some(match fault {
        Fault::RateLimited { retry_after } => {
            let mut r = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit exceeded",
                Some("Rate limit of 100 requests per hour for Table API exceeded"),
            );
            let h = r.headers_mut();
            h.insert("retry-after", HeaderValue::from(*retry_after));
            h.insert("x-ratelimit-limit", HeaderValue::from_static("100"));
            h.insert(
                "x-ratelimit-rule",
                HeaderValue::from_static("1a2b3c4d5e6f708192a3b4c5d6e7f809"),
            );
            r
        }
        Fault::RateLimitedBare => {
            let mut r = Response::new(Body::from("Too Many Requests"));
            *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            r
        }
        Fault::Status(code) => error_response(
            StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "Internal Server Error",
            Some("The server encountered an unexpected condition"),
        ),
        Fault::Html503 => html_response(StatusCode::SERVICE_UNAVAILABLE, MAINTENANCE_PAGE),
        Fault::Hibernating => html_response(StatusCode::OK, HIBERNATING_PAGE),
        Fault::Redirect(location) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::FOUND;
            if let Ok(v) = HeaderValue::from_str(location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Fault::TransactionCancelled
        | Fault::ExpireTokens
        | Fault::RevokeOAuth
        | Fault::ConnectionReset
        | Fault::SlowHeaders(_)
        | Fault::SlowBody(_)
        | Fault::Held => return None,
    })
}

/// A request counted in flight (see [`State::most_in_flight`]).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Handles one request.
pub async fn handle(state: &State, req: Request<Body>) -> Response<Body> {
    let _in_flight = state.arrived();
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    match lock(&state.faults).take_token_event(&path) {
        Some(Fault::ExpireTokens) => lock(&state.auth).expire_access_tokens(),
        Some(Fault::RevokeOAuth) => lock(&state.auth).revoke_oauth(),
        _ => {}
    }
    let user = state.authenticate(req.headers());
    let had_authorization = req.headers().contains_key(header::AUTHORIZATION)
        || req.headers().contains_key("x-sn-apikey");
    let mut response = if state.deny_all_ips.load(Ordering::Relaxed) {
        access_restricted()
    } else if path == "/oauth_token.do" {
        let fault = lock(&state.faults).take_named(&path);
        match fault.as_ref().and_then(fault_response) {
            Some(faulted) => faulted,
            None => token_request(state, req).await,
        }
    } else if req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD {
        error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not Supported",
            Some("The emulator serves reads only"),
        )
    } else {
        serve_table(state, &path, &query, &host, user.as_ref()).await
    };
    lock(&state.log).push(RequestRecord {
        path,
        query,
        user: user.map(|u| u.name),
        had_authorization,
        status: response.status().as_u16(),
    });
    state.logged.notify_all();
    if state.close_connections.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// What IP Address Access Control answers an address it denies, whatever
/// the path: the "Access restricted" page, before any authentication.
fn access_restricted() -> Response<Body> {
    html_response(StatusCode::UNAUTHORIZED, ACCESS_RESTRICTED_PAGE)
}

/// `POST /oauth_token.do` (form-encoded, as ServiceNow requires).
async fn token_request(state: &State, req: Request<Body>) -> Response<Body> {
    if req.method() != axum::http::Method::POST {
        return error_response(StatusCode::METHOD_NOT_ALLOWED, "Method not Supported", None);
    }
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(str::to_string);
    let Ok(body) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return error_response(StatusCode::BAD_REQUEST, "Request body too large", None);
    };
    let mut form = parse_params(&String::from_utf8_lossy(&body));
    // Client authentication may also come as HTTP Basic (client_secret_basic).
    if let Some((id, secret)) = basic.as_deref().and_then(decode_basic) {
        form.entry("client_id".into()).or_insert(id);
        form.entry("client_secret".into()).or_insert(secret);
    }
    let (status, body) = lock(&state.auth).token_endpoint(&form);
    json_response(status, body.to_string())
}

/// `user:password` of a Basic credential.
fn decode_basic(encoded: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    Some((decode(user), decode(password)))
}

/// A Table API read: authentication, rate limits, the semaphore, faults,
/// then the answer.
async fn serve_table(
    state: &State,
    path: &str,
    query: &str,
    host: &str,
    user: Option<&User>,
) -> Response<Body> {
    let Some(user) = user else {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "User Not Authenticated",
            Some("Required to provide Auth information"),
        );
    };
    let rate_headers = match lock(&state.rate_limits).check(&user.name) {
        RateDecision::Unlimited => Vec::new(),
        RateDecision::Allowed(h) => h,
        RateDecision::Refused(h) => {
            let mut r = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit exceeded",
                Some("Rate limit of requests per hour for Table API exceeded"),
            );
            add_headers(&mut r, &h);
            return r;
        }
    };
    let Some(_slot) = state.semaphore.enter().await else {
        let mut r = Response::new(Body::from("Too Many Requests"));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return r;
    };
    let scripted = lock(&state.faults).take(path);
    let fault = scripted.or_else(|| {
        lock(&state.random_faults)
            .as_mut()
            .and_then(RandomFaults::draw)
    });
    if let Some(r) = fault.as_ref().and_then(fault_response) {
        return r;
    }
    if let Some(Fault::SlowHeaders(ms)) = fault {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if fault == Some(Fault::Held) {
        let mut released = state.held.subscribe();
        // The sender lives as long as the state: `wait_for` only ends released.
        let _ = released.wait_for(|released| *released).await;
    }
    let (mut response, rows) = respond(
        state,
        path,
        query,
        host,
        user,
        fault == Some(Fault::TransactionCancelled),
    );
    if !state.row_time.is_zero() && rows > 0 {
        // Still holding its slot of the semaphore, as an instance's
        // transaction holds its semaphore while it reads.
        tokio::time::sleep(state.row_time.saturating_mul(rows as u32)).await;
    }
    add_headers(&mut response, &rate_headers);
    match fault {
        Some(Fault::ConnectionReset) => break_body(response),
        Some(Fault::SlowBody(ms)) => slow_body(response, Duration::from_millis(ms)).await,
        _ => response,
    }
}

fn add_headers(response: &mut Response<Body>, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, v);
        }
    }
}

/// Sends the start of the body, then fails the stream: the server drops the
/// connection mid-response, as a reset would.
fn break_body(response: Response<Body>) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let stream = futures::stream::once(async move {
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        Ok::<_, std::io::Error>(bytes.slice(..bytes.len() / 2))
    })
    .chain(futures::stream::once(async {
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by the emulator",
        ))
    }));
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Sends the body in 1 KiB pieces with `pause` between them.
async fn slow_body(response: Response<Body>, pause: Duration) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let chunks: Vec<bytes::Bytes> = (0..bytes.len())
        .step_by(1024)
        .map(|i| bytes.slice(i..(i + 1024).min(bytes.len())))
        .collect();
    let stream = futures::stream::iter(chunks).then(move |chunk| async move {
        tokio::time::sleep(pause).await;
        Ok::<_, std::io::Error>(chunk)
    });
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from_stream(stream))
}

/// The answer to a read and the number of rows it returns (for the
/// server time per row).
fn respond(
    state: &State,
    path: &str,
    query: &str,
    host: &str,
    user: &User,
    cancelled: bool,
) -> (Response<Body>, usize) {
    let no_rows = |status, message: &str, detail| (error_response(status, message, detail), 0);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let bad_uri = "Requested URI does not represent any resource";
    let (version_1, rest) = match segments.as_slice() {
        ["api", "now", "table", rest @ ..] => (false, rest),
        ["api", "now", "v1", "table", rest @ ..] => (true, rest),
        ["api", "now", "v2", "table", rest @ ..] => (false, rest),
        _ => return no_rows(StatusCode::BAD_REQUEST, bad_uri, None),
    };
    let (class, sys_id) = match rest {
        [class] => (*class, None),
        [class, id] => (*class, Some(*id)),
        _ => return no_rows(StatusCode::BAD_REQUEST, bad_uri, None),
    };
    let db = read(&state.db);
    let Some(table) = db.table_for(class) else {
        return no_rows(
            StatusCode::BAD_REQUEST,
            &format!("Invalid table {class}"),
            None,
        );
    };
    if !user.may_read(class) {
        return no_rows(
            StatusCode::FORBIDDEN,
            "Insufficient rights to query records",
            Some("Field(s) present in the query do not have permission to be read"),
        );
    }
    let params = parse_params(query);
    let hidden_guard = read(&state.hidden);
    let hidden = hidden_guard.get(&table.name);
    let view = View {
        db: &db,
        table,
        class,
        params: &params,
        base: format!("{}://{host}", state.scheme),
        force_links: state.force_reference_links.load(Ordering::Relaxed),
    };
    match sys_id {
        Some(id) => (view.single(id, hidden), 1),
        None => {
            let (response, returned) = view.list(path, hidden, cancelled);
            // "Version 1 returns error code 404 with no results."
            if version_1 && returned == 0 && !cancelled {
                return no_rows(
                    StatusCode::NOT_FOUND,
                    "No Record found",
                    Some("Records matching query not found. Check query parameter or offset parameter"),
                );
            }
            (response, returned)
        }
    }
}

/// What [`View::write_row`] writes of each row: the request's display
/// mode, whether references carry links, and each field asked for that the
/// table has (its name, its column, the table it refers to).
struct RowFormat<'a> {
    display: String,
    links: bool,
    fields: Vec<(&'a str, usize, Option<&'a str>)>,
}

/// One read of one table, with the caller's parameters.
struct View<'a> {
    db: &'a Database,
    table: &'a Table,
    class: &'a str,
    params: &'a HashMap<String, String>,
    base: String,
    force_links: bool,
}

impl View<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        self.param(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn in_class(&self, row: &Row) -> bool {
        self.class == self.table.name
            || self
                .db
                .classes
                .is_a(self.table.value(row, "sys_class_name"), self.class)
    }

    fn single(&self, id: &str, hidden: Option<&HashSet<String>>) -> Response<Body> {
        let found = self
            .table
            .get(id)
            .filter(|row| self.in_class(row) && !hidden.is_some_and(|h| h.contains(id)));
        match found {
            Some(row) => {
                let mut body = String::from("{\"result\":");
                self.write_row(&mut body, row, &self.row_format());
                body.push('}');
                json_response(StatusCode::OK, body)
            }
            None => error_response(
                StatusCode::NOT_FOUND,
                "No Record found",
                Some("Record doesn't exist or ACL restricts the record retrieval"),
            ),
        }
    }

    fn list(
        &self,
        path: &str,
        hidden: Option<&HashSet<String>>,
        cancelled: bool,
    ) -> (Response<Body>, usize) {
        let query = Query::parse(self.param("sysparm_query").unwrap_or("")).restrict_to(self.table);
        let limit: usize = self
            .param("sysparm_limit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        let offset: usize = self
            .param("sysparm_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // Without X-Total-Count and Link nothing needs the number of
        // matches: the scan may stop at the end of the window.
        let count_all =
            !self.flag("sysparm_no_count") || !self.flag("sysparm_suppress_pagination_header");
        let (total, window) = self.select(&query, offset, limit, count_all);
        // The limit applies before ACLs: hidden rows leave holes in the page.
        let mut body = String::with_capacity(64 + window.len() * 300);
        body.push_str("{\"result\":[");
        let format = self.row_format();
        let mut returned = 0;
        for row in window {
            if hidden.is_some_and(|h| h.contains(row.key())) {
                continue;
            }
            if returned > 0 {
                body.push(',');
            }
            returned += 1;
            self.write_row(&mut body, row, &format);
        }
        body.push_str("]}");
        if cancelled {
            body.truncate(body.len() / 2);
            while !body.is_char_boundary(body.len()) {
                body.pop();
            }
            body.push_str("\"error\":{\"detail\":\"Transaction cancelled: maximum execution time exceeded. Check logs for error trace.\",\"message\":\"Transaction cancelled: maximum execution time exceeded\"},\"status\":\"failure\"}");
        }
        let mut response = json_response(StatusCode::OK, body);
        let headers = response.headers_mut();
        if !self.flag("sysparm_no_count") {
            headers.insert("x-total-count", HeaderValue::from(total));
        }
        if !self.flag("sysparm_suppress_pagination_header") {
            if let Ok(v) = HeaderValue::from_str(&self.link_header(path, offset, limit, total)) {
                headers.insert(header::LINK, v);
            }
        }
        (response, returned)
    }

    /// Counts the rows matching `query` (before ACLs) and returns the window
    /// `offset..offset+limit` of them in the query's order. Unless
    /// `count_all`, a sys_id-ordered scan stops once the window is full, and
    /// the count is only of the rows up to there.
    ///
    /// Keyset reads (sys_id bounds only, sys_id order) are answered by binary
    /// search without touching other rows; other sys_id-ordered queries scan
    /// once without collecting; any other order collects and sorts.
    fn select(
        &self,
        query: &Query,
        offset: usize,
        limit: usize,
        count_all: bool,
    ) -> (usize, Vec<&Row>) {
        let by_sys_id = query.order.is_empty() || query.order == [("sys_id".to_string(), false)];
        if !by_sys_id {
            return self.select_sorted(query, offset, limit);
        }
        let rows = self.table.rows();
        if let (Some(range), true) = (query.sys_id_range(), self.class == self.table.name) {
            let (start, end) = range_indices(rows, &range);
            let from = (start + offset).min(end);
            let to = (from + limit).min(end);
            return (end - start, rows[from..to].iter().collect());
        }
        let (start, end) = sys_id_bounds(rows, query);
        let mut total = 0;
        let mut window = Vec::with_capacity(limit.min(10_000));
        let resolved = query.resolve(self.table);
        let updated = query.updated_on_bounds();
        // The date-time column first, then the query: they usually
        // reject most rows (an incremental read's `sys_updated_on`
        // bound), and the class test walks the class hierarchy by name.
        for (index, row) in rows.iter().enumerate().take(end).skip(start) {
            let key = self.table.updated_key_at(index);
            if !updated.iter().all(|bound| bound.admits(key)) {
                continue;
            }
            if resolved.matches(row) && self.in_class(row) {
                if total >= offset && window.len() < limit {
                    window.push(row);
                } else if !count_all && window.len() == limit {
                    break;
                }
                total += 1;
            }
        }
        (total, window)
    }

    /// Rows ordered by other columns than `sys_id`: every match, sorted.
    fn select_sorted(&self, query: &Query, offset: usize, limit: usize) -> (usize, Vec<&Row>) {
        let resolved = query.resolve(self.table);
        let mut matches: Vec<&Row> = self
            .table
            .rows()
            .iter()
            .filter(|r| resolved.matches(r) && self.in_class(r))
            .collect();
        matches.sort_by(|a, b| {
            for (col, desc) in &query.order {
                let o = self.table.value(a, col).cmp(self.table.value(b, col));
                let o = if *desc { o.reverse() } else { o };
                if o.is_ne() {
                    return o;
                }
            }
            a.key().cmp(b.key())
        });
        let total = matches.len();
        (
            total,
            matches.into_iter().skip(offset).take(limit).collect(),
        )
    }

    /// `Link` with first/prev/next/last, keeping the caller's parameters.
    fn link_header(&self, path: &str, offset: usize, limit: usize, total: usize) -> String {
        let limit = limit.max(1);
        let url = |off: usize| {
            let mut params: Vec<(&String, &String)> = self
                .params
                .iter()
                .filter(|(k, _)| *k != "sysparm_offset" && *k != "sysparm_limit")
                .collect();
            params.sort();
            let mut q: String = params
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        percent_encoding::utf8_percent_encode(v, QUERY_VALUE)
                    )
                })
                .collect::<Vec<_>>()
                .join("&");
            if !q.is_empty() {
                q.push('&');
            }
            format!(
                "<{}{path}?{q}sysparm_offset={off}&sysparm_limit={limit}>",
                self.base
            )
        };
        let last = total.saturating_sub(1) / limit * limit;
        let mut links = vec![format!("{};rel=\"first\"", url(0))];
        if offset > 0 {
            links.push(format!(
                "{};rel=\"prev\"",
                url(offset.saturating_sub(limit))
            ));
        }
        if offset + limit < total {
            links.push(format!("{};rel=\"next\"", url(offset + limit)));
        }
        links.push(format!("{};rel=\"last\"", url(last)));
        links.join(",")
    }

    /// How this request's rows are written, resolved once per response.
    fn row_format(&self) -> RowFormat<'_> {
        let names: Vec<&str> = match self.param("sysparm_fields") {
            Some(f) if !f.trim().is_empty() => f.split(',').map(str::trim).collect(),
            _ => self.table.columns.iter().map(String::as_str).collect(),
        };
        // Unknown fields are left out, as ServiceNow does.
        let fields = names
            .into_iter()
            .filter_map(|name| {
                let column = self.table.column(name)?;
                let target = self.table.references.get(name).map(String::as_str);
                Some((name, column, target))
            })
            .collect();
        RowFormat {
            display: self
                .param("sysparm_display_value")
                .unwrap_or("false")
                .to_ascii_lowercase(),
            links: self.force_links || !self.flag("sysparm_exclude_reference_link"),
            fields,
        }
    }

    fn write_row(&self, out: &mut String, row: &Row, format: &RowFormat<'_>) {
        let values: Vec<&str> = row.values().collect();
        let display = format.display.as_str();
        out.push('{');
        for (i, &(field, column, target)) in format.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(out, field);
            out.push(':');
            let value = values.get(column).copied().unwrap_or("");
            let shown: Cow<'_, str> = match (display, target) {
                ("true" | "all", Some(t)) => Cow::Owned(self.display_of(t, value)),
                ("true" | "all", None) => {
                    Cow::Borrowed(choice_label(field, value).unwrap_or(value))
                }
                _ => Cow::Borrowed(value),
            };
            match (display, target) {
                ("all", _) => {
                    out.push_str("{\"display_value\":");
                    push_json_string(out, &shown);
                    if let (Some(t), true, false) = (target, format.links, value.is_empty()) {
                        out.push_str(",\"link\":");
                        push_json_string(out, &format!("{}/api/now/table/{t}/{value}", self.base));
                    }
                    out.push_str(",\"value\":");
                    push_json_string(out, value);
                    out.push('}');
                }
                (_, Some(t)) if format.links && !value.is_empty() => {
                    if display == "true" {
                        out.push_str("{\"display_value\":");
                        push_json_string(out, &shown);
                    } else {
                        out.push_str("{\"value\":");
                        push_json_string(out, value);
                    }
                    out.push_str(",\"link\":");
                    push_json_string(out, &format!("{}/api/now/table/{t}/{value}", self.base));
                    out.push('}');
                }
                _ => push_json_string(out, &shown),
            }
        }
        out.push('}');
    }

    fn display_of(&self, target: &str, sys_id: &str) -> String {
        match self.db.find_ci(target, sys_id) {
            Some((t, row)) => {
                let name = t.value(row, "name");
                if name.is_empty() {
                    t.value(row, "user_name").to_string()
                } else {
                    name.to_string()
                }
            }
            None => String::new(),
        }
    }
}

/// Display labels of the choice columns the emulator serves.
fn choice_label(column: &str, value: &str) -> Option<&'static str> {
    match column {
        "install_status" => Some(match value {
            "0" => "Implementing",
            "1" => "Installed",
            "2" => "On Order",
            "3" => "In Maintenance",
            "6" => "In Stock",
            "7" => "Retired",
            "100" => "Absent",
            _ => return None,
        }),
        "operational_status" => Some(match value {
            "1" => "Operational",
            "2" => "Non-Operational",
            "3" => "Repair in Progress",
            "6" => "Retired",
            _ => return None,
        }),
        "sys_class_name" => Some(match value {
            "cmdb_ci_computer" => "Computer",
            "cmdb_ci_server" => "Server",
            "cmdb_ci_linux_server" => "Linux Server",
            "cmdb_ci_win_server" => "Windows Server",
            "cmdb_ci_pc_hardware" => "Personal Computer",
            "cmdb_ci_network_adapter" => "Network Adapter",
            "cmdb_ci_business_app" => "Business Application",
            _ => return None,
        }),
        _ => None,
    }
}

/// The rows (sorted by sys_id) within the query's sys_id bounds, as indices.
fn sys_id_bounds(rows: &[Row], query: &Query) -> (usize, usize) {
    let start = match query.sys_id_lower_bound() {
        Some((bound, inclusive)) => rows.partition_point(|r| {
            if inclusive {
                r.key() < bound.as_str()
            } else {
                r.key() <= bound.as_str()
            }
        }),
        None => 0,
    };
    let end = match query.sys_id_upper_bound() {
        Some((bound, inclusive)) => rows.partition_point(|r| {
            if inclusive {
                r.key() <= bound.as_str()
            } else {
                r.key() < bound.as_str()
            }
        }),
        None => rows.len(),
    };
    (start, end.max(start))
}

/// Indices `[start, end)` of the rows within a sys_id range.
fn range_indices(rows: &[Row], range: &SysIdRange) -> (usize, usize) {
    let start = match &range.lower {
        Some((v, true)) => rows.partition_point(|r| r.key() < v.as_str()),
        Some((v, false)) => rows.partition_point(|r| r.key() <= v.as_str()),
        None => 0,
    };
    let end = match &range.upper {
        Some((v, true)) => rows.partition_point(|r| r.key() <= v.as_str()),
        Some((v, false)) => rows.partition_point(|r| r.key() < v.as_str()),
        None => rows.len(),
    };
    (start, end.max(start))
}

fn push_json_string(out: &mut String, s: &str) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        // serde_json escapes exactly as JSON requires.
        out.push_str(&serde_json::to_string(s).expect("strings serialise"));
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_decoded() {
        let p = parse_params("sysparm_query=sys_id%3Eab%5EORDERBYsys_id&a=b+c&flag");
        assert_eq!(p["sysparm_query"], "sys_id>ab^ORDERBYsys_id");
        assert_eq!(p["a"], "b c");
        assert_eq!(p["flag"], "");
    }

    /// A state over 10 devices whose user `u` (password `p`) reads the CMDB.
    fn wan_state(handshake: Duration, row_time: Duration) -> State {
        let db = crate::data::generate(crate::DataSpec {
            devices: 10,
            seed: 1,
        });
        let users = vec![User::new("u", "p", &["cmdb_read"])];
        State::new(db, users, Duration::ZERO, "http").with_wan(handshake, row_time)
    }

    fn read(path: &str) -> Request<Body> {
        Request::builder()
            .uri(path)
            .header(header::AUTHORIZATION, "Basic dTpw") // u:p
            .body(Body::empty())
            .unwrap()
    }

    /// On tokio's paused clock: the time below is the emulator's sleeping,
    /// whatever the machine's speed.
    #[tokio::test(start_paused = true)]
    async fn a_list_answer_costs_the_server_time_of_its_rows() {
        let state = wan_state(Duration::ZERO, Duration::from_millis(7));
        let started = tokio::time::Instant::now();
        let answer = handle(
            &state,
            read("/api/now/table/cmdb_ci_computer?sysparm_limit=3"),
        )
        .await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(21),
            "3 rows of 7 ms"
        );

        let started = tokio::time::Instant::now();
        let answer = handle(&state, read("/api/now/table/no_such_table")).await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        assert_eq!(started.elapsed(), Duration::ZERO, "no rows, no row time");
    }
}
