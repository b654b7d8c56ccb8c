//! A connector that misbehaves on purpose, to prove the host's sandbox.
//!
//! It implements the `exposure:connector` world with one stream, `probe`.
//! `read` does what the `mode` setting says and reports what happened as a
//! single record, so end-to-end tests can assert the host's answer:
//!
//! - `set-authorization`: tries to set `authorization` (and `cookie`) on a
//!   request, then sends a request to the instance without them.
//! - `other-host`: sends a request to the URL in the `target` setting.
//! - `snoop`: reads environment variables and command-line arguments.
//! - `escape`: tries the filesystem, a TCP connection to `target` and a DNS
//!   lookup, through the interfaces a language runtime links.
//! - `spin`: never returns (burns CPU).
//! - `allocate`: allocates memory without bound.
//! - `big-response`: reads the path in the `target` setting on the instance
//!   and reports how the body read ended.
//! - `follow-redirect`: requests the `target` path on the instance and, when
//!   the answer is a redirect, requests the `location` it names.

#![cfg(target_arch = "wasm32")]

use exposure_connector_sdk::prelude::*;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, HeaderError, IncomingResponse, Method, OutgoingRequest, Scheme};

struct Probe;

fn value_of<'a>(settings: &'a [(String, String)], name: &str) -> &'a str {
    settings
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

fn header_result(r: Result<(), HeaderError>) -> &'static str {
    match r {
        Ok(()) => "allowed",
        Err(HeaderError::Forbidden) => "forbidden",
        Err(HeaderError::Immutable) => "immutable",
        Err(HeaderError::InvalidSyntax) => "invalid",
    }
}

/// Sends a GET; the response, or the error code's text.
fn send(
    scheme: Scheme,
    authority: &str,
    path: &str,
    headers: Fields,
) -> Result<IncomingResponse, String> {
    let req = OutgoingRequest::new(headers);
    let _ = req.set_method(&Method::Get);
    let _ = req.set_scheme(Some(&scheme));
    let _ = req.set_authority(Some(authority));
    let _ = req.set_path_with_query(Some(path));
    let fut = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    fut.subscribe().block();
    match fut.get() {
        Some(Ok(Ok(resp))) => Ok(resp),
        Some(Ok(Err(code))) => Err(format!("{code:?}")),
        _ => Err("no response".into()),
    }
}

/// Sends a GET; returns the status or the error code's text.
fn get(scheme: Scheme, authority: &str, path: &str, headers: Fields) -> String {
    match send(scheme, authority, path, headers) {
        Ok(resp) => resp.status().to_string(),
        Err(e) => e,
    }
}

/// Sends a GET and reads the whole body; returns (status or error, location header, body bytes read).
fn get_full(scheme: Scheme, authority: &str, path: &str) -> (String, Option<String>, usize) {
    let resp = match send(scheme, authority, path, Fields::new()) {
        Ok(resp) => resp,
        Err(e) => return (e, None, 0),
    };
    let status = resp.status().to_string();
    let location = resp
        .headers()
        .get("location")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let body = resp.consume().expect("body");
    let stream = body.stream().expect("stream");
    let mut read = 0;
    loop {
        match stream.blocking_read(1 << 16) {
            Ok(chunk) => read += chunk.len(),
            Err(wasip2::io::streams::StreamError::Closed) => return (status, location, read),
            Err(wasip2::io::streams::StreamError::LastOperationFailed(e)) => {
                let code = wasip2::http::types::http_error_code(&e)
                    .map_or_else(|| e.to_debug_string(), |c| format!("{c:?}"));
                return (code, location, read);
            }
        }
    }
}

