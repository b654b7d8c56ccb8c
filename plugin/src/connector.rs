//! The connector's three operations (`info`, `check`, `read`) as plain Rust
//! over a [`Transport`].

use crate::contract::{
    AuthMethod, ConnectorInfo, OAuth2Grant, Page, PageCounters, ReadRequest, StreamCheck,
};
use crate::cursor::{check_key_for_query, partition_bounds, Cursor};
use crate::error::ConnectorError;
use crate::query::TableQuery;
use crate::record::{is_servicenow_datetime, map_row, RecordError};
use crate::response::{parse_rows, status_error, transport_error};
use crate::rows::{Cell, Envelope};
use crate::settings::{setting_infos, Settings};
use crate::streams::StreamSpec;
use crate::transport::{HttpRequest, HttpResponse, Transport};

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
            AuthMethod::OAuth2 {
                token_path: "/oauth_token.do".into(),
                grants: vec![
                    OAuth2Grant::ClientCredentials,
                    OAuth2Grant::Password,
                    OAuth2Grant::RefreshToken,
                ],
            },
            AuthMethod::ApiKey {
                header_name: "x-sn-apikey".into(),
            },
        ],
        streams: StreamSpec::all(&defaults).iter().map(StreamSpec::info).collect(),
    }
}

fn send(
    transport: &mut dyn Transport,
    settings: &Settings,
    query: &TableQuery<'_>,
) -> Result<HttpResponse, ConnectorError> {
    let request = HttpRequest {
        scheme: settings.instance.scheme,
        authority: settings.instance.authority.clone(),
        path_and_query: query.path_and_query(),
    };
    let resp = transport
        .get(&request)
        .map_err(|e| transport_error(&request, e))?;
    if resp.status != 200 {
        return Err(status_error(&resp, query.table));
    }
    Ok(resp)
}

