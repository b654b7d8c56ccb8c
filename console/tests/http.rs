//! The console over real connections on 127.0.0.1: sessions from the sign-in
//! link, the security headers, the Data connectors page, `/healthz` and
//! `/metrics`, with a backend that serves fixed connections.

use connector_console::auth::SignInToken;
use connector_console::{
    AuthChoice, AuthField, Backend, ConnectRequest, Connected, ConnectionDetail, ConnectionView,
    ConnectorForm, Console, HealthState, HealthView, LastSync, PartitionRunView, ProgressView,
    RecordView, RecordsView, RunView, ScheduleView, SettingField, StreamCheckView, StreamRunView,
    StreamView, TestOutcome,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "sign-in-token-for-tests-0123456789";

struct Fixed(Vec<ConnectionView>, Arc<Mutex<Vec<String>>>);

impl Backend for Fixed {
    fn connections(&self) -> anyhow::Result<Vec<ConnectionView>> {
        Ok(self.0.clone())
    }

    fn connection(&self, id: &str) -> anyhow::Result<Option<ConnectionDetail>> {
        Ok(self
            .0
            .iter()
            .find(|c| c.id == id)
            .map(|c| ConnectionDetail {
                connection: c.clone(),
                runs: vec![run()],
                health_history: vec![
                    HealthView {
                        state: HealthState::Connected,
                        message: None,
                        since: "2026-12-03T10:00:00Z".into(),
                    },
                    HealthView {
                        state: HealthState::Failed,
                        message: Some("ServiceNow rejected the credentials".into()),
                        since: "2026-12-02T10:00:00Z".into(),
                    },
                ],
            }))
    }

    fn sync_now(&self, id: &str) -> anyhow::Result<bool> {
        let known = self.0.iter().any(|c| c.id == id);
        if known {
            self.1.lock().unwrap().push(id.to_string());
        }
        Ok(known)
    }

    fn records(
        &self,
        id: &str,
        stream: &str,
        term: &str,
        offset: u64,
    ) -> anyhow::Result<Option<RecordsView>> {
        let Some(c) = self.0.iter().find(|c| c.id == id && stream == "devices") else {
            return Ok(None);
        };
        // 120 devices; the page from `offset`, 50 at most.
        let rows = (offset..(offset + 50).min(120))
            .map(|i| {
                (
                    format!("d{i:03}"),
                    vec![("name".to_string(), format!("<srv-{i}>"))],
                )
            })
            .collect();
        Ok(Some(RecordsView {
            connection: c.clone(),
            stream: stream.into(),
            term: term.into(),
            total: 120,
            offset,
            limit: 50,
            rows,
        }))
    }

    fn record(&self, id: &str, stream: &str, key: &str) -> anyhow::Result<Option<RecordView>> {
        let Some(c) = self
            .0
            .iter()
            .find(|c| c.id == id && stream == "devices" && key == "d007")
        else {
            return Ok(None);
        };
        let field = |n: &str, v: &str| (n.to_string(), v.to_string());
        Ok(Some(RecordView {
            connection: c.clone(),
            stream: stream.into(),
            key: key.into(),
            fields: vec![field("name", "srv-7"), field("app", "a1")],
            embedded: vec![(
                "networkAdapters".into(),
                "network_adapters".into(),
                vec![vec![
                    field("mac", "00:11:22:33:44:55"),
                    field("ip", "10.0.0.7"),
                ]],
            )],
            references: vec![(
                "app".into(),
                "business_applications".into(),
                "a1".into(),
                Some(vec![
                    field("name", "Payroll"),
                    field("criticality", "1 - most critical"),
                ]),
            )],
        }))
    }

    fn schedule(&self, id: &str) -> anyhow::Result<Option<ScheduleView>> {
        Ok(self
            .0
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.schedule.clone()))
    }

    fn connectors_available(&self) -> anyhow::Result<Vec<ConnectorForm>> {
        Ok(vec![offered()])
    }

    fn test_connection(&self, request: &ConnectRequest) -> anyhow::Result<TestOutcome> {
        self.1.lock().unwrap().push(format!(
            "test {} {:?} secret={}",
            request.id,
            request.settings,
            request.secrets.first().map_or("", |(_, v)| v.expose())
        ));
        Ok(tested(request))
    }

    fn connect(&self, request: &ConnectRequest) -> anyhow::Result<Connected> {
        self.1.lock().unwrap().push(format!(
            "connect {} secret={}",
            request.id,
            request.secrets.first().map_or("", |(_, v)| v.expose())
        ));
        let outcome = tested(request);
        Ok(if outcome.passed() {
            Connected::Started {
                id: request.id.clone(),
            }
        } else {
            Connected::Refused(outcome)
        })
    }

    fn disconnect(&self, id: &str, delete_records: bool) -> anyhow::Result<bool> {
        let known = self.0.iter().any(|c| c.id == id);
        if known {
            self.1
                .lock()
                .unwrap()
                .push(format!("disconnect {id} delete={delete_records}"));
        }
        Ok(known)
    }
}

