//! The emulator over real HTTP on 127.0.0.1: every auth mode, every fault
//! kind, ACLs and the paging headers.

use servicenow_emulator::{
    DataSpec, Emulator, EmulatorConfig, Fault, FaultRule, OAuthClient, User,
};

const BASIC_SVC: &str = "Basic c3ZjOnB3"; // svc:pw
const BASIC_ADMIN: &str = "Basic cm9vdDpwdw=="; // root:pw

fn start() -> Emulator {
    let mut interactive = User::new("alice", "pw2", &["cmdb_read"]);
    interactive.interactive = true;
    Emulator::start(EmulatorConfig {
        data: DataSpec {
            devices: 120,
            seed: 3,
        },
        users: vec![
            User::new("svc", "pw", &["cmdb_read"]),
            User::new("root", "pw", &["admin"]),
            User::new("nobody", "pw", &[]),
            interactive,
        ],
        oauth_clients: vec![OAuthClient {
            id: "cid".into(),
            secret: "cs".into(),
            application_user: Some("svc".into()),
        }],
        api_keys: vec![("k-123".into(), "svc".into())],
        ..Default::default()
    })
    .unwrap()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
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
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    /// The `sys_id`s of a list answer's rows, in order.
    fn sys_ids(&self) -> Vec<String> {
        self.json()["result"]
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {}", self.body))
            .iter()
            .map(|r| r["sys_id"].as_str().unwrap().to_string())
            .collect()
    }
}

fn get(e: &Emulator, path: &str, auth: Option<(&str, &str)>) -> Answer {
    let mut req = agent().get(format!("{}{path}", e.base_url()));
    if let Some((name, value)) = auth {
        req = req.header(name, value);
    }
    let mut resp = req.call().unwrap();
    Answer {
        status: resp.status().as_u16(),
        headers: resp
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: resp.body_mut().read_to_string().unwrap(),
    }
}

fn token(e: &Emulator, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut resp = agent()
        .post(format!("{}/oauth_token.do", e.base_url()))
        .send_form(form.iter().copied())
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap(),
    )
}

const APPS: &str = "/api/now/table/cmdb_ci_business_app?sysparm_limit=2";

#[test]
fn basic_auth_and_roles() {
    let e = start();
    let none = get(&e, APPS, None);
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["message"], "User Not Authenticated");
    assert_eq!(
        get(&e, APPS, Some(("Authorization", BASIC_SVC))).status,
        200
    );
    let forbidden = get(&e, APPS, Some(("Authorization", "Basic bm9ib2R5OnB3")));
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.json()["status"], "failure");
    // An interactive user's Basic call is refused once the instance restricts it.
    assert_eq!(
        get(&e, APPS, Some(("Authorization", "Basic YWxpY2U6cHcy"))).status,
        200
    );
    e.state().configure_auth(|a| a.restrict_basic_auth = true);
    assert_eq!(
        get(&e, APPS, Some(("Authorization", "Basic YWxpY2U6cHcy"))).status,
        401
    );
}

#[test]
fn oauth_grants_and_expiry() {
    let e = start();
    let (status, body) = token(
        &e,
        &[
            ("grant_type", "password"),
            ("client_id", "cid"),
            ("client_secret", "cs"),
            ("username", "svc"),
            ("password", "pw"),
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    let bearer = format!("Bearer {}", body["access_token"].as_str().unwrap());
    assert_eq!(get(&e, APPS, Some(("Authorization", &bearer))).status, 200);
    e.state().configure_auth(|a| a.expire_access_tokens());
    assert_eq!(get(&e, APPS, Some(("Authorization", &bearer))).status, 401);
    let (status, refreshed) = token(
        &e,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "cid"),
            ("client_secret", "cs"),
            ("refresh_token", body["refresh_token"].as_str().unwrap()),
        ],
    );
    assert_eq!(status, 200);
    let bearer = format!("Bearer {}", refreshed["access_token"].as_str().unwrap());
    assert_eq!(get(&e, APPS, Some(("Authorization", &bearer))).status, 200);
    // Client credentials are off until enabled, as on ServiceNow.
    let cc = [
        ("grant_type", "client_credentials"),
        ("client_id", "cid"),
        ("client_secret", "cs"),
    ];
    assert_eq!(
        token(&e, &cc),
        (
            401,
            serde_json::json!({"error_description": "access_denied", "error": "server_error"})
        )
    );
    e.state()
        .configure_auth(|a| a.client_credentials_enabled = true);
    assert_eq!(token(&e, &cc).0, 200);
}