fn split_url(url: &str) -> (Scheme, String, String) {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", r)) => (Scheme::Http, r),
        Some((_, r)) => (Scheme::Https, r),
        None => (Scheme::Https, url),
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    (scheme, authority.to_string(), path)
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

impl Connector for Probe {
    fn info() -> ConnectorInfo {
        ConnectorInfo {
            name: "probe".into(),
            version: "0.0.0".into(),
            description: "Test connector that probes the sandbox.".into(),
            settings: vec![
                endpoint_setting("instance", "The server the probe may contact."),
                setting("mode", "The misbehaviour to try.", None),
                setting("target", "A URL or path the mode uses.", None),
            ],
            auth_methods: vec![AuthMethod::Basic],
            streams: vec![StreamInfo {
                name: "probe".into(),
                description: "What the probe observed.".into(),
                key_field: "sysId".into(),
                json_schema: "{\"type\":\"object\"}".into(),
                supports_incremental: false,
                references: vec![],
                updated_field: None,
            }],
        }
    }

    fn check(_: &[(String, String)], _: &mut dyn Http) -> Result<CheckReport, ConnectorError> {
        Ok(CheckReport { streams: vec![] })
    }

    fn read(
        settings: &[(String, String)],
        _: &ReadRequest,
        _: &mut dyn Http,
    ) -> Result<Page, ConnectorError> {
        let record = match value_of(settings, "mode") {
            "set-authorization" => set_authorization(settings),
            "other-host" => other_host(settings),
            "snoop" => snoop(),
            "escape" => escape(settings),
            "spin" => spin(),
            "allocate" => allocate(),
            "big-response" => big_response(settings),
            "follow-redirect" => follow_redirect(settings),
            other => {
                return Err(ConnectorError::InvalidSettings(format!(
                    "unknown mode `{other}`"
                )))
            }
        };
        Ok(Page {
            records: vec![record],
            deleted: vec![],
            window_start: None,
            next_cursor: None,
            watermark: None,
            counters: PageCounters {
                rows_requested: 1,
                rows_returned: 1,
                server_total: None,
                requests: 1,
            },
        })
    }
}

/// `set-authorization`: what the host answered to setting `authorization`
/// (from a list, then on fields) and `cookie`, and the instance's answer to
/// the request sent without them.
fn set_authorization(settings: &[(String, String)]) -> String {
    let (scheme, authority, _) = split_url(value_of(settings, "instance"));
    let from_list =
        match Fields::from_list(&[("authorization".into(), b"Basic ZXZpbDpldmls".to_vec())]) {
            Ok(_) => "allowed",
            Err(e) => header_result(Err(e)),
        };
    let fields = Fields::new();
    let set = header_result(fields.set("authorization", &[b"Basic ZXZpbDpldmls".to_vec()]));
    let cookie = header_result(fields.append("cookie", b"session=stolen"));
    let status = get(
        scheme,
        &authority,
        "/api/now/table/cmdb_ci_business_app?sysparm_limit=1",
        fields,
    );
    format!(
        "{{\"sysId\":\"1\",\"fromList\":\"{from_list}\",\"set\":\"{set}\",\"cookie\":\"{cookie}\",\"status\":{}}}",
        json_string(&status)
    )
}

/// `other-host`: the answer to a request to the `target` URL.
fn other_host(settings: &[(String, String)]) -> String {
    let (scheme, authority, path) = split_url(value_of(settings, "target"));
    let status = get(scheme, &authority, &path, Fields::new());
    format!("{{\"sysId\":\"1\",\"status\":{}}}", json_string(&status))
}

/// `snoop`: the environment variables' names and the arguments it sees.
fn snoop() -> String {
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    let args: Vec<String> = std::env::args().collect();
    format!(
        "{{\"sysId\":\"1\",\"environment\":{},\"arguments\":{}}}",
        json_string(&vars.join(",")),
        json_string(&args.join(" "))
    )
}

/// `escape`: the filesystem, a TCP connection to `target` and a DNS lookup,
/// through the interfaces a language runtime links (world
/// `connector-with-runtime`).
fn escape(settings: &[(String, String)]) -> String {
    let outcome = |r: std::io::Result<String>| match r {
        Ok(what) => format!("ok: {what}"),
        Err(e) => format!("refused: {e}"),
    };
    let files = outcome(std::fs::read_dir("/").map(|d| format!("{} entries", d.count())));
    let passwd = outcome(std::fs::read_to_string("/etc/passwd"));
    let target = value_of(settings, "target");
    let tcp = outcome(std::net::TcpStream::connect(target).map(|_| "connected".into()));
    let lookup = outcome(
        std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80))
            .map(|a| format!("{} addresses", a.count())),
    );
    format!(
        "{{\"sysId\":\"1\",\"files\":{},\"passwd\":{},\"tcp\":{},\"lookup\":{}}}",
        json_string(&files),
        json_string(&passwd),
        json_string(&tcp),
        json_string(&lookup)
    )
}

/// `spin`: burns CPU and never returns.
fn spin() -> String {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// `allocate`: allocates memory without bound.
fn allocate() -> String {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![7u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

/// `big-response`: how reading the body of the instance's `target` path
/// ended, and how many bytes it read.
fn big_response(settings: &[(String, String)]) -> String {
    let (scheme, authority, _) = split_url(value_of(settings, "instance"));
    let (outcome, _, read) = get_full(scheme, &authority, value_of(settings, "target"));
    format!(
        "{{\"sysId\":\"1\",\"outcome\":{},\"bytes\":{read}}}",
        json_string(&outcome)
    )
}

/// `follow-redirect`: the answer to the instance's `target` path and, when
/// it names a `location`, the answer there.
fn follow_redirect(settings: &[(String, String)]) -> String {
    let (scheme, authority, _) = split_url(value_of(settings, "instance"));
    let (first, location, _) = get_full(scheme, &authority, value_of(settings, "target"));
    let followed = match &location {
        Some(url) => {
            let (s, a, p) = split_url(url);
            get(s, &a, &p, Fields::new())
        }
        None => "no location".into(),
    };
    format!(
        "{{\"sysId\":\"1\",\"first\":{},\"followed\":{}}}",
        json_string(&first),
        json_string(&followed)
    )
}

export_connector!(Probe);