/// The one connector offered: an endpoint, a setting with a default, two ways to authenticate.
fn offered() -> ConnectorForm {
    let field = |name: &str, secret| AuthField {
        name: name.into(),
        label: name.into(),
        secret,
    };
    ConnectorForm {
        connector: "servicenow".into(),
        title: "servicenow-cmdb 0.1.0".into(),
        description: "Reads devices <from the CMDB>".into(),
        settings: vec![
            SettingField {
                name: "instance".into(),
                description: "The instance".into(),
                required: true,
                default_value: None,
                endpoint: true,
            },
            SettingField {
                name: "device_table".into(),
                description: "Table the devices are read from".into(),
                required: false,
                default_value: Some("cmdb_ci_computer".into()),
                endpoint: false,
            },
        ],
        auth_methods: vec![
            AuthChoice {
                method: "basic".into(),
                label: "User name and password".into(),
                fields: vec![field("username", false), field("password", true)],
            },
            AuthChoice {
                method: "api-key".into(),
                label: "API key".into(),
                fields: vec![field("api_key", true)],
            },
        ],
    }
}

/// The password `right-password` passes; any other is rejected.
fn tested(request: &ConnectRequest) -> TestOutcome {
    let right = request
        .secrets
        .iter()
        .any(|(f, v)| f == "password" && v.expose() == "right-password");
    if right {
        TestOutcome {
            problem: None,
            streams: vec![StreamCheckView {
                stream: "devices".into(),
                readable: true,
                missing_columns: vec!["u_criticality".into()],
                message: None,
            }],
        }
    } else {
        TestOutcome::failed("unauthenticated: ServiceNow rejected the credentials (HTTP 401)")
    }
}

/// A run whose second partition stopped.
fn run() -> RunView {
    let partition = |index, complete: bool| PartitionRunView {
        index,
        records: 500,
        pages: 5,
        retries: if complete {
            vec![]
        } else {
            vec!["rate-limited".into()]
        },
        hidden_by_acl: Some(0),
        complete,
        error: (!complete).then(|| "gave up after 8 attempts: slow down".to_string()),
    };
    RunView {
        started_at: "2026-12-03T09:59:48Z".into(),
        finished_at: Some("2026-12-03T10:00:00Z".into()),
        status: "incomplete".into(),
        streams: vec![StreamRunView {
            stream: "devices".into(),
            mode: "full".into(),
            verdict: "incomplete".into(),
            partitions: vec![partition(0, true), partition(1, false)],
        }],
    }
}

