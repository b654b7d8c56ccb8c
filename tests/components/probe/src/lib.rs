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

#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({ path: "../../../wit", world: "connector" });

use exports::exposure::connector::source::Guest;
use exposure::connector::types::*;
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, HeaderError, Method, OutgoingRequest, Scheme};

struct Probe;

fn setting<'a>(settings: &'a [(String, String)], name: &str) -> &'a str {
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

/// Sends a GET; returns the status or the error code's text.
fn get(scheme: Scheme, authority: &str, path: &str, headers: Fields) -> String {
    let req = OutgoingRequest::new(headers);
    let _ = req.set_method(&Method::Get);
    let _ = req.set_scheme(Some(&scheme));
    let _ = req.set_authority(Some(authority));
    let _ = req.set_path_with_query(Some(path));
    let fut = match outgoing_handler::handle(req, None) {
        Ok(f) => f,
        Err(e) => return format!("{e:?}"),
    };
    fut.subscribe().block();
    match fut.get() {
        Some(Ok(Ok(resp))) => resp.status().to_string(),
        Some(Ok(Err(code))) => format!("{code:?}"),
        _ => "no response".into(),
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
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Guest for Probe {
    fn info() -> ConnectorInfo {
        ConnectorInfo {
            name: "probe".into(),
            version: "0.0.0".into(),
            description: "Test connector that probes the sandbox.".into(),
            settings: vec![],
            auth_methods: vec![AuthMethod::Basic],
            streams: vec![StreamInfo {
                name: "probe".into(),
                description: "What the probe observed.".into(),
                key_field: "sysId".into(),
                json_schema: "{\"type\":\"object\"}".into(),
                supports_incremental: false,
                references: vec![],
            }],
        }
    }

    fn check(_: Settings) -> Result<CheckReport, ConnectorError> {
        Ok(CheckReport { streams: vec![] })
    }

    fn read(settings: Settings, _: ReadRequest) -> Result<Page, ConnectorError> {
        let (scheme, authority, _) = split_url(setting(&settings, "instance"));
        let record = match setting(&settings, "mode") {
            "set-authorization" => {
                let from_list = match Fields::from_list(&[(
                    "authorization".into(),
                    b"Basic ZXZpbDpldmls".to_vec(),
                )]) {
                    Ok(_) => "allowed",
                    Err(e) => header_result(Err(e)),
                };
                let fields = Fields::new();
                let set =
                    header_result(fields.set("authorization", &[b"Basic ZXZpbDpldmls".to_vec()]));
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
            "other-host" => {
                let (scheme, authority, path) = split_url(setting(&settings, "target"));
                let status = get(scheme, &authority, &path, Fields::new());
                format!("{{\"sysId\":\"1\",\"status\":{}}}", json_string(&status))
            }
            "snoop" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let args: Vec<String> = std::env::args().collect();
                format!(
                    "{{\"sysId\":\"1\",\"environment\":{},\"arguments\":{}}}",
                    json_string(&vars.join(",")),
                    json_string(&args.join(" "))
                )
            }
            other => {
                return Err(ConnectorError::InvalidSettings(format!(
                    "unknown mode `{other}`"
                )))
            }
        };
        Ok(Page {
            records: vec![record],
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

export!(Probe);
