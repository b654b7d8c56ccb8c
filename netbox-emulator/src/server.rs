//! The HTTP side: token authentication as NetBox 4.5 does it, the API root
//! and status, list and detail views of the served endpoints, permissions
//! per token, and random faults of the kind a proxy in front of NetBox
//! produces.

use crate::data::{Database, Micros, Rng};
use crate::query::{Invalid, ListQuery, MAX_PAGE_SIZE};
use crate::render::Renderer;
use axum::body::Body;
use axum::http::{header, HeaderMap, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::sync::{Mutex, RwLock};

/// The NetBox version the emulator reports (`API-Version` is its
/// major.minor).
pub const NETBOX_VERSION: &str = "4.5.0";

/// An API token and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// A v1 token's 40 characters, or a v2 token's `nbt_<key>.<secret>`.
    pub text: String,
    /// Whether the token's user may view the change log
    /// (`core.view_objectchange`).
    pub view_changes: bool,
    /// Whether the token's user may view devices, interfaces and addresses.
    pub view_objects: bool,
}

impl Token {
    /// A token that may view everything.
    pub fn full(text: &str) -> Token {
        Token {
            text: text.to_string(),
            view_changes: true,
            view_objects: true,
        }
    }
}

/// One request the emulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Status answered.
    pub status: u16,
}

/// What the emulator serves and remembers.
#[derive(Debug)]
pub struct State {
    /// The data.
    pub db: RwLock<Database>,
    /// Accepted tokens.
    pub tokens: Mutex<Vec<Token>>,
    /// Every request answered, in order.
    pub log: Mutex<Vec<RequestRecord>>,
    /// Share of list requests failed with a random fault, and the generator.
    faults: Mutex<Option<(f64, Rng)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// State over a database, accepting `tokens`.
    pub fn new(db: Database, tokens: Vec<Token>) -> State {
        State {
            db: RwLock::new(db),
            tokens: Mutex::new(tokens),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(None),
        }
    }

    /// Fails a share `rate` (0.0–1.0) of list requests with a random fault
    /// (502 or 503 page, 429 with `Retry-After: 1`), reproducibly from `seed`.
    pub fn set_random_faults(&self, rate: f64, seed: u64) {
        *lock(&self.faults) = (rate > 0.0).then(|| (rate, Rng::new(seed)));
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).clone()
    }

    /// Runs `f` on the data, for changes.
    pub fn with_db_mut<R>(&self, f: impl FnOnce(&mut Database) -> R) -> R {
        f(&mut self.db.write().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `f` on the data.
    pub fn with_db<R>(&self, f: impl FnOnce(&Database) -> R) -> R {
        f(&self.db.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn random_fault(&self) -> Option<Response<Body>> {
        let mut faults = lock(&self.faults);
        let (rate, rng) = faults.as_mut()?;
        if (rng.below(1_000_000) as f64) >= *rate * 1_000_000.0 {
            return None;
        }
        Some(match rng.below(3) {
            0 => html(StatusCode::BAD_GATEWAY, "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"),
            1 => html(StatusCode::SERVICE_UNAVAILABLE, "<html><head><title>503 Service Temporarily Unavailable</title></head><body><h1>503 Service Temporarily Unavailable</h1></body></html>"),
            _ => {
                let mut r = detail(StatusCode::TOO_MANY_REQUESTS, "Request was throttled. Expected available in 1 second.");
                r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                r
            }
        })
    }

    /// The token the request presents: `Ok(None)` for none, `Err` with the
    /// 403 NetBox sends for an unknown or malformed one.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Token>, Box<Response<Body>>> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let value = value.to_str().unwrap_or("");
        let (scheme, key) = value.split_once(' ').unwrap_or((value, ""));
        let version = match scheme {
            "Token" => "v1",
            "Bearer" if key.starts_with("nbt_") => "v2",
            _ => {
                return Err(Box::new(detail(
                    StatusCode::FORBIDDEN,
                    "Invalid token header. No credentials provided.",
                )))
            }
        };
        // A v2 token sent as `Token`, or a v1 token as `Bearer`, is invalid too.
        let well_formed = (version == "v2") == key.starts_with("nbt_");
        lock(&self.tokens)
            .iter()
            .find(|t| well_formed && t.text == key)
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                Box::new(detail(
                    StatusCode::FORBIDDEN,
                    &format!("Invalid {version} token"),
                ))
            })
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert("api-version", header::HeaderValue::from_static("4.5"));
    r
}

fn detail(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "detail": message }))
}