fn connections() -> Vec<ConnectionView> {
    vec![
        ConnectionView {
            id: "servicenow".into(),
            name: "servicenow@contoso".into(),
            connector: "servicenow-cmdb".into(),
            endpoint: "https://contoso.service-now.com:443".into(),
            health: Some(HealthView {
                state: HealthState::Connected,
                message: None,
                since: "2026-12-03T10:00:00Z".into(),
            }),
            last_sync: Some(LastSync {
                finished_at: "2026-12-03T10:00:00Z".into(),
                finished_unix: Some(1_796_292_000),
                seconds: 12.5,
                requests: 42,
            }),
            streams: vec![StreamView {
                stream: "devices".into(),
                records: 1000,
                retries: vec![("rate-limited".into(), 2)],
                hidden_by_acl: 3,
            }],
            problem: None,
            unreadable: None,
            schedule: Some(ScheduleView {
                running: false,
                next_run: Some("2026-12-03T16:00:00Z".into()),
                disconnected: None,
                progress: vec![],
            }),
        },
        ConnectionView {
            id: "netbox lab".into(),
            name: "netbox \"lab\"".into(),
            connector: "netbox".into(),
            endpoint: "https://netbox.lab:443".into(),
            health: Some(HealthView {
                state: HealthState::Failed,
                message: Some("NetBox refused the token <script>alert(1)</script>".into()),
                since: "2026-12-03T11:00:00Z".into(),
            }),
            last_sync: None,
            streams: vec![],
            problem: None,
            unreadable: None,
            schedule: Some(ScheduleView {
                running: true,
                next_run: None,
                disconnected: None,
                progress: vec![ProgressView {
                    stream: "devices".into(),
                    records: 1200,
                    expected: Some(5000),
                    verdict: None,
                }],
            }),
        },
    ]
}

/// A console on 127.0.0.1, served until the test's runtime ends.
struct Served {
    base: String,
    /// The connections "Sync now" was asked for.
    synced: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

fn serve() -> Served {
    serve_until(std::future::pending()).0
}

/// [`serve`], stopped when `shutdown` completes; also returns the serving task.
fn serve_until(
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (Served, tokio::task::JoinHandle<std::io::Result<()>>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let token = SignInToken::chosen(TOKEN.into()).unwrap();
    let synced = Arc::default();
    let backend = Fixed(connections(), Arc::clone(&synced));
    let console = Console::new(Arc::new(backend), token, false);
    let serving = runtime.spawn(console.serve(listener, shutdown));
    let served = Served {
        base,
        synced,
        _runtime: runtime,
    };
    (served, serving)
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn get(s: &Served, path: &str, cookie: Option<&str>) -> Answer {
    let mut request = agent().get(format!("{}{path}", s.base));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    answer(request.call().unwrap())
}

/// A client that shows every status and follows no redirect.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    Answer {
        status: response.status().as_u16(),
        headers: response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: response.body_mut().read_to_string().unwrap(),
    }
}

/// Signs in with the token and returns the session cookie (`name=value`).
fn sign_in(s: &Served) -> String {
    let answer = get(s, &format!("/signin?token={TOKEN}"), None);
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.header("location"), Some("/"));
    let set = answer.header("set-cookie").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    set.split(';').next().unwrap().to_string()
}

#[test]
fn pages_need_a_session_from_the_sign_in_link() {
    let s = serve();
    let refused = get(&s, "/", None);
    assert_eq!(refused.status, 401);
    assert!(
        refused.body.contains("Sign in with the link"),
        "{}",
        refused.body
    );
    assert!(!refused.body.contains("servicenow@contoso"));
    // A wrong token, a token one character short, and none at all open nothing.
    for path in [
        "/signin?token=wrong".to_string(),
        format!("/signin?token={}", &TOKEN[..TOKEN.len() - 1]),
        "/signin".to_string(),
    ] {
        let answer = get(&s, &path, None);
        assert_eq!(answer.status, 401, "{path}");
        assert!(answer.header("set-cookie").is_none(), "{path}");
    }
    // A forged session cookie opens nothing either.
    assert_eq!(get(&s, "/", Some("console_session=0000")).status, 401);
    // The control: the sign-in link's session shows the page.
    let cookie = sign_in(&s);
    let page = get(&s, "/", Some(&cookie));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("servicenow@contoso"), "{}", page.body);
}

#[test]
fn the_data_connectors_page_shows_health_in_words_and_escapes_what_sources_say() {
    let s = serve();
    let cookie = sign_in(&s);
    let page = get(&s, "/", Some(&cookie)).body;
    assert!(page.contains("<h1>Data connectors</h1>"), "{page}");
    assert!(page.contains("Connected"), "{page}");
    assert!(page.contains("Failed"), "{page}");
    assert!(page.contains("1000 records"), "{page}");
    assert!(page.contains("12.5 s, 42 requests"), "{page}");
    assert!(
        page.contains("NetBox refused the token &#60;script&#62;"),
        "{page}"
    );
    assert!(!page.contains("<script>alert(1)</script>"), "{page}");
}

