//! The connector's read loop against an in-memory table server behind the
//! SDK's `Http` trait: keyset paging, ACL-emptied windows, partitions, counts,
//! watermarks and malformed answers.

use exposure_connector_sdk::http::{
    Http, Request as HttpRequest, Response as HttpResponse, TransportError,
};
use exposure_connector_sdk::types::{ConnectorError, Page, Partition, ReadRequest};
use servicenow_connector::connector::{check, read, read_at};
use std::collections::{HashMap, HashSet};

/// A table served the way ServiceNow does: `sysparm_limit` applied before ACLs.
struct TableServer {
    rows: Vec<String>,
    hidden: HashSet<String>,
    send_count: bool,
    requests: Vec<String>,
    date: Option<&'static str>,
}

impl TableServer {
    fn new(n: usize) -> Self {
        let mut rows: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "{:032x}",
                    (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                )
            })
            .collect();
        rows.sort();
        TableServer {
            rows,
            hidden: HashSet::new(),
            send_count: true,
            requests: vec![],
            date: Some("Fri, 27 Nov 2026 01:40:33 GMT"),
        }
    }
}

fn params(path: &str) -> HashMap<String, String> {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

impl Http for TableServer {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.requests.push(request.path_and_query.clone());
        let p = params(&request.path_and_query);
        let query = p.get("sysparm_query").cloned().unwrap_or_default();
        let matches: Vec<&String> = self
            .rows
            .iter()
            .filter(|id| {
                query.split('^').all(|c| {
                    if let Some(v) = c.strip_prefix("sys_id>=") {
                        id.as_str() >= v
                    } else if let Some(v) = c.strip_prefix("sys_id>") {
                        id.as_str() > v
                    } else if let Some(v) = c.strip_prefix("sys_id<") {
                        id.as_str() < v
                    } else {
                        true
                    }
                })
            })
            .collect();
        let offset: usize = p.get("sysparm_offset").map_or(0, |v| v.parse().unwrap());
        let limit: usize = p["sysparm_limit"].parse().unwrap();
        let rows: Vec<String> = matches
            .iter()
            .skip(offset)
            .take(limit)
            .filter(|id| !self.hidden.contains(id.as_str()))
            .map(|id| {
                format!(
                    r#"{{"sys_id":"{id}","name":"n-{id}","cmdb_ci":{{"link":"x","value":"d"}}}}"#
                )
            })
            .collect();
        let mut headers = vec![];
        if self.send_count {
            headers.push(("x-total-count".into(), matches.len().to_string()));
        }
        if let Some(d) = self.date {
            headers.push(("date".into(), d.to_string()));
        }
        Ok(HttpResponse {
            status: 200,
            headers,
            body: format!(r#"{{"result":[{}]}}"#, rows.join(",")).into_bytes(),
        })
    }
}

fn settings() -> Vec<(String, String)> {
    vec![("instance".into(), "contoso.service-now.com".into())]
}

/// Reads a whole partition; returns the sys_ids and the number of pages.
fn read_all(
    server: &mut TableServer,
    stream: &str,
    partition: Partition,
    page_size: u32,
) -> Result<(Vec<String>, usize), ConnectorError> {
    let mut cursor = None;
    let mut keys = Vec::new();
    let mut pages = 0;
    loop {
        let page = read(
            &settings(),
            &request(stream, partition, cursor, None, page_size),
            server,
        )?;
        pages += 1;
        for r in &page.records {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            keys.push(v["sysId"].as_str().unwrap().to_string());
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok((keys, pages)),
        }
        assert!(pages < 10_000, "runaway paging");
    }
}

const WHOLE: Partition = Partition { index: 0, count: 1 };

fn request(
    stream: &str,
    partition: Partition,
    cursor: Option<String>,
    watermark: Option<String>,
    page_size: u32,
) -> ReadRequest {
    ReadRequest {
        stream_name: stream.into(),
        partition,
        cursor,
        watermark,
        deletions_since: None,
        page_size,
    }
}

#[test]
fn reads_every_row_once_in_order() {
    let mut s = TableServer::new(1000);
    let (keys, pages) = read_all(&mut s, "network_adapters", WHOLE, 100).unwrap();
    assert_eq!(keys, s.rows);
    assert_eq!(pages, 10);
    assert!(s.requests[1].contains("sysparm_query=sys_id%3E"));
    assert!(
        s.requests[0].contains("ORDERBYsys_id")
            && s.requests[0].contains("sysparm_exclude_reference_link=true")
    );
}

#[test]
fn counts_only_at_the_start_and_where_the_end_is_expected() {
    let counted = |s: &TableServer| -> Vec<bool> {
        s.requests
            .iter()
            .map(|r| r.contains("sysparm_no_count=false"))
            .collect()
    };
    let mut s = TableServer::new(1000);
    read_all(&mut s, "devices", WHOLE, 100).unwrap();
    let mut expected = vec![false; 10];
    expected[0] = true;
    expected[9] = true;
    assert_eq!(counted(&s), expected);

    // Rows deleted behind the reader's back: the estimate runs past the end,
    // empty windows bring it down, and a counted answer ends the read.
    let mut s = TableServer::new(1000);
    let mut cursor = None;
    let mut keys = 0;
    for page in 0.. {
        let p = read(
            &settings(),
            &request("devices", WHOLE, cursor, None, 100),
            &mut s,
        )
        .unwrap();
        keys += p.records.len();
        if page == 0 {
            s.rows.truncate(500);
        }
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(page < 20, "runaway paging");
    }
    assert_eq!(keys, 500);
    assert!(*counted(&s).last().unwrap());
}

#[test]
fn walks_past_long_acl_gaps() {
    let mut s = TableServer::new(30_000);
    // 12,000 consecutive rows hidden: many pages come back completely empty.
    let hidden: Vec<String> = s.rows[5_000..17_000].to_vec();
    s.hidden.extend(hidden);
    s.hidden.insert(s.rows[29_999].clone());
    let (keys, _) = read_all(&mut s, "devices", WHOLE, 1000).unwrap();
    let expected: Vec<String> = s
        .rows
        .iter()
        .filter(|r| !s.hidden.contains(*r))
        .cloned()
        .collect();
    assert_eq!(keys, expected);
    assert!(
        s.requests.iter().any(|r| r.contains("sysparm_offset=")),
        "skipped hidden windows with offsets"
    );
}

#[test]
fn partitions_split_without_overlap() {
    let mut s = TableServer::new(2000);
    let mut all = Vec::new();
    for index in 0..4 {
        let (keys, _) = read_all(&mut s, "devices", Partition { index, count: 4 }, 128).unwrap();
        assert!(!keys.is_empty());
        all.extend(keys);
    }
    assert_eq!(all, s.rows);
}

#[test]
fn without_a_count_reads_until_an_empty_page() {
    let mut s = TableServer::new(250);
    s.send_count = false;
    let (keys, pages) = read_all(&mut s, "devices", WHOLE, 100).unwrap();
    assert_eq!(keys, s.rows);
    assert_eq!(pages, 4);
}

#[test]
fn watermark_comes_from_the_server_clock_minus_the_lag() {
    let mut s = TableServer::new(3);
    let page = read(
        &settings(),
        &request("devices", WHOLE, None, None, 2),
        &mut s,
    )
    .unwrap();
    assert_eq!(page.watermark.as_deref(), Some("2026-11-27 01:39:33"));
    // Later pages carry the first page's watermark, whatever the clock says then.
    s.date = Some("Sat, 28 Nov 2026 00:00:00 GMT");
    let next = read(
        &settings(),
        &request(
            "devices",
            WHOLE,
            page.next_cursor,
            Some("2026-01-01 00:00:00".into()),
            2,
        ),
        &mut s,
    )
    .unwrap();
    assert_eq!(next.watermark.as_deref(), Some("2026-11-27 01:39:33"));
    assert!(s.requests[1].contains("sys_updated_on%3E%3D2026-01-01%2000%3A00%3A00"));
}

/// Answers every request with the same response.
struct Canned(HttpResponse);

impl Http for Canned {
    fn send(&mut self, _: &HttpRequest) -> Result<HttpResponse, TransportError> {
        Ok(self.0.clone())
    }
}

fn canned(status: u16, body: &str) -> Canned {
    Canned(HttpResponse {
        status,
        headers: vec![("x-total-count".into(), "50".into())],
        body: body.as_bytes().to_vec(),
    })
}

fn read_once(t: &mut dyn Http) -> Result<Page, ConnectorError> {
    read(&settings(), &request("devices", WHOLE, None, None, 10), t)
}

#[test]
fn refuses_rows_out_of_order_or_without_keys() {
    let e = read_once(&mut canned(
        200,
        r#"{"result":[{"sys_id":"b"},{"sys_id":"a"}]}"#,
    ))
    .unwrap_err();
    assert!(matches!(e, ConnectorError::BadResponse(m) if m.contains("ORDERBYsys_id")));
    let e = read_once(&mut canned(200, r#"{"result":[{"name":"x"}]}"#)).unwrap_err();
    assert!(matches!(e, ConnectorError::BadResponse(m) if m.contains("without a sys_id")));
    let e = read_once(&mut canned(200, r#"{"result":[{"sys_id":"a^NQname=x"}]}"#)).unwrap_err();
    assert!(matches!(e, ConnectorError::BadResponse(m) if m.contains("cannot be used for paging")));
}

#[test]
fn unknown_streams_and_bad_cursors_are_settings_errors() {
    let mut t = canned(200, r#"{"result":[]}"#);
    let e = read(
        &settings(),
        &request("incidents", WHOLE, None, None, 1),
        &mut t,
    )
    .unwrap_err();
    assert!(matches!(e, ConnectorError::InvalidSettings(m) if m.contains("incidents")));
    let e = read(
        &settings(),
        &request("devices", WHOLE, Some("garbage".into()), None, 1),
        &mut t,
    )
    .unwrap_err();
    assert!(matches!(e, ConnectorError::InvalidSettings(_)));
}

#[test]
fn check_reports_missing_columns_and_unreadable_streams() {
    struct Server;
    impl Http for Server {
        fn send(&mut self, r: &HttpRequest) -> Result<HttpResponse, TransportError> {
            let body = if r.path_and_query.contains("cmdb_ci_business_app") {
                return Ok(HttpResponse { status: 403, headers: vec![], body: br#"{"error":{"message":"Insufficient rights to query records","detail":null},"status":"failure"}"#.to_vec() });
            } else if r.path_and_query.contains("cmdb_ci_computer") {
                r#"{"result":[{"sys_id":"a","name":"n","os":"x"}]}"#
            } else {
                r#"{"result":[]}"#
            };
            Ok(HttpResponse {
                status: 200,
                headers: vec![],
                body: body.as_bytes().to_vec(),
            })
        }
    }
    let report = check(&settings(), &mut Server).unwrap();
    assert_eq!(report.len(), 3);
    assert!(report[0].readable);
    assert!(report[0]
        .missing_columns
        .contains(&"u_criticality".to_string()));
    assert!(!report[0].missing_columns.contains(&"os".to_string()));
    assert!(
        report[1].readable
            && report[1]
                .message
                .as_deref()
                .unwrap()
                .contains("could not be verified")
    );
    assert!(!report[2].readable && report[2].message.as_deref().unwrap().contains("cmdb_read"));
    // Rejected credentials fail the whole check.
    let e = check(&settings(), &mut canned(401, r#"{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}"#)).unwrap_err();
    assert!(matches!(e, ConnectorError::Unauthenticated(_)));
}

/// A table server that also serves `sys_audit_delete` (or refuses it).
struct Audited {
    table: TableServer,
    /// Audit rows: (sys_id, documentkey, sys_created_on), sorted by sys_id.
    audit: Vec<(String, String, String)>,
    audit_readable: bool,
}

impl Http for Audited {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        if !request.path_and_query.contains("/sys_audit_delete?") {
            return self.table.send(request);
        }
        self.table.requests.push(request.path_and_query.clone());
        if !self.audit_readable {
            return Ok(HttpResponse {
                status: 403,
                headers: vec![],
                body: br#"{"error":{"message":"Insufficient rights to query records","detail":null},"status":"failure"}"#.to_vec(),
            });
        }
        let p = params(&request.path_and_query);
        let query = p["sysparm_query"].clone();
        let matches: Vec<_> = self
            .audit
            .iter()
            .filter(|(id, key, created)| {
                query.split('^').all(|c| {
                    let cmp = |prefix: &str, value: &str, f: fn(&str, &str) -> bool| {
                        c.strip_prefix(prefix).map(|v| f(value, v))
                    };
                    cmp("documentkey>=", key, |a, b| a >= b)
                        .or_else(|| cmp("documentkey<", key, |a, b| a < b))
                        .or_else(|| cmp("sys_created_on>=", created, |a, b| a >= b))
                        .or_else(|| cmp("sys_id>", id, |a, b| a > b))
                        .unwrap_or(true)
                })
            })
            .collect();
        let limit: usize = p["sysparm_limit"].parse().unwrap();
        let rows: Vec<String> = matches
            .iter()
            .take(limit)
            .map(|(id, key, created)| {
                format!(r#"{{"sys_id":"{id}","documentkey":"{key}","sys_created_on":"{created}"}}"#)
            })
            .collect();
        Ok(HttpResponse {
            status: 200,
            headers: vec![("x-total-count".into(), matches.len().to_string())],
            body: format!(r#"{{"result":[{}]}}"#, rows.join(",")).into_bytes(),
        })
    }
}

/// The warnings this test's thread logged through the SDK since the last call.
fn warnings() -> Vec<String> {
    exposure_connector_sdk::log::take()
        .into_iter()
        .filter(|(level, _)| *level == exposure_connector_sdk::log::Level::Warn)
        .map(|(_, line)| line)
        .collect()
}

/// Reads a partition to its end with `deletions_since` set; returns the
/// record keys and the tombstones' keys and times.
fn read_with_deletions(
    t: &mut Audited,
    partition: Partition,
    since: &str,
) -> (Vec<String>, Vec<(String, Option<String>)>) {
    let (mut keys, mut deleted, mut cursor) = (Vec::new(), Vec::new(), None);
    for _ in 0..1000 {
        let mut req = request("devices", partition, cursor, None, 3);
        req.deletions_since = Some(since.into());
        let page = read(&settings(), &req, t).unwrap();
        for r in &page.records {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            keys.push(v["sysId"].as_str().unwrap().to_string());
        }
        deleted.extend(page.deleted.into_iter().map(|d| (d.key, d.deleted_at)));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return (keys, deleted),
        }
    }
    panic!("runaway paging");
}

#[test]
fn deletions_since_the_last_read_follow_the_rows_of_partition_0() {
    let audit: Vec<(String, String, String)> = (0..8u32)
        .map(|i| {
            (
                format!("{i:02}"),
                format!("{:x}{:031x}", i * 2, 0),
                format!("2026-11-2{} 10:00:00", i % 3 + 5),
            )
        })
        .collect();
    let mut t = Audited {
        table: TableServer::new(7),
        audit,
        audit_readable: true,
    };
    let mut all = Vec::new();
    for index in 0..2 {
        let (keys, deleted) =
            read_with_deletions(&mut t, Partition { index, count: 2 }, "2026-11-26 00:00:00");
        assert!(!keys.is_empty());
        // Partition 0 reports the whole stream's deletions; the others none.
        assert!(index == 0 || deleted.is_empty());
        all.extend(deleted);
    }
    // Entries before `since` are left out; times become RFC 3339.
    let expected: Vec<(String, Option<String>)> = (0..8u32)
        .filter(|i| i % 3 + 5 >= 6)
        .map(|i| {
            (
                format!("{:x}{:031x}", i * 2, 0),
                Some(format!("2026-11-2{}T10:00:00Z", i % 3 + 5)),
            )
        })
        .collect();
    all.sort();
    assert_eq!(all, expected);
    let audit_query = t
        .table
        .requests
        .iter()
        .find(|r| r.contains("sys_audit_delete"))
        .unwrap();
    assert!(
        audit_query.contains("tablenameSTARTSWITHcmdb_ci"),
        "{audit_query}"
    );
    assert!(warnings().is_empty());
}

#[test]
fn an_unreadable_audit_warns_and_ends_the_read() {
    let mut t = Audited {
        table: TableServer::new(5),
        audit: vec![],
        audit_readable: false,
    };
    let (keys, deleted) = read_with_deletions(&mut t, WHOLE, "2026-11-26 00:00:00");
    assert_eq!((keys.len(), deleted.len()), (5, 0));
    let warnings = warnings();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("Grant read access to `sys_audit_delete`"));
    // Without a previous complete read there is nothing to look up.
    let requests_before = t.table.requests.len();
    let (keys, _) = read_all(&mut t.table, "devices", WHOLE, 10).unwrap();
    assert_eq!(keys.len(), 5);
    assert!(t.table.requests[requests_before..]
        .iter()
        .all(|r| !r.contains("sys_audit_delete")));
}

#[test]
fn active_within_days_fixes_one_window_for_the_whole_read() {
    let settings = vec![
        (
            "instance".to_string(),
            "contoso.service-now.com".to_string(),
        ),
        ("active_within_days".to_string(), "30".to_string()),
    ];
    let mut s = TableServer::new(5);
    // 2026-11-27 01:40:33 UTC.
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_743_633);
    let first = read_at(
        &settings,
        &request("devices", WHOLE, None, None, 2),
        &mut s,
        now,
    )
    .unwrap();
    assert_eq!(first.window_start.as_deref(), Some("2026-10-28T00:00:00Z"));
    assert!(s.requests[0].contains("sys_updated_on%3E%3D2026-10-28%2000%3A00%3A00"));
    // A later page keeps the window even when the clock has moved on.
    let later = now + std::time::Duration::from_secs(3 * 86_400);
    let next = read_at(
        &settings,
        &request("devices", WHOLE, first.next_cursor, None, 2),
        &mut s,
        later,
    )
    .unwrap();
    assert_eq!(next.window_start, first.window_start);
    assert!(s.requests[1].contains("2026-10-28%2000%3A00%3A00"));
    // Other streams have no retention window.
    let adapters = read_at(
        &settings,
        &request("network_adapters", WHOLE, None, None, 2),
        &mut s,
        now,
    )
    .unwrap();
    assert_eq!(adapters.window_start, None);
}
