//! The connector's three operations (`info`, `check`, `read`) as plain Rust
//! over the SDK's [`Http`] client.

use crate::cursor::{check_key_for_query, partition_bounds, Cursor, Phase};
use crate::query::TableQuery;
use crate::record::{is_servicenow_datetime, to_rfc3339, RecordError, RecordWriter};
use crate::response::{parse_rows, status_error};
use crate::rows::{Cell, Row};
use crate::settings::{setting_infos, Settings};
use crate::streams::StreamSpec;
use exposure_connector_sdk::http::{Http, Request, Response};
use exposure_connector_sdk::types::{
    ApiKeyMethod, AuthMethod, ConnectorError, ConnectorInfo, Oauth2Grant, Oauth2Method, Page,
    PageCounters, ReadRequest, StreamCheck, Tombstone,
};

/// Connector name reported by `info`.
pub const NAME: &str = "servicenow-cmdb";
/// Largest page the connector asks for (ServiceNow's documented default limit).
pub const MAX_PAGE_SIZE: u32 = 10_000;

/// Describes the connector. Stream descriptions use the default column mapping.
pub fn info() -> ConnectorInfo {
    let defaults = Settings::parse(&[("instance".into(), "example.service-now.com".into())])
        .expect("default settings are valid");
    ConnectorInfo {
        name: NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Reads devices (cmdb_ci_computer and its subclasses), their network adapters and the business applications they serve from a ServiceNow CMDB through the Table API, read-only. The integration user needs only the cmdb_read role.".into(),
        settings: setting_infos(),
        auth_methods: vec![
            AuthMethod::Basic,
            AuthMethod::Oauth2(Oauth2Method {
                token_path: "/oauth_token.do".into(),
                grants: vec![
                    Oauth2Grant::ClientCredentials,
                    Oauth2Grant::Password,
                    Oauth2Grant::RefreshToken,
                ],
                client_credentials_help: Some(
                    "check that the client-credentials grant is enabled on the instance (system property glide.oauth.inbound.client.credential.grant_type.enabled = true) and that the OAuth application registry names an OAuth Application User with the cmdb_read role".into(),
                ),
            }),
            AuthMethod::ApiKey(ApiKeyMethod {
                header_name: "x-sn-apikey".into(),
                value_prefix: None,
                key_prefix: None,
            }),
        ],
        streams: StreamSpec::all(&defaults).iter().map(StreamSpec::info).collect(),
    }
}

pub(crate) fn send(
    http: &mut dyn Http,
    settings: &Settings,
    query: &TableQuery<'_>,
) -> Result<Response, ConnectorError> {
    let request = Request::get(&settings.instance, &query.path_and_query());
    let resp = http
        .send(&request)
        .map_err(|e| e.to_connector_error(&request, "instance"))?;
    if resp.status != 200 {
        return Err(status_error(&resp, query.table));
    }
    Ok(resp)
}

/// Probes every stream ([`crate::probe`]) and reports readability, what
/// the user can see of each table and the mapped columns it lacks.
pub fn check(
    settings: &[(String, String)],
    http: &mut dyn Http,
) -> Result<Vec<StreamCheck>, ConnectorError> {
    let settings = Settings::parse(settings)?;
    let mut report = Vec::new();
    for spec in StreamSpec::all(&settings) {
        report.push(match crate::probe::probe(http, &settings, &spec) {
            Ok(probe) => StreamCheck {
                stream_name: spec.name.into(),
                readable: true,
                message: Some(crate::probe::describe(&spec, &probe)),
                missing_columns: probe.missing_columns.unwrap_or_default(),
            },
            Err(e) if e.is_connection_wide() => return Err(e),
            Err(e) => StreamCheck {
                stream_name: spec.name.into(),
                readable: false,
                missing_columns: vec![],
                message: Some(e.message().to_string()),
            },
        });
    }
    Ok(report)
}

/// Reads one page of one stream partition.
pub fn read(
    settings: &[(String, String)],
    request: &ReadRequest,
    http: &mut dyn Http,
) -> Result<Page, ConnectorError> {
    read_at(settings, request, http, std::time::SystemTime::now())
}

