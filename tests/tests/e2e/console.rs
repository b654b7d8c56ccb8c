//! `connector-host serve`: the operator console as the real process serves
//! it over the connections of a configuration directory.

use connector_e2e::{ConfigSpec, Fixture, KillOnDrop, PASSWORD_VAR};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest the console may take to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(600);

/// `e2e-host serve` on a free loopback port, with the fixture's environment
/// and its sign-in token from `CONSOLE_TOKEN`; returns the child and the
/// two lines it prints first.
pub(crate) fn spawn_serve(f: &Fixture, dir: &std::path::Path) -> (KillOnDrop, String, String) {
    spawn_serve_with(f, dir, &[], &[])
}

/// [`spawn_serve`] with more arguments and more variables.
pub(crate) fn spawn_serve_with(
    f: &Fixture,
    dir: &std::path::Path,
    more: &[&std::ffi::OsStr],
    more_env: &[(&str, &str)],
) -> (KillOnDrop, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_e2e-host"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config-dir"])
        .arg(dir)
        .args(more)
        .args(["--token-env", "CONSOLE_TOKEN"])
        .env(PASSWORD_VAR, &f.password)
        .env("CONSOLE_TOKEN", "console-token-of-the-e2e-tests")
        .envs(more_env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = lines.next().unwrap().unwrap();
    let sign_in = lines.next().unwrap().unwrap();
    (KillOnDrop(child), listening, sign_in)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// GET `url` with `cookie`: (status, Set-Cookie, body).
pub(crate) fn get(url: &str, cookie: Option<&str>) -> (u16, Option<String>, String) {
    let mut request = agent().get(url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let mut response = request.call().unwrap();
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.body_mut().read_to_string().unwrap();
    (response.status().as_u16(), set_cookie, body)
}

/// GETs `url` until its page contains `text` (a sync in the background
/// finishes), within [`PATIENCE`].
pub(crate) fn wait_for_page(url: &str, cookie: &str, text: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, _, page) = get(url, Some(cookie));
        assert_eq!(status, 200, "{page}");
        if page.contains(text) {
            return page;
        }
        assert!(Instant::now() < deadline, "no `{text}` in time: {page}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let field = "name=\"csrf\" value=\"";
    let start = page.find(field).expect("a form with a CSRF token") + field.len();
    let end = start + page[start..].find('"').expect("the value's end");
    page[start..end].to_string()
}

/// POSTs a form: (status, Location).
fn post(url: &str, cookie: &str, form: &str) -> (u16, Option<String>) {
    let (status, location, _) = post_page(url, cookie, form);
    (status, location)
}

#[test]
fn serve_shows_each_configured_connection_and_its_metrics_then_stops_on_sigterm() {
    let f = Fixture::start(40);
    let config = f.config(&ConfigSpec::default());
    f.sync(&config).ok();
    // A second file that cannot load is shown with its problem, not fatal.
    std::fs::write(f.dir.path().join("zz-broken.toml"), "bogus\n").unwrap();
    // A third whose PostgreSQL server is out of reach (a port nobody
    // listens on) is said so on its line, and hides nothing else.
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    f.config(&ConfigSpec {
        file: "zz-database.toml".into(),
        database: Some(format!(
            "name = \"unreachable\"\ndatabase = \"postgresql://connector@{nobody}/db?sslmode=disable\""
        )),
        ..ConfigSpec::default()
    });
    let (mut child, listening, sign_in) = spawn_serve(&f, f.dir.path());
    let base = listening
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {listening}"))
        .to_string();
    let cookie = signs_in_with_the_printed_link_only(&base, &sign_in);
    let (status, _, page) = get(&format!("{base}/"), Some(&cookie));
    assert_eq!(status, 200, "{page}");
    let port = f.emulator.addr().port();
    assert!(
        page.contains(&format!("servicenow-cmdb@127.0.0.1:{port}")),
        "{page}"
    );
    assert!(page.contains("Connected"), "{page}");
    assert!(page.contains("40 records"), "{page}");
    assert!(page.contains("Configuration problem"), "{page}");
    assert!(
        page.contains("Database unreachable")
            && page.contains("cannot reach the PostgreSQL server"),
        "{page}"
    );
    assert!(!page.contains(&f.password), "a secret reached the browser");
    // The connection's page: its last run, per stream and partition.
    let (status, _, detail) = get(&format!("{base}/connections/servicenow"), Some(&cookie));
    assert_eq!(status, 200, "{detail}");
    assert!(detail.contains("network_adapters"), "{detail}");
    assert!(detail.contains(">complete<"), "{detail}");
    assert!(detail.contains("Health history"), "{detail}");
    metrics_count_records_and_tell_unreadable_stores(&base, port);
    sync_now_reaches_the_source(&f, &base, &cookie);
    finds_a_device_by_an_adapters_ip(&f, &base, &cookie, "servicenow");
    disconnects_deleting_the_records(&f, &base, &cookie, &config);
    // SIGTERM stops it cleanly.
    connector_e2e::sigterm(&child);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// `/metrics`: the 40 devices of the connection, and which stores can be
/// read (the unreachable PostgreSQL one cannot).
fn metrics_count_records_and_tell_unreadable_stores(base: &str, port: u16) {
    let (status, _, metrics) = get(&format!("{base}/metrics"), None);
    assert_eq!(status, 200);
    let line = format!(
        "connector_records{{connection=\"servicenow-cmdb@127.0.0.1:{port}\",stream=\"devices\"}} 40"
    );
    assert!(metrics.lines().any(|l| l == line), "{metrics}");
    let readable =
        |name: &str, up: u8| format!("connector_store_readable{{connection=\"{name}\"}} {up}");
    assert!(
        metrics
            .lines()
            .any(|l| l == readable(&format!("servicenow-cmdb@127.0.0.1:{port}"), 1))
            && metrics.lines().any(|l| l == readable("unreachable", 0)),
        "{metrics}"
    );
}

/// "Sync now", once serve's own first sync is over: the emulator hears
/// from it again.
fn sync_now_reaches_the_source(f: &Fixture, base: &str, cookie: &str) {
    let page = wait_for_page(
        &format!("{base}/connections/servicenow"),
        cookie,
        "Next sync ",
    );
    let before = f.state().request_count();
    let csrf = csrf_of(&page);
    let (status, location) = post(
        &format!("{base}/connections/servicenow/sync"),
        cookie,
        &format!("csrf={csrf}"),
    );
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/connections/servicenow"))
    );
    assert!(f.state().wait_for_requests(before + 1, PATIENCE) > before);
}

/// Databases whose server accepts connections and never answers (a
/// connection pooler whose server is down) hold their own connections'
/// syncs, not the console: the syncs open their databases off the async
/// runtime's worker threads. As many such databases as the runtime has
/// threads once blocked every page, sign-in included, until the opens gave
/// up (here after 600 s).
#[test]
fn databases_that_never_answer_hold_up_neither_the_console_nor_the_other_connections() {
    let f = Fixture::start(40);
    let config = f.config(&ConfigSpec::default());
    f.sync(&config).ok();
    let workers = 2;
    let silent: Vec<std::net::TcpListener> = (0..workers)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    for (i, listener) in silent.iter().enumerate() {
        let addr = listener.local_addr().unwrap();
        f.config(&ConfigSpec {
            file: format!("zz-silent-{i}.toml"),
            database: Some(format!(
                "name = \"silent-{i}\"\ndatabase = \"postgresql://connector@{addr}/db?sslmode=disable&connect_timeout=300\""
            )),
            ..ConfigSpec::default()
        });
    }
    let threads = workers.to_string();
    let env = [
        ("TOKIO_WORKER_THREADS", threads.as_str()),
        ("PGPASSWORD", "unused"),
    ];
    let (mut child, listening, sign_in) = spawn_serve_with(&f, f.dir.path(), &[], &env);
    let base = listening.strip_prefix("listening on ").unwrap().to_string();
    // Each silent connection's first sync is connecting to its database.
    let _held: Vec<_> = silent.iter().map(|l| l.accept().unwrap().0).collect();
    // A deadline for the test, not a measurement.
    let (answered, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let cookie = signed_in(&sign_in);
        let page = get(&format!("{base}/connections/servicenow"), Some(&cookie));
        answered.send(page).ok();
    });
    let (status, _, page) = answer
        .recv_timeout(Duration::from_secs(60))
        .expect("the console did not answer while two databases held their syncs");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(">complete<"), "{page}");
    // Stopped, it exits without waiting for the opens, which would give up
    // after 600 s.
    connector_e2e::sigterm(&child);
    let exited = connector_e2e::exit_within(&mut child, Duration::from_secs(60))
        .expect("serve, stopped, waited for the database opens that never end");
    assert_eq!(exited.code(), Some(0));
}