#[test]
fn every_response_carries_the_security_headers() {
    let s = serve();
    let cookie = sign_in(&s);
    for (path, cookie) in [
        ("/", Some(cookie.as_str())),
        ("/", None),
        ("/healthz", None),
        ("/metrics", None),
        ("/signin?token=wrong", None),
        ("/assets/console.css", None),
        ("/assets/icon.svg", None),
        ("/connect/servicenow", Some(cookie.as_str())),
    ] {
        let answer = get(&s, path, cookie);
        let csp = answer.header("content-security-policy").unwrap_or("");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            answer.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
    }
}

#[test]
fn healthz_and_metrics_need_no_session_and_metrics_are_prometheus_text() {
    let s = serve();
    let health = get(&s, "/healthz", None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let metrics = get(&s, "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = metrics.body;
    for line in [
        "connector_health{connection=\"servicenow@contoso\",state=\"connected\"} 1",
        "connector_health{connection=\"servicenow@contoso\",state=\"failed\"} 0",
        "connector_health{connection=\"netbox \\\"lab\\\"\",state=\"failed\"} 1",
        "connector_records{connection=\"servicenow@contoso\",stream=\"devices\"} 1000",
        "connector_last_sync_duration_seconds{connection=\"servicenow@contoso\"} 12.5",
        "connector_last_sync_end_timestamp_seconds{connection=\"servicenow@contoso\"} 1796292000",
        "connector_last_sync_requests{connection=\"servicenow@contoso\"} 42",
        "connector_last_sync_retries{connection=\"servicenow@contoso\",stream=\"devices\",reason=\"rate-limited\"} 2",
        "connector_last_sync_rows_hidden_by_acl{connection=\"servicenow@contoso\",stream=\"devices\"} 3",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    // Every family is declared once, before its samples.
    let mut declared = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(
                !declared.contains(&name.to_string()),
                "{name} declared twice"
            );
            declared.push(name.to_string());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
        }
    }
}

#[test]
fn a_connection_page_shows_its_runs_per_partition_and_unknown_ones_are_404() {
    let s = serve();
    let cookie = sign_in(&s);
    let list = get(&s, "/", Some(&cookie)).body;
    assert!(list.contains("href=\"/connections/servicenow\""), "{list}");
    assert!(
        list.contains("href=\"/connections/netbox%20lab\""),
        "{list}"
    );
    let page = get(&s, "/connections/servicenow", Some(&cookie));
    assert_eq!(page.status, 200, "{}", page.body);
    for text in [
        "<h1>servicenow@contoso</h1>",
        "gave up after 8 attempts: slow down",
        "Health history",
        "ServiceNow rejected the credentials",
        "2026-12-02T10:00:00Z",
        "rate-limited",
        "incomplete",
        "1000",
    ] {
        assert!(page.body.contains(text), "no `{text}` in {}", page.body);
    }
    let spaced = get(&s, "/connections/netbox%20lab", Some(&cookie));
    assert_eq!(spaced.status, 200, "{}", spaced.body);
    let missing = get(&s, "/connections/nope", Some(&cookie));
    assert_eq!(missing.status, 404);
    assert!(
        missing.body.contains("No such connection"),
        "{}",
        missing.body
    );
    // Without a session the page is refused like any other.
    assert_eq!(get(&s, "/connections/servicenow", None).status, 401);
}

/// POST a form to `path`.
fn post(s: &Served, path: &str, cookie: Option<&str>, form: &str) -> Answer {
    let mut request = agent()
        .post(format!("{}{path}", s.base))
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    answer(request.send(form).unwrap())
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let field = "name=\"csrf\" value=\"";
    let start = page.find(field).expect("a form with a CSRF token") + field.len();
    let end = start + page[start..].find('"').expect("the value's end");
    page[start..end].to_string()
}

#[test]
fn sync_now_needs_the_session_and_its_csrf_token() {
    let s = serve();
    let cookie = sign_in(&s);
    let page = get(&s, "/", Some(&cookie)).body;
    assert!(page.contains("Next sync 2026-12-03T16:00:00Z"), "{page}");
    let csrf = csrf_of(&page);
    // No session, a wrong token, no token: refused, nothing started.
    assert_eq!(
        post(
            &s,
            "/connections/servicenow/sync",
            None,
            &format!("csrf={csrf}")
        )
        .status,
        401
    );
    let wrong = post(
        &s,
        "/connections/servicenow/sync",
        Some(&cookie),
        "csrf=0000",
    );
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    assert_ne!(
        post(&s, "/connections/servicenow/sync", Some(&cookie), "").status,
        303
    );
    // Another session's token does not do either.
    let other = sign_in(&s);
    let other_csrf = csrf_of(&get(&s, "/", Some(&other)).body);
    assert_ne!(other_csrf, csrf);
    assert_eq!(
        post(
            &s,
            "/connections/servicenow/sync",
            Some(&cookie),
            &format!("csrf={other_csrf}")
        )
        .status,
        403
    );
    assert!(s.synced.lock().unwrap().is_empty());
    // The control: the session's own token starts the sync.
    let ok = post(
        &s,
        "/connections/servicenow/sync",
        Some(&cookie),
        &format!("csrf={csrf}"),
    );
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location"), Some("/connections/servicenow"));
    assert_eq!(*s.synced.lock().unwrap(), vec!["servicenow".to_string()]);
    // A connection the host keeps no schedule for is not found.
    let spaced = post(
        &s,
        "/connections/nope/sync",
        Some(&cookie),
        &format!("csrf={csrf}"),
    );
    assert_eq!(spaced.status, 404);
}

#[test]
fn disconnect_asks_first_and_needs_the_csrf_token() {
    let s = serve();
    let cookie = sign_in(&s);
    let page = get(&s, "/connections/servicenow", Some(&cookie)).body;
    assert!(
        page.contains("href=\"/connections/servicenow/disconnect\""),
        "{page}"
    );
    // Asking changes nothing: a page with the choice, the box unticked.
    let ask = get(&s, "/connections/servicenow/disconnect", Some(&cookie));
    assert_eq!(ask.status, 200, "{}", ask.body);
    assert!(
        ask.body
            .contains("Also delete its stored records (1000 devices)"),
        "{}",
        ask.body
    );
    assert!(!ask.body.contains("checked"), "{}", ask.body);
    let csrf = csrf_of(&ask.body);
    let path = "/connections/servicenow/disconnect";
    assert_eq!(post(&s, path, None, &format!("csrf={csrf}")).status, 401);
    assert_eq!(
        post(&s, path, Some(&cookie), "csrf=0000&delete_records=yes").status,
        403
    );
    assert!(s.synced.lock().unwrap().is_empty());
    // The controls: kept records, then deleted ones, each as asked.
    let kept = post(&s, path, Some(&cookie), &format!("csrf={csrf}"));
    assert_eq!(kept.status, 303, "{}", kept.body);
    assert_eq!(kept.header("location"), Some("/connections/servicenow"));
    let deleted = post(
        &s,
        path,
        Some(&cookie),
        &format!("csrf={csrf}&delete_records=yes"),
    );
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    assert_eq!(
        *s.synced.lock().unwrap(),
        vec![
            "disconnect servicenow delete=false".to_string(),
            "disconnect servicenow delete=true".to_string()
        ]
    );
}

#[test]
fn the_record_browser_pages_on_the_server_and_shows_a_record_with_what_hangs_off_it() {
    let s = serve();
    let cookie = sign_in(&s);
    let first = get(
        &s,
        "/connections/servicenow/streams/devices?q=10.0%2F8",
        Some(&cookie),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    for text in [
        "Records 1–50 of 120",
        "value=\"10.0/8\"",
        "href=\"?q=10.0%2F8&#38;offset=50\"",
        "href=\"/connections/servicenow/streams/devices/records/d007\"",
        "&#60;srv-7&#62;",
    ] {
        assert!(first.body.contains(text), "no `{text}` in {}", first.body);
    }
    assert!(!first.body.contains("Previous"), "{}", first.body);
    let last = get(
        &s,
        "/connections/servicenow/streams/devices?q=10.0%2F8&offset=100",
        Some(&cookie),
    );
    assert!(
        last.body.contains("Records 101–120 of 120"),
        "{}",
        last.body
    );
    assert!(last.body.contains("offset=50"), "{}", last.body);
    assert!(!last.body.contains("Next"), "{}", last.body);
    let record = get(
        &s,
        "/connections/servicenow/streams/devices/records/d007",
        Some(&cookie),
    );
    assert_eq!(record.status, 200, "{}", record.body);
    for text in [
        "00:11:22:33:44:55",
        "networkAdapters",
        "Payroll",
        "1 - most critical",
    ] {
        assert!(record.body.contains(text), "no `{text}` in {}", record.body);
    }
    // An unknown stream or record is 404; without a session, 401.
    assert_eq!(
        get(&s, "/connections/servicenow/streams/routers", Some(&cookie)).status,
        404
    );
    assert_eq!(
        get(
            &s,
            "/connections/servicenow/streams/devices/records/nope",
            Some(&cookie)
        )
        .status,
        404
    );
    assert_eq!(
        get(&s, "/connections/servicenow/streams/devices", None).status,
        401
    );
}

/// The first server-sent event of `path`: its lines up to the blank one.
fn first_event(s: &Served, path: &str, cookie: &str) -> (u16, Option<String>, String) {
    let mut response = agent()
        .get(format!("{}{path}", s.base))
        .header("cookie", cookie)
        .call()
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, content_type, next_event(&mut response))
}

/// The next server-sent event on `response`: its lines up to the blank one
/// (what came before the end, when the stream ends first).
fn next_event(response: &mut ureq::http::Response<ureq::Body>) -> String {
    use std::io::Read as _;
    let mut text = Vec::new();
    let mut reader = response.body_mut().as_reader();
    let mut byte = [0u8; 1];
    while !text.ends_with(b"\n\n") && matches!(reader.read(&mut byte), Ok(1)) {
        text.push(byte[0]);
    }
    String::from_utf8(text).unwrap()
}

#[test]
fn a_running_sync_is_followed_live_by_server_sent_events() {
    let s = serve();
    let cookie = sign_in(&s);
    // The page lists the progress and names the events to follow.
    let page = get(&s, "/", Some(&cookie)).body;
    assert!(
        page.contains("data-events=\"/connections/netbox%20lab/progress\""),
        "{page}"
    );
    assert!(page.contains("devices: 1200 of 5000 records"), "{page}");
    assert!(
        page.contains("<script src=\"/assets/console.js\" defer></script>"),
        "{page}"
    );
    let script = get(&s, "/assets/console.js", None);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(script.body.contains("new EventSource"), "{}", script.body);
    // The events: the schedule as JSON, at once.
    let (status, content_type, event) =
        first_event(&s, "/connections/netbox%20lab/progress", &cookie);
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("text/event-stream"));
    assert!(event.starts_with("event: progress\ndata: {"), "{event}");
    assert!(
        event.contains(r#""running":true"#)
            && event.contains(
                r#""progress":[{"stream":"devices","records":1200,"expected":5000,"verdict":null}]"#
            ),
        "{event}"
    );
    // No session: refused; a connection without a schedule: 404.
    assert_eq!(
        get(&s, "/connections/netbox%20lab/progress", None).status,
        401
    );
    assert_eq!(
        get(&s, "/connections/nope/progress", Some(&cookie)).status,
        404
    );
}

#[test]
fn stopping_the_console_ends_the_events_a_browser_follows() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (s, serving) = serve_until(async {
        let _ = stopped.await;
    });
    let cookie = sign_in(&s);
    // A browser follows a running sync, and stays.
    let mut events = agent()
        .get(format!("{}/connections/netbox%20lab/progress", s.base))
        .header("cookie", &cookie)
        .call()
        .unwrap();
    assert!(next_event(&mut events).starts_with("event: progress"));
    stop.send(()).unwrap();
    // The stream ends, and the console with it (a hang fails after a minute).
    assert_eq!(next_event(&mut events), "");
    let finished = s
        ._runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), serving).await });
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "the console did not stop: {finished:?}"
    );
}