#[test]
fn api_key() {
    let e = start();
    assert_eq!(get(&e, APPS, Some(("x-sn-apikey", "k-123"))).status, 200);
    assert_eq!(get(&e, APPS, Some(("x-sn-apikey", "nope"))).status, 401);
}

#[test]
fn every_fault_kind() {
    let e = start();
    let auth = Some(("Authorization", BASIC_SVC));
    let cases: Vec<(Fault, u16, &str)> = vec![
        (
            Fault::RateLimited { retry_after: 7 },
            429,
            "Rate limit exceeded",
        ),
        (Fault::RateLimitedBare, 429, "Too Many Requests"),
        (Fault::Status(502), 502, "\"status\":\"failure\""),
        (Fault::Html503, 503, "Service Unavailable"),
        (Fault::Hibernating, 200, "Instance Hibernating page"),
        (
            Fault::TransactionCancelled,
            200,
            "Transaction cancelled: maximum execution time exceeded",
        ),
    ];
    for (fault, status, needle) in cases {
        e.state().inject(FaultRule::next(fault.clone(), 1));
        let a = get(&e, APPS, auth);
        assert_eq!(a.status, status, "{fault:?}");
        assert!(a.body.contains(needle), "{fault:?}: {}", a.body);
        if let Fault::RateLimited { .. } = fault {
            assert_eq!(a.header("retry-after"), Some("7"));
            assert!(a.header("x-ratelimit-limit").is_some());
        }
        if fault == Fault::TransactionCancelled {
            assert!(
                serde_json::from_str::<serde_json::Value>(&a.body).is_err(),
                "truncated"
            );
        }
        assert_eq!(get(&e, APPS, auth).status, 200, "one fault only");
    }
}