/// The console refuses a request without a session, and the sign-in link
/// `serve` printed (with the token of the tests) gives the session cookie.
fn signs_in_with_the_printed_link_only(base: &str, sign_in: &str) -> String {
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_eq!(
        sign_in,
        format!("sign in: {base}/signin?token=console-token-of-the-e2e-tests")
    );
    let (status, _, body) = get(&format!("{base}/"), None);
    assert_eq!(status, 401, "{body}");
    signed_in(sign_in)
}

/// "Disconnect" of the connection `servicenow`, deleting its records: its
/// file `config` is set aside, and its records and runs go once the sync in
/// flight stopped.
fn disconnects_deleting_the_records(
    f: &Fixture,
    base: &str,
    cookie: &str,
    config: &std::path::Path,
) {
    let ask = format!("{base}/connections/servicenow/disconnect");
    let (status, _, confirm) = get(&ask, Some(cookie));
    assert_eq!(status, 200, "{confirm}");
    let form = format!("csrf={}&delete_records=yes", csrf_of(&confirm));
    assert_eq!(post(&ask, cookie, &form).0, 303);
    let page = wait_for_page(
        &format!("{base}/connections/servicenow"),
        cookie,
        "Disconnected;",
    );
    assert!(page.contains("records were deleted"), "{page}");
    assert!(!page.contains(">Sync now<"), "{page}");
    assert!(!config.exists());
    assert!(f.dir.path().join("servicenow.toml.disconnected").exists());
    let store = connector_engine::store::Store::open(&f.dir.path().join("inventory.db")).unwrap();
    let port = f.emulator.addr().port();
    let name = format!("servicenow-cmdb@127.0.0.1:{port}");
    assert!(store.counts(&name).unwrap().is_empty());
    assert!(store.recent_runs(&name, 5).unwrap().is_empty());
}