/// The value of the hidden field `name` in `page`, if there is one.
fn hidden_field(page: &str, name: &str) -> Option<String> {
    let field = format!("name=\"{name}\" value=\"");
    let start = page.find(&field)? + field.len();
    let end = start + page[start..].find('"')?;
    Some(page[start..end].to_string())
}

/// The home page offers the ServiceNow connector (its description
/// escaped), the form needs a session, an unknown connector has none, and
/// the form is made from `info`: returns its CSRF token.
fn offers_the_form_made_from_info(s: &Served, cookie: &str) -> String {
    let home = get(s, "/", Some(cookie)).body;
    assert!(home.contains("href=\"/connect/servicenow\""), "{home}");
    assert!(
        home.contains("Reads devices &#60;from the CMDB&#62;"),
        "{home}"
    );
    assert_eq!(get(s, "/connect/servicenow", None).status, 401);
    assert_eq!(get(s, "/connect/jira", Some(cookie)).status, 404);
    let form = get(s, "/connect/servicenow", Some(cookie));
    assert_eq!(form.status, 200, "{}", form.body);
    for expected in [
        "name=\"setting.instance\" required",
        "placeholder=\"cmdb_ci_computer\"",
        "name=\"auth.basic.password\" type=\"password\"",
        "name=\"auth.api-key.api_key\" type=\"password\"",
        "value=\"basic\" data-method checked",
    ] {
        assert!(form.body.contains(expected), "{expected}: {}", form.body);
    }
    csrf_of(&form.body)
}