#[test]
fn acl_holes_paging_headers_and_references() {
    let e = start();
    let auth = Some(("Authorization", BASIC_SVC));
    let ids: Vec<String> = e.state().with_db(|db| {
        db.tables["cmdb_ci_computer"]
            .rows()
            .iter()
            .map(|r| r.key().to_string())
            .collect()
    });
    e.state()
        .hide("cmdb_ci_computer", ids[10..30].iter().cloned());
    let page = get(
        &e,
        "/api/now/table/cmdb_ci_computer?sysparm_limit=10&sysparm_offset=10&sysparm_fields=sys_id",
        auth,
    );
    assert_eq!(
        page.json()["result"].as_array().unwrap().len(),
        0,
        "the limit applies before ACLs"
    );
    assert_eq!(page.header("x-total-count"), Some("120"));
    let link = page.header("link").unwrap();
    for rel in ["first", "prev", "next", "last"] {
        assert!(link.contains(&format!("rel=\"{rel}\"")), "{link}");
    }
    assert!(
        link.contains("sysparm_fields=sys_id") && link.contains("sysparm_offset=110"),
        "{link}"
    );
    let keyset = get(&e, &format!("/api/now/table/cmdb_ci_computer?sysparm_query=sys_id%3E{}%5EORDERBYsys_id&sysparm_limit=5&sysparm_fields=sys_id&sysparm_no_count=true&sysparm_suppress_pagination_header=true", ids[29]), auth);
    assert!(keyset.header("x-total-count").is_none() && keyset.header("link").is_none());
    assert_eq!(keyset.sys_ids(), ids[30..35]);
    let adapters = get(
        &e,
        "/api/now/table/cmdb_ci_network_adapter?sysparm_limit=1&sysparm_fields=cmdb_ci",
        auth,
    );
    let reference = &adapters.json()["result"][0]["cmdb_ci"];
    assert!(reference["link"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/api/now/table/cmdb_ci/", e.base_url())));
    let single = get(
        &e,
        &format!("/api/now/v2/table/cmdb_ci_computer/{}", ids[0]),
        auth,
    );
    assert_eq!(single.json()["result"]["sys_id"], ids[0].as_str());
    assert_eq!(
        get(
            &e,
            &format!("/api/now/table/cmdb_ci_computer/{}", ids[15]),
            auth
        )
        .status,
        404
    );
    let invalid = get(&e, "/api/now/table/cmdb_ci_nothing", auth);
    assert_eq!(
        (invalid.status, invalid.json()["error"]["message"].as_str()),
        (400, Some("Invalid table cmdb_ci_nothing"))
    );
}

#[test]
fn broken_and_slow_responses() {
    let e = start();
    let auth = Some(("Authorization", BASIC_SVC));
    e.state().inject(FaultRule::next(Fault::ConnectionReset, 1));
    let broken = agent()
        .get(format!("{}{APPS}", e.base_url()))
        .header("Authorization", BASIC_SVC)
        .call()
        .and_then(|mut r| r.body_mut().read_to_string());
    assert!(
        broken.is_err(),
        "the body must not arrive whole: {broken:?}"
    );
    // Slow answers still arrive whole, only later.
    e.state().inject(FaultRule::next(Fault::SlowHeaders(50), 1));
    e.state().inject(FaultRule::next(Fault::SlowBody(5), 1));
    let normal = get(&e, APPS, auth).body;
    assert_eq!(get(&e, APPS, auth).body, normal);
    assert_eq!(e.state().pending_faults(), 0);
}

#[test]
fn rate_limit_rules_send_their_headers_and_refuse_past_the_limit() {
    let e = start();
    let auth = Some(("Authorization", BASIC_SVC));
    e.state().add_rate_rule(servicenow_emulator::RateRule {
        sys_id: "rule1".into(),
        user: Some("svc".into()),
        limit: 3,
    });
    for _ in 0..3 {
        let a = get(&e, APPS, auth);
        assert_eq!(a.status, 200);
        assert_eq!(
            (a.header("x-ratelimit-limit"), a.header("x-ratelimit-rule")),
            (Some("3"), Some("rule1"))
        );
        assert!(
            a.header("x-ratelimit-reset")
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 1_700_000_000
        );
    }
    let refused = get(&e, APPS, auth);
    assert_eq!(refused.status, 429);
    assert!(
        refused
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(refused.json()["error"]["message"], "Rate limit exceeded");
    // Another user is not covered by the rule.
    assert_eq!(
        get(&e, APPS, Some(("x-sn-apikey", "k-123"))).status,
        429,
        "the key acts as svc"
    );
}

#[test]
fn a_full_semaphore_queue_answers_a_bare_429() {
    let e = Emulator::start(EmulatorConfig {
        data: DataSpec {
            devices: 10,
            seed: 3,
        },
        users: vec![User::new("svc", "pw", &["cmdb_read"])],
        max_concurrent: Some(1),
        queue_depth: 0,
        ..Default::default()
    })
    .unwrap();
    // Hold the one slot with a slow answer while a second request arrives.
    e.state()
        .inject(FaultRule::next(Fault::SlowHeaders(1500), 1));
    let url = format!("{}{APPS}", e.base_url());
    let slow = std::thread::spawn(move || {
        agent()
            .get(url)
            .header("Authorization", BASIC_SVC)
            .call()
            .unwrap()
            .status()
            .as_u16()
    });
    // Wait until the slow request holds the slot (it consumed the scripted fault).
    while e.state().pending_faults() > 0 {
        std::thread::yield_now();
    }
    let refused = get(&e, APPS, Some(("Authorization", BASIC_SVC)));
    assert_eq!(refused.status, 429);
    assert!(
        refused.header("x-ratelimit-limit").is_none() && refused.header("retry-after").is_none()
    );
    assert_eq!(slow.join().unwrap(), 200);
}

#[test]
fn random_faults_hit_about_their_share() {
    let e = start();
    e.state().set_random_faults(0.5, 42);
    let statuses: Vec<u16> = (0..40)
        .map(|_| {
            agent()
                .get(format!("{}{APPS}", e.base_url()))
                .header("Authorization", BASIC_SVC)
                .call()
                .and_then(|mut r| {
                    let s = r.status().as_u16();
                    let body = r.body_mut().read_to_string()?;
                    Ok(
                        if s == 200 && serde_json::from_str::<serde_json::Value>(&body).is_err() {
                            599
                        } else {
                            s
                        },
                    )
                })
                .unwrap_or(0)
        })
        .collect();
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert!((8..=32).contains(&failed), "{statuses:?}");
}

#[test]
fn related_tables_and_version_1_empty_results() {
    let e = start();
    let auth = Some(("Authorization", BASIC_SVC));
    let ips = get(
        &e,
        "/api/now/table/cmdb_ci_ip_address?sysparm_limit=1&sysparm_display_value=true",
        auth,
    );
    let ip = &ips.json()["result"][0];
    assert_eq!(ip["ip_version"], "4");
    assert!(ip["nic"]["display_value"]
        .as_str()
        .unwrap()
        .starts_with("eth"));
    let rels = get(&e, "/api/now/table/cmdb_rel_ci?sysparm_limit=1&sysparm_display_value=all&sysparm_exclude_reference_link=true", auth);
    assert_eq!(
        rels.json()["result"][0]["type"]["display_value"],
        "Depends on::Used by"
    );
    let empty = "/table/cmdb_ci_computer?sysparm_query=name=no%20such%20device";
    assert_eq!(get(&e, &format!("/api/now/v1{empty}"), auth).status, 404);
    let v2 = get(&e, &format!("/api/now/v2{empty}"), auth);
    assert_eq!((v2.status, v2.body.as_str()), (200, "{\"result\":[]}"));
}

#[test]
fn the_mutator_changes_what_is_served() {
    let e = start();
    let auth = Some(("Authorization", BASIC_SVC));
    let mut rng = servicenow_emulator::data::Rng::new(1);
    let deleted = e
        .state()
        .mutate(servicenow_emulator::MutationKind::Delete, &mut rng)
        .unwrap();
    let updated = e
        .state()
        .mutate(servicenow_emulator::MutationKind::Update, &mut rng)
        .unwrap();
    assert_eq!(
        get(
            &e,
            &format!("/api/now/table/cmdb_ci_computer/{}", deleted.sys_id),
            auth
        )
        .status,
        404
    );
    let audit_path = format!(
        "/api/now/table/sys_audit_delete?sysparm_query=documentkey={}",
        deleted.sys_id
    );
    // The audit is for admins (and roles a customer grants), not cmdb_read.
    assert_eq!(get(&e, &audit_path, auth).status, 403);
    let audit = get(&e, &audit_path, Some(("Authorization", BASIC_ADMIN)));
    assert_eq!(audit.json()["result"][0]["tablename"], "cmdb_ci_computer");
    let changed = get(
        &e,
        &format!(
            "/api/now/table/cmdb_ci_computer?sysparm_query=sys_updated_on%3E%3D{}",
            updated.at.replace(' ', "%20")
        ),
        auth,
    );
    assert!(changed.sys_ids().contains(&updated.sys_id));
}

#[test]
fn filtered_keyset_pages_are_the_same_with_and_without_a_count() {
    let e = start();
    let auth = Some(("authorization", BASIC_SVC));
    let all = get(
        &e,
        "/api/now/table/cmdb_ci_computer?sysparm_fields=sys_id,sys_updated_on&sysparm_query=ORDERBYsys_id",
        auth,
    )
    .json();
    let rows: Vec<(String, String)> = all["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["sys_id"].as_str().unwrap().to_string(),
                r["sys_updated_on"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut dates: Vec<&str> = rows.iter().map(|(_, d)| d.as_str()).collect();
    dates.sort();
    let median = dates[dates.len() / 2];
    let expected: Vec<&str> = rows
        .iter()
        .filter(|(_, d)| d.as_str() >= median)
        .map(|(id, _)| id.as_str())
        .collect();
    assert!(expected.len() > 20 && expected.len() < rows.len());
    // Keyset pages of 7 over `sys_updated_on>=median`, counted or not.
    for extra in [
        "",
        "&sysparm_no_count=true&sysparm_suppress_pagination_header=true",
    ] {
        let mut got: Vec<String> = Vec::new();
        loop {
            let after = got
                .last()
                .map_or(String::new(), |id| format!("sys_id%3E{id}%5E"));
            let page = get(
                &e,
                &format!(
                    "/api/now/table/cmdb_ci_computer?sysparm_fields=sys_id&sysparm_limit=7\
                     &sysparm_query={after}sys_updated_on%3E%3D{}%5EORDERBYsys_id{extra}",
                    median.replace(' ', "%20").replace(':', "%3A")
                ),
                auth,
            );
            if extra.is_empty() {
                let left = expected.len() - got.len();
                assert_eq!(
                    page.header("x-total-count"),
                    Some(left.to_string().as_str())
                );
            } else {
                assert!(page.header("x-total-count").is_none());
            }
            let ids = page.sys_ids();
            if ids.is_empty() {
                break;
            }
            got.extend(ids);
        }
        assert_eq!(got, expected, "{extra}");
    }
}