/// [`read`], with the current time given: it places the start of the
/// `active_within_days` window when a read begins.
pub fn read_at(
    settings: &[(String, String)],
    request: &ReadRequest,
    http: &mut dyn Http,
    now: std::time::SystemTime,
) -> Result<Page, ConnectorError> {
    let settings = Settings::parse(settings)?;
    let spec = StreamSpec::find(&settings, &request.stream_name).ok_or_else(|| {
        ConnectorError::InvalidSettings(format!(
            "This connector has no stream `{}`; its streams are devices, network_adapters and business_applications.",
            request.stream_name
        ))
    })?;
    let mut cursor = match &request.cursor {
        Some(text) => Cursor::parse(text)?,
        None => Cursor::start(),
    };
    exposure_connector_sdk::cursor::check_watermarks(
        request,
        is_servicenow_datetime,
        "a ServiceNow date-time (YYYY-MM-DD HH:MM:SS)",
    )?;
    if request.cursor.is_none() && spec.retention && settings.active_within_days > 0 {
        cursor.window_start = Some(window_start(now, settings.active_within_days));
    }
    let read = PartitionRead {
        settings: &settings,
        spec: &spec,
        request,
        bounds: partition_bounds(request.partition)?,
        limit: request.page_size.clamp(1, MAX_PAGE_SIZE),
    };
    match cursor.phase {
        Phase::Rows => read.rows(cursor, http),
        Phase::Deletions => read.deletions(cursor, http),
    }
}

/// One `read` call: what is fixed for the partition.
struct PartitionRead<'a> {
    settings: &'a Settings,
    spec: &'a StreamSpec,
    request: &'a ReadRequest,
    /// Lower (inclusive) and upper (exclusive) key bounds of the partition.
    bounds: (Option<String>, Option<String>),
    limit: u32,
}

/// A keyset page's rows as the paging logic sees them.
struct Window<'c> {
    /// Rows the server said match, if it said.
    total: Option<u64>,
    /// Rows returned.
    returned: usize,
    /// Key of the last row returned.
    last_key: Option<&'c str>,
}