/// The record browser of connection `id` finds a device by an adapter's
/// IP, and the device's page shows the adapter's MAC and the business
/// application the device serves.
pub(crate) fn finds_a_device_by_an_adapters_ip(f: &Fixture, base: &str, cookie: &str, id: &str) {
    let devices = connector_e2e::expected_records(f.state(), "devices");
    let apps = connector_e2e::expected_records(f.state(), "business_applications");
    let app_of = |device: &str| {
        let device = devices.iter().find(|d| d["sysId"] == device)?;
        let app = device["uPrimaryBusinessApplication"].as_str()?;
        apps.iter().find(|a| a["sysId"] == app)
    };
    let adapters = connector_e2e::expected_records(f.state(), "network_adapters");
    let (adapter, app) = adapters
        .iter()
        .filter(|a| a["ipAddress"].is_string() && a["macAddress"].is_string())
        .find_map(|a| Some((a, app_of(a["deviceSysId"].as_str()?)?)))
        .expect("an adapter with an IP and a MAC on a device serving an application");
    let ip = adapter["ipAddress"].as_str().unwrap();
    let device = adapter["deviceSysId"].as_str().unwrap();
    let (status, _, found) = get(
        &format!("{base}/connections/{id}/streams/devices?q={ip}"),
        Some(cookie),
    );
    assert_eq!(status, 200, "{found}");
    let href = format!("/connections/{id}/streams/devices/records/{device}");
    assert!(found.contains(&href), "{found}");
    let (status, _, record) = get(&format!("{base}{href}"), Some(cookie));
    assert_eq!(status, 200, "{record}");
    assert!(
        record.contains(adapter["macAddress"].as_str().unwrap()),
        "{record}"
    );
    assert!(record.contains(app["name"].as_str().unwrap()), "{record}");
}