fn html(status: StatusCode, page: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(page));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html"),
    );
    r
}

/// The endpoints with list and detail views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Devices,
    Interfaces,
    IpAddresses,
    ObjectChanges,
}

impl Endpoint {
    const ALL: [Endpoint; 4] = [
        Endpoint::Devices,
        Endpoint::Interfaces,
        Endpoint::IpAddresses,
        Endpoint::ObjectChanges,
    ];

    fn path(self) -> &'static str {
        match self {
            Endpoint::Devices => "/api/dcim/devices/",
            Endpoint::Interfaces => "/api/dcim/interfaces/",
            Endpoint::IpAddresses => "/api/ipam/ip-addresses/",
            Endpoint::ObjectChanges => "/api/core/object-changes/",
        }
    }

    /// The endpoint a path is under, and the rest of the path.
    fn of(path: &str) -> Option<(Endpoint, &str)> {
        Endpoint::ALL
            .into_iter()
            .find_map(|e| path.strip_prefix(e.path()).map(|rest| (e, rest)))
    }

    fn time_field(self) -> &'static str {
        if self == Endpoint::ObjectChanges {
            "time"
        } else {
            "last_updated"
        }
    }
}

/// Handles one request.
pub async fn handle(state: &State, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let response = respond(state, &req, &path, &query, &format!("http://{host}"));
    lock(&state.log).push(RequestRecord {
        path,
        query,
        status: response.status().as_u16(),
    });
    response
}

fn respond(
    state: &State,
    req: &Request<Body>,
    path: &str,
    query: &str,
    origin: &str,
) -> Response<Body> {
    if req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD {
        return detail(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("Method \"{}\" not allowed.", req.method()),
        );
    }
    let token = match state.authenticate(req.headers()) {
        Ok(token) => token,
        Err(refusal) => return *refusal,
    };
    match path {
        "/api/" => return api_root(origin),
        "/api/status/" => return status(),
        _ => {}
    }
    let Some((endpoint, rest)) = Endpoint::of(path) else {
        // NetBox answers unknown API paths in JSON (with `API-Version`), others with its page.
        if path.starts_with("/api/") {
            return detail(StatusCode::NOT_FOUND, "Not found.");
        }
        return html(
            StatusCode::NOT_FOUND,
            "<!doctype html><html><head><title>Page not found</title></head><body><h1>Page Not Found</h1><p>The requested page does not exist.</p></body></html>",
        );
    };
    // NetBox requires login for every API view by default (LOGIN_REQUIRED).
    let Some(token) = token else {
        return detail(
            StatusCode::FORBIDDEN,
            "Authentication credentials were not provided.",
        );
    };
    let allowed = match endpoint {
        Endpoint::ObjectChanges => token.view_changes,
        _ => token.view_objects,
    };
    if !allowed {
        return detail(
            StatusCode::FORBIDDEN,
            "You do not have permission to perform this action.",
        );
    }
    if rest.is_empty() {
        if let Some(fault) = state.random_fault() {
            return fault;
        }
        return match list(state, endpoint, query, origin) {
            Ok(body) => json_response(StatusCode::OK, &body),
            Err(invalid) => json_response(StatusCode::BAD_REQUEST, &invalid),
        };
    }
    match rest.strip_suffix('/').and_then(|id| id.parse::<u64>().ok()) {
        Some(id) => match one(state, endpoint, id, origin) {
            Some(body) => json_response(StatusCode::OK, &body),
            None => detail(StatusCode::NOT_FOUND, "Not found."),
        },
        None => detail(StatusCode::NOT_FOUND, "Not found."),
    }
}

fn api_root(origin: &str) -> Response<Body> {
    let apps = [
        "circuits",
        "core",
        "dcim",
        "extras",
        "ipam",
        "plugins",
        "tenancy",
        "users",
        "virtualization",
        "vpn",
        "wireless",
    ];
    let body: serde_json::Map<String, Value> = apps
        .iter()
        .map(|a| (a.to_string(), json!(format!("{origin}/api/{a}/"))))
        .collect();
    json_response(StatusCode::OK, &Value::Object(body))
}