/// "Connect" with the wrong password `Wrong-Secret-99` in `form`: the page
/// says what to fix and keeps the values typed, not the secret.
fn a_wrong_password_keeps_the_values_not_the_secret(s: &Served, cookie: &str, form: &str) {
    let wrong = post(s, "/connect/servicenow", Some(cookie), form);
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    assert!(
        wrong.body.contains("rejected the credentials"),
        "{}",
        wrong.body
    );
    assert!(
        wrong.body.contains("value=\"127.0.0.1:9\""),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains("value=\"reader\""), "{}", wrong.body);
    assert!(!wrong.body.contains("Wrong-Secret-99"), "{}", wrong.body);
}

#[test]
fn connect_offers_a_form_from_info_and_never_sends_a_secret_back() {
    let s = serve();
    let cookie = sign_in(&s);
    let csrf = offers_the_form_made_from_info(&s, &cookie);
    let fields = |password: &str, action: &str| {
        format!("csrf={csrf}&id=cmdb&setting.instance=127.0.0.1%3A9&setting.device_table=&auth.method=basic&auth.basic.username=reader&auth.basic.password={password}&action={action}")
    };
    // A stale form: refused, the backend never asked.
    let stale = post(
        &s,
        "/connect/servicenow",
        Some(&cookie),
        &fields("right-password", "test").replace(&csrf, "0000"),
    );
    assert_eq!(stale.status, 403);
    assert!(s.synced.lock().unwrap().is_empty());
    a_wrong_password_keeps_the_values_not_the_secret(
        &s,
        &cookie,
        &fields("Wrong-Secret-99", "connect"),
    );
    // The right one: the test passes; the password waits in a draft.
    let tested = post(
        &s,
        "/connect/servicenow",
        Some(&cookie),
        &fields("right-password", "test"),
    );
    assert_eq!(tested.status, 200, "{}", tested.body);
    assert!(
        tested.body.contains("Connection test passed"),
        "{}",
        tested.body
    );
    assert!(tested.body.contains("u_criticality"), "{}", tested.body);
    assert!(!tested.body.contains("right-password"), "{}", tested.body);
    assert!(
        tested.body.contains("Kept from your connection test"),
        "{}",
        tested.body
    );
    let draft = hidden_field(&tested.body, "draft").expect("a draft");
    // "Connect" with the password left empty uses the draft's.
    let connect = format!("{}&draft={draft}", fields("", "connect"));
    let made = post(&s, "/connect/servicenow", Some(&cookie), &connect);
    assert_eq!(made.status, 303, "{}", made.body);
    assert_eq!(made.header("location"), Some("/connections/cmdb"));
    let log = s.synced.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![
            "connect cmdb secret=Wrong-Secret-99".to_string(),
            "test cmdb [(\"instance\", \"127.0.0.1:9\")] secret=right-password".to_string(),
            "connect cmdb secret=right-password".to_string(),
        ]
    );
    // The draft is gone once used.
    let again = post(&s, "/connect/servicenow", Some(&cookie), &connect);
    assert_eq!(again.status, 422, "{}", again.body);
}