/// `fields` as `application/x-www-form-urlencoded`.
fn form_encode(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// POSTs a form and reads the page answered: (status, Location, body).
fn post_page(url: &str, cookie: &str, form: &str) -> (u16, Option<String>, String) {
    let mut response = agent()
        .post(url)
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .send(form)
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.body_mut().read_to_string().unwrap();
    (response.status().as_u16(), location, body)
}

/// The value of the hidden field `name` in `page`, if there is one.
fn hidden_field(page: &str, name: &str) -> Option<String> {
    let field = format!("name=\"{name}\" value=\"");
    let start = page.find(&field)? + field.len();
    let end = start + page[start..].find('"')?;
    Some(page[start..end].to_string())
}

/// Signs in with the link `serve` printed: the session cookie.
pub(crate) fn signed_in(sign_in: &str) -> String {
    let link = sign_in.strip_prefix("sign in: ").unwrap();
    let (status, set_cookie, _) = get(link, None);
    assert_eq!(status, 303);
    set_cookie.unwrap().split(';').next().unwrap().to_string()
}

#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[test]
fn connect_tests_the_connection_writes_its_files_and_starts_the_first_sync() {
    let f = Fixture::start(30);
    let dir = f.dir.path().join("connections");
    std::fs::create_dir(&dir).unwrap();
    let (mut child, listening, sign_in) = spawn_serve(&f, &dir);
    let base = listening.strip_prefix("listening on ").unwrap().to_string();
    let cookie = signed_in(&sign_in);
    let url = format!("{base}/connect/servicenow");
    let csrf = csrf_of(&offers_a_form_made_from_info(&base, &cookie));
    let instance = f.emulator.base_url();
    let fields = |password: &str, action: &str, draft: Option<&str>| {
        let mut fields = vec![
            ("csrf", csrf.as_str()),
            ("id", "cmdb"),
            ("every", "6h"),
            ("setting.instance", instance.as_str()),
            ("auth.method", "basic"),
            ("auth.basic.username", "svc_exposure"),
            ("auth.basic.password", password),
            ("action", action),
        ];
        if let Some(d) = draft {
            fields.push(("draft", d));
        }
        form_encode(&fields)
    };
    // A wrong password: the troubleshooting text, nothing written.
    let wrong = "Wrong-Password-4711";
    let (status, _, page) = post_page(&url, &cookie, &fields(wrong, "connect", None));
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("Connection test failed"), "{page}");
    assert!(page.contains("rejected the credentials"), "{page}");
    assert!(!page.contains(wrong), "the password came back: {page}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // The right one: every stream readable; the password waits in a draft.
    let (status, _, page) = post_page(&url, &cookie, &fields(&f.password, "test", None));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Connection test passed"), "{page}");
    assert!(page.contains("network_adapters"), "{page}");
    assert!(
        !page.contains(&f.password),
        "the password came back: {page}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let draft = hidden_field(&page, "draft").expect("a draft");
    // Another session cannot use the draft.
    let other = signed_in(&sign_in);
    let (_, _, other_form) = get(&url, Some(&other));
    let stolen = fields("", "connect", Some(&draft)).replace(&csrf, &csrf_of(&other_form));
    let (status, _, page) = post_page(&url, &other, &stolen);
    assert_eq!(status, 422, "{page}");
    // "Connect" with the password left empty: the draft's is used.
    let (status, location, page) = post_page(&url, &cookie, &fields("", "connect", Some(&draft)));
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/connections/cmdb")),
        "{page}"
    );
    wrote_the_file_and_an_owner_only_secret(&dir, &f.password);
    // Its first sync runs at once.
    let page = wait_for_page(&format!("{base}/connections/cmdb"), &cookie, "Next sync ");
    assert!(page.contains("Connected"), "{page}");
    assert!(page.contains(">30<"), "{page}");
    // The name is taken now.
    let (status, _, page) = post_page(&url, &cookie, &fields(&f.password, "connect", None));
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("exists already"), "{page}");
    connector_e2e::sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    a_restart_takes_it_up_from_its_file(&f, &dir);
}