impl PartitionRead<'_> {
    /// Keyset conditions on `sys_id` for the page after `cursor`, within
    /// the partition.
    fn key_conditions(&self, cursor: &Cursor) -> Vec<String> {
        let (lower, upper) = &self.bounds;
        let mut conditions = Vec::with_capacity(4);
        match (&cursor.after, lower) {
            (Some(after), _) => conditions.push(format!("sys_id>{after}")),
            (None, Some(lower)) => conditions.push(format!("sys_id>={lower}")),
            (None, None) => {}
        }
        if let Some(upper) = upper {
            conditions.push(format!("sys_id<{upper}"));
        }
        conditions
    }

    /// The cursor after a page; `None` when the window was the last.
    ///
    /// Only a counted answer ends a read (a page short of the limit may be
    /// the end or a window thinned by ACLs). Between counts, each window
    /// takes `limit` rows off the expected remainder; when that says the end
    /// is near, the next request counts again.
    fn next(&self, cursor: &Cursor, window: Window<'_>) -> Result<Option<Cursor>, ConnectorError> {
        let limit = u64::from(self.limit);
        let window_end = cursor.skip + limit;
        let (more, remaining) = if !cursor.wants_count(self.limit) {
            (true, cursor.remaining.map(|r| r.saturating_sub(limit)))
        } else {
            match window.total {
                Some(total) => (window_end < total, Some(total.saturating_sub(window_end))),
                // A server that does not count: a non-empty page may have
                // more behind it; an empty one is taken as the end.
                None => (window.returned > 0, None),
            }
        };
        let next = Cursor {
            remaining,
            ..cursor.clone()
        };
        Ok(if !more {
            None
        } else if let Some(last) = window.last_key {
            check_key_for_query(last)?;
            Some(Cursor {
                after: Some(last.to_string()),
                skip: 0,
                ..next
            })
        } else {
            Some(Cursor {
                skip: window_end,
                ..next
            })
        })
    }

    /// Whether this read also reports the deletions audited since the last one.
    ///
    /// Partition 0 does, for the whole stream: the audit since the last read
    /// is small, and one request per stream is enough to learn that the user
    /// may not read it.
    fn audits_deletions(&self) -> bool {
        self.settings.deletion_audit
            && self.request.deletions_since.is_some()
            && self.request.partition.index == 0
    }

    /// A page of the stream's own table.
    fn rows(&self, mut cursor: Cursor, http: &mut dyn Http) -> Result<Page, ConnectorError> {
        let spec = self.spec;
        let mut conditions = self.key_conditions(&cursor);
        if let Some(watermark) = &self.request.watermark {
            conditions.push(format!("sys_updated_on>={watermark}"));
        }
        if let Some(start) = &cursor.window_start {
            conditions.push(format!("sys_updated_on>={start}"));
        }
        let query = TableQuery {
            table: &spec.table,
            conditions,
            order_by: Some("sys_id"),
            fields: spec.sysparm_fields(),
            limit: self.limit,
            offset: cursor.skip,
            count: cursor.wants_count(self.limit),
        };
        let resp = send(http, self.settings, &query)?;
        if cursor.watermark.is_none() {
            cursor.watermark = server_watermark(&resp, self.settings.watermark_lag_seconds);
        }
        let total = total_count(&resp);
        let env = parse_rows(&resp, &spec.table)?;
        let rows = env.result.unwrap_or_default();
        let (records, last_key) = self.records_of(&rows, cursor.after.as_deref())?;
        let window = Window {
            total,
            returned: rows.len(),
            last_key,
        };
        let next = match self.next(&cursor, window)? {
            Some(next) => Some(next),
            None if self.audits_deletions() => Some(Cursor {
                after: None,
                skip: 0,
                phase: Phase::Deletions,
                remaining: None,
                ..cursor.clone()
            }),
            None => None,
        };
        Ok(Page {
            counters: PageCounters {
                rows_requested: self.limit,
                rows_returned: rows.len() as u32,
                server_total: total,
                requests: 1,
            },
            records,
            deleted: Vec::new(),
            window_start: cursor.window_start.as_deref().and_then(to_rfc3339),
            next_cursor: next.map(|c| c.to_json()),
            watermark: cursor.watermark,
        })
    }

    /// The records of `rows`, each checked to come after the one before it
    /// (the first after `after`), and the last row's key.
    fn records_of<'r>(
        &self,
        rows: &'r [Row<'_>],
        after: Option<&'r str>,
    ) -> Result<(Vec<String>, Option<&'r str>), ConnectorError> {
        let table = &self.spec.table;
        let mut records = Vec::with_capacity(rows.len());
        let mut last_key: Option<&str> = None;
        let mut writer = RecordWriter::new(self.spec);
        for row in rows {
            let record = writer.write(row).map_err(|RecordError::MissingKey| {
                ConnectorError::BadResponse(format!(
                    "ServiceNow returned a `{table}` row without a sys_id; the response cannot be used."
                ))
            })?;
            let key = row.get("sys_id").and_then(Cell::text).unwrap_or_default();
            check_order(table, last_key.or(after), key)?;
            last_key = Some(key);
            records.push(record);
        }
        if let Some(warning) = writer.dropped().warning(table) {
            exposure_connector_sdk::warn!("{warning}");
        }
        Ok((records, last_key))
    }

    /// A page of `sys_audit_delete`: this stream's deletions since the last
    /// complete read. A user without read access to the audit gets a warning
    /// and no deletions.
    fn deletions(&self, cursor: Cursor, http: &mut dyn Http) -> Result<Page, ConnectorError> {
        let mut conditions = vec![self.spec.audit_tables.clone()];
        if let Some(since) = &self.request.deletions_since {
            conditions.push(format!("sys_created_on>={since}"));
        }
        if let Some(after) = &cursor.after {
            conditions.push(format!("sys_id>{after}"));
        }
        let query = TableQuery {
            table: AUDIT_TABLE,
            conditions,
            order_by: Some("sys_id"),
            fields: "sys_id,documentkey,sys_created_on".into(),
            limit: self.limit,
            offset: cursor.skip,
            count: cursor.wants_count(self.limit),
        };
        let finished = |deleted: Vec<Tombstone>, next: Option<Cursor>| Page {
            records: Vec::new(),
            deleted,
            window_start: cursor.window_start.as_deref().and_then(to_rfc3339),
            next_cursor: next.map(|c| c.to_json()),
            watermark: cursor.watermark.clone(),
            counters: PageCounters {
                requests: 1,
                ..Default::default()
            },
        };
        let resp = match send(http, self.settings, &query) {
            Ok(resp) => resp,
            Err(ConnectorError::Forbidden(_) | ConnectorError::NotFound(_)) => {
                exposure_connector_sdk::warn!(
                    "`{AUDIT_TABLE}` is not readable by this user, so records that disappear from `{}` are reported as no longer returned rather than deleted in ServiceNow. Grant read access to `{AUDIT_TABLE}` to tell them apart, or set deletion_audit = \"off\" to silence this.",
                    self.spec.table
                );
                return Ok(finished(Vec::new(), None));
            }
            Err(e) => return Err(e),
        };
        let total = total_count(&resp);
        let env = parse_rows(&resp, AUDIT_TABLE)?;
        let rows = env.result.unwrap_or_default();
        let mut deleted = Vec::with_capacity(rows.len());
        let mut last_key: Option<&str> = None;
        for row in &rows {
            let text = |column: &str| row.get(column).and_then(Cell::text);
            let Some(id) = text("sys_id") else {
                return Err(ConnectorError::BadResponse(format!(
                    "ServiceNow returned a `{AUDIT_TABLE}` row without a sys_id; the response cannot be used."
                )));
            };
            check_order(AUDIT_TABLE, last_key.or(cursor.after.as_deref()), id)?;
            last_key = Some(id);
            if let Some(key) = text("documentkey") {
                deleted.push(Tombstone {
                    key: key.to_string(),
                    deleted_at: text("sys_created_on").and_then(to_rfc3339),
                });
            }
        }
        let window = Window {
            total,
            returned: rows.len(),
            last_key,
        };
        let next = self.next(&cursor, window)?;
        Ok(finished(deleted, next))
    }
}