/// Probes every stream with a one-row read and reports readability and missing columns.
pub fn check(
    settings: &[(String, String)],
    transport: &mut dyn Transport,
) -> Result<Vec<StreamCheck>, ConnectorError> {
    let settings = Settings::parse(settings)?;
    let mut report = Vec::new();
    for spec in StreamSpec::all(&settings) {
        let query = TableQuery {
            table: &spec.table,
            fields: spec.sysparm_fields(),
            limit: 1,
            ..Default::default()
        };
        let outcome = send(transport, &settings, &query).and_then(|resp| {
            let env = parse_rows(&resp, &spec.table)?;
            Ok(missing_columns(&spec, &env))
        });
        report.push(match outcome {
            Ok(Some(missing)) => StreamCheck {
                stream_name: spec.name.into(),
                readable: true,
                message: (!missing.is_empty()).then(|| format!(
                    "These mapped columns are missing from `{}` or not readable by the user, so their fields will be absent: {}. Check the column mapping settings.",
                    spec.table, missing.join(", ")
                )),
                missing_columns: missing,
            },
            Ok(None) => StreamCheck {
                stream_name: spec.name.into(),
                readable: true,
                missing_columns: vec![],
                message: Some(format!(
                    "`{}` returned no readable rows, so the column mapping could not be verified.",
                    spec.table
                )),
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

/// Columns of the stream's mapping absent from the first row; `None` without rows.
fn missing_columns(spec: &StreamSpec, env: &Envelope<'_>) -> Option<Vec<String>> {
    let row = env.result.as_ref()?.first()?;
    let mut missing: Vec<String> = Vec::new();
    for f in &spec.fields {
        if row.get(&f.column).is_none() && !missing.contains(&f.column) {
            missing.push(f.column.clone());
        }
    }
    Some(missing)
}

/// Reads one page of one stream partition.
pub fn read(
    settings: &[(String, String)],
    request: &ReadRequest,
    transport: &mut dyn Transport,
) -> Result<Page, ConnectorError> {
    let settings = Settings::parse(settings)?;
    let spec = StreamSpec::find(&settings, &request.stream_name).ok_or_else(|| {
        ConnectorError::InvalidSettings(format!(
            "This connector has no stream `{}`; its streams are devices, network_adapters and business_applications.",
            request.stream_name
        ))
    })?;
    let (lower, upper) = partition_bounds(request.partition)?;
    let mut cursor = match &request.cursor {
        Some(text) => Cursor::parse(text)?,
        None => Cursor::start(),
    };
    let limit = request.page_size.clamp(1, MAX_PAGE_SIZE);

    let mut conditions = Vec::with_capacity(3);
    match (&cursor.after, &lower) {
        (Some(after), _) => conditions.push(format!("sys_id>{after}")),
        (None, Some(lower)) => conditions.push(format!("sys_id>={lower}")),
        (None, None) => {}
    }
    if let Some(upper) = &upper {
        conditions.push(format!("sys_id<{upper}"));
    }
    if let Some(watermark) = &request.watermark {
        if !is_servicenow_datetime(watermark) {
            return Err(ConnectorError::InvalidSettings(format!(
                "The stored watermark `{watermark}` is not a ServiceNow date-time (YYYY-MM-DD HH:MM:SS); run a full sync to replace it."
            )));
        }
        conditions.push(format!("sys_updated_on>={watermark}"));
    }
    let query = TableQuery {
        table: &spec.table,
        conditions,
        order_by: Some("sys_id"),
        fields: spec.sysparm_fields(),
        limit,
        offset: cursor.skip,
        count: true,
    };
    let resp = send(transport, &settings, &query)?;
    if cursor.watermark.is_none() {
        cursor.watermark = server_watermark(&resp, settings.watermark_lag_seconds);
    }
    let total = resp
        .header("x-total-count")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let env = parse_rows(&resp, &spec.table)?;
    let rows = env.result.unwrap_or_default();

    let mut records = Vec::with_capacity(rows.len());
    let mut last_key: Option<&str> = None;
    for row in &rows {
        let record = map_row(&spec, row).map_err(|RecordError::MissingKey| {
            ConnectorError::BadResponse(format!(
                "ServiceNow returned a `{}` row without a sys_id; the response cannot be used.",
                spec.table
            ))
        })?;
        let key = row.get("sys_id").and_then(Cell::text).unwrap_or_default();
        let previous = last_key.or(cursor.after.as_deref());
        if previous.is_some_and(|p| key <= p) {
            return Err(ConnectorError::BadResponse(format!(
                "ServiceNow returned `{}` rows out of sys_id order (`{key}` after `{}`); the server did not honour ORDERBYsys_id.",
                spec.table,
                previous.unwrap_or_default()
            )));
        }
        last_key = Some(key);
        records.push(record);
    }

    let window_end = cursor.skip + u64::from(limit);
    let more = match total {
        Some(total) => window_end < total,
        // Without a count, a non-empty page may have more behind it; an empty
        // one is taken as the end.
        None => !rows.is_empty(),
    };
    let next_cursor = if !more {
        None
    } else if let Some(last) = last_key {
        check_key_for_query(last)?;
        Some(Cursor {
            after: Some(last.to_string()),
            skip: 0,
            ..cursor.clone()
        })
    } else {
        Some(Cursor {
            skip: window_end,
            ..cursor.clone()
        })
    };
    Ok(Page {
        counters: PageCounters {
            rows_requested: limit,
            rows_returned: rows.len() as u32,
            server_total: total,
            requests: 1,
        },
        records,
        next_cursor: next_cursor.map(|c| c.to_json()),
        watermark: cursor.watermark,
    })
}

/// The server's clock (its `Date` header) minus `lag_seconds`, as a ServiceNow
/// date-time. `None` when the server sent no usable `Date`.
fn server_watermark(resp: &HttpResponse, lag_seconds: u32) -> Option<String> {
    let date = httpdate::parse_http_date(resp.header("date")?).ok()?;
    let at = date.checked_sub(std::time::Duration::from_secs(u64::from(lag_seconds)))?;
    let at = time::OffsetDateTime::from(at);
    at.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]"
    ))
    .ok()
}