/// A `serve` started again over `dir` shows the connection `cmdb` that
/// Connect wrote there, loaded without a problem.
#[cfg(unix)]
fn a_restart_takes_it_up_from_its_file(f: &Fixture, dir: &std::path::Path) {
    let (mut child, listening, sign_in) = spawn_serve(f, dir);
    let base = listening.strip_prefix("listening on ").unwrap().to_string();
    let cookie = signed_in(&sign_in);
    let page = wait_for_page(&format!("{base}/"), &cookie, "/connections/cmdb");
    assert!(!page.contains("Configuration problem"), "{page}");
    connector_e2e::sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// The Data connectors page offers every bundled connector, and the
/// ServiceNow form is made from the connector's `info`; returns the form.
#[cfg(unix)]
fn offers_a_form_made_from_info(base: &str, cookie: &str) -> String {
    let (_, _, home) = get(&format!("{base}/"), Some(cookie));
    for connector in ["servicenow", "netbox"] {
        assert!(
            home.contains(&format!("href=\"/connect/{connector}\"")),
            "{home}"
        );
    }
    let (status, _, form) = get(&format!("{base}/connect/servicenow"), Some(cookie));
    assert_eq!(status, 200, "{form}");
    for field in [
        "setting.instance",
        "setting.device_table",
        "auth.basic.password",
        "auth.api-key.api_key",
    ] {
        assert!(
            form.contains(&format!("name=\"{field}\"")),
            "{field}: {form}"
        );
    }
    assert!(form.contains("placeholder=\"cmdb_ci_computer\""), "{form}");
    form
}

/// Connect wrote `cmdb.toml` naming a secret file instead of the password,
/// and the secret file holding it; both readable by their owner only.
#[cfg(unix)]
fn wrote_the_file_and_an_owner_only_secret(dir: &std::path::Path, password: &str) {
    let toml = dir.join("cmdb.toml");
    let secret = dir.join("cmdb.password.secret");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(!text.contains(password), "{text}");
    assert!(
        text.contains("password_file = \"cmdb.password.secret\""),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), password);
    assert_eq!((mode_of(&toml), mode_of(&secret)), (0o600, 0o600));
}

#[test]
fn serve_refuses_a_non_loopback_address_and_a_missing_token_variable() {
    let f = Fixture::start(1);
    let dir = f.dir.path().to_str().unwrap();
    let (code, message) = f
        .cli(&["serve", "--config-dir", dir, "--listen", "0.0.0.0:0"])
        .err();
    assert_eq!(code, 2);
    assert!(message.contains("not a loopback address"), "{message}");
    let (code, message) = f
        .cli(&[
            "serve",
            "--config-dir",
            dir,
            "--listen",
            "127.0.0.1:0",
            "--token-env",
            "NO_SUCH_VAR",
        ])
        .err();
    assert_eq!(code, 2);
    assert!(
        message.contains("NO_SUCH_VAR") && message.contains("not set"),
        "{message}"
    );
}

/// `GET path` over HTTPS from `addr`, trusting only `ca`: the raw answer.
fn https_get(addr: &str, path: &str, ca: &rustls::pki_types::CertificateDer<'static>) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        // The server may close without close_notify; what came is the answer.
        let _ = tls.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    })
}

#[cfg(unix)]
#[test]
fn serve_speaks_https_with_the_operators_certificate_and_secure_cookies() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::start(1);
    let dir = f.dir.path().join("connections");
    std::fs::create_dir(&dir).unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = f.dir.path().join("console.pem");
    let key = f.dir.path().join("console-key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let args = |listen: &str| {
        vec![
            "serve".to_string(),
            "--config-dir".into(),
            dir.display().to_string(),
            "--listen".into(),
            listen.into(),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ]
    };
    // A key others may read is refused, before anything listens.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = args("127.0.0.1:0");
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    let (code, message) = f.cli(&refused).err();
    assert_eq!(code, 2);
    assert!(message.contains("readable by other users"), "{message}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let more = [
        std::ffi::OsStr::new("--tls-cert"),
        cert.as_os_str(),
        std::ffi::OsStr::new("--tls-key"),
        key.as_os_str(),
    ];
    let (mut child, listening, sign_in) = spawn_serve_with(&f, &dir, &more, &[]);
    let addr = listening
        .strip_prefix("listening on https://")
        .unwrap_or_else(|| panic!("first line: {listening}"))
        .to_string();
    assert!(
        sign_in.starts_with(&format!("sign in: https://{addr}/signin?token=")),
        "{sign_in}"
    );
    let ca = rustls::pki_types::CertificateDer::from(certified.cert.der().to_vec());
    let healthz = https_get(&addr, "/healthz", &ca);
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
    let signed_in = https_get(&addr, "/signin?token=console-token-of-the-e2e-tests", &ca);
    assert!(signed_in.starts_with("HTTP/1.1 303"), "{signed_in}");
    let cookie = signed_in
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Plain HTTP gets no page.
    assert!(agent()
        .get(&format!("http://{addr}/healthz"))
        .call()
        .is_err());
    connector_e2e::sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