/// The audit table ServiceNow records deletions in.
const AUDIT_TABLE: &str = "sys_audit_delete";

/// `X-Total-Count`, when the server sent a usable one.
pub(crate) fn total_count(resp: &Response) -> Option<u64> {
    resp.header("x-total-count")
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Keyset paging needs rows in strictly increasing key order.
fn check_order(table: &str, previous: Option<&str>, key: &str) -> Result<(), ConnectorError> {
    match previous {
        Some(previous) if key <= previous => Err(ConnectorError::BadResponse(format!(
            "ServiceNow returned `{table}` rows out of sys_id order (`{key}` after `{previous}`); the server did not honour ORDERBYsys_id."
        ))),
        _ => Ok(()),
    }
}

/// Start of the UTC day `days` days before `now`, as a ServiceNow date-time
/// (like ServiceNow's `gs.daysAgoStart`, but always in UTC).
fn window_start(now: std::time::SystemTime, days: u32) -> String {
    let now = time::OffsetDateTime::from(now);
    let day = now.date() - time::Duration::days(i64::from(days));
    format!("{day} 00:00:00")
}

/// The server's clock (its `Date` header) minus `lag_seconds`, as a ServiceNow
/// date-time. `None` when the server sent no usable `Date`.
fn server_watermark(resp: &Response, lag_seconds: u32) -> Option<String> {
    let date = httpdate::parse_http_date(resp.header("date")?).ok()?;
    let at = date.checked_sub(std::time::Duration::from_secs(u64::from(lag_seconds)))?;
    let at = time::OffsetDateTime::from(at);
    at.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]"
    ))
    .ok()
}