fn status() -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "django-version": "5.2.8",
            "installed-apps": {},
            "netbox-version": NETBOX_VERSION,
            "netbox-full-version": format!("{NETBOX_VERSION}-Emulator"),
            "plugins": {},
            "python-version": "3.12.3",
            "rq-workers-running": 1,
        }),
    )
}

/// A list view: `{count, next, previous, results}`.
fn list(state: &State, endpoint: Endpoint, query: &str, origin: &str) -> Result<Value, Invalid> {
    use crate::render::assigned_interface;
    let q = ListQuery::parse(query, endpoint.time_field())?;
    let db = state.db.read().unwrap_or_else(|p| p.into_inner());
    let r = Renderer { origin, db: &db };
    let (count, results) = match endpoint {
        Endpoint::Devices => page(
            &q,
            db.devices.range(q.id_range()).map(|(_, d)| d).filter(|d| {
                q.admits(d.id, d.last_updated)
                    && q.passes("name", || d.name.as_deref())
                    && q.passes("site", || Some(&db.sites[d.site].slug))
                    && q.passes("status", || Some(d.status))
            }),
            |d| r.device(d),
        ),
        Endpoint::Interfaces => page(
            &q,
            db.interfaces
                .range(q.id_range())
                .map(|(_, i)| i)
                .filter(|i| {
                    q.admits(i.id, i.last_updated)
                        && q.passes("device_id", || Some(i.device.to_string()))
                        && q.passes("name", || Some(&i.name))
                }),
            |i| r.interface(i),
        ),
        Endpoint::IpAddresses => page(
            &q,
            db.ip_addresses
                .range(q.id_range())
                .map(|(_, a)| a)
                .filter(|a| {
                    q.admits(a.id, a.last_updated)
                        && q.passes("interface_id", || {
                            assigned_interface(a.assigned).map(|i| i.to_string())
                        })
                        && q.passes("assigned_object_type", || {
                            crate::render::assigned_type(a.assigned)
                        })
                }),
            |a| r.ip_address(a),
        ),
        Endpoint::ObjectChanges => page(
            &q,
            db.changes.range(q.id_range()).map(|(_, c)| c).filter(|c| {
                q.admits(c.id, c.time)
                    && q.passes("action", || Some(c.action))
                    && q.passes("changed_object_type", || Some(c.object_type))
            }),
            |c| r.change(c),
        ),
    };
    Ok(envelope(&q, origin, endpoint.path(), count, results))
}

/// The page `q` asks for of the matching objects, and how many match.
fn page<'a, T: 'a>(
    q: &ListQuery,
    matching: impl DoubleEndedIterator<Item = &'a T>,
    render: impl Fn(&T) -> Value,
) -> (usize, Vec<Value>) {
    let mut count = 0;
    let mut results = Vec::with_capacity(q.limit.min(MAX_PAGE_SIZE));
    let mut take = |item: &T| {
        if count >= q.offset && results.len() < q.limit {
            results.push(render(item));
        }
        count += 1;
    };
    if q.descending {
        matching.rev().for_each(&mut take);
    } else {
        matching.for_each(&mut take);
    }
    (count, results)
}

fn envelope(q: &ListQuery, origin: &str, path: &str, count: usize, results: Vec<Value>) -> Value {
    let link = |offset: usize| json!(format!("{origin}{path}?{}", q.with_offset(offset)));
    let next = if q.offset.saturating_add(q.limit) < count {
        link(q.offset.saturating_add(q.limit))
    } else {
        Value::Null
    };
    let previous = if q.offset > 0 {
        link(q.offset.saturating_sub(q.limit))
    } else {
        Value::Null
    };
    json!({ "count": count, "next": next, "previous": previous, "results": results })
}

fn one(state: &State, endpoint: Endpoint, id: u64, origin: &str) -> Option<Value> {
    let db = state.db.read().unwrap_or_else(|p| p.into_inner());
    let r = Renderer { origin, db: &db };
    match endpoint {
        Endpoint::Devices => db.devices.get(&id).map(|d| r.device(d)),
        Endpoint::Interfaces => db.interfaces.get(&id).map(|i| r.interface(i)),
        Endpoint::IpAddresses => db.ip_addresses.get(&id).map(|a| r.ip_address(a)),
        Endpoint::ObjectChanges => db.changes.get(&id).map(|c| r.change(c)),
    }
}

/// The emulator's clock, in NetBox's resolution.
pub fn now() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as Micros)
}
