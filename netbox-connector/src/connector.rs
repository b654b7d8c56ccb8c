//! The connector's three operations (`info`, `check`, `read`) as plain Rust
//! over the SDK's [`Http`] client.

use crate::cursor::{check_partition, id_range, own_block_from, Cursor, Phase};
use crate::record::{id_of, to_utc_seconds};
use crate::response::{list_page, status_error, ListPage};
use crate::settings::{setting_infos, Settings};
use crate::streams::{StreamSpec, STREAMS};
use crate::NetBox;
use exposure_connector_sdk::connector::Connector;
use exposure_connector_sdk::http::{Http, Request, Response};
use exposure_connector_sdk::types::{
    ApiKeyMethod, AuthMethod, CheckReport, ConnectorError, ConnectorInfo, Page, PageCounters,
    ReadRequest, StreamCheck, Tombstone,
};

/// Connector name reported by `info`.
pub const NAME: &str = "netbox";
/// NetBox's default `MAX_PAGE_SIZE`: the most objects one request returns.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Where NetBox (4.1 and later) keeps the change log.
const CHANGE_LOG: &str = "core/object-changes/";
/// NetBox's permission to view the change log.
const CHANGE_LOG_PERMISSION: &str = "core.view_objectchange";

impl Connector for NetBox {
    fn info() -> ConnectorInfo {
        info()
    }

    fn check(
        settings: &[(String, String)],
        http: &mut dyn Http,
    ) -> Result<CheckReport, ConnectorError> {
        check(settings, http).map(|streams| CheckReport { streams })
    }

    fn read(
        settings: &[(String, String)],
        request: &ReadRequest,
        http: &mut dyn Http,
    ) -> Result<Page, ConnectorError> {
        read(settings, request, http)
    }
}

/// Describes the connector.
pub fn info() -> ConnectorInfo {
    let header = |prefix: &str, key_prefix: Option<&str>| {
        AuthMethod::ApiKey(ApiKeyMethod {
            header_name: "authorization".into(),
            value_prefix: Some(prefix.into()),
            key_prefix: key_prefix.map(str::to_string),
        })
    };
    ConnectorInfo {
        name: NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Reads DCIM devices, their interfaces and the IP addresses assigned to them from NetBox's REST API, read-only, with deletions from NetBox's change log. A read-only API token whose user may view devices, interfaces, IP addresses (and object changes, for deletions) is enough.".into(),
        settings: setting_infos(),
        // NetBox 4.5's v2 tokens (`nbt_<key>.<secret>`) go as `Bearer`; v1
        // tokens (40 characters) as `Token`.
        auth_methods: vec![header("Bearer ", Some("nbt_")), header("Token ", None)],
        streams: STREAMS.iter().map(StreamSpec::info).collect(),
    }
}

/// Sends a GET; a non-200 answer becomes the error for `what`.
fn get(
    http: &mut dyn Http,
    request: &Request,
    what: &str,
    permission: &str,
) -> Result<Response, ConnectorError> {
    let resp = http
        .send(request)
        .map_err(|e| e.to_connector_error(request, "NetBox server"))?;
    if resp.status != 200 {
        return Err(status_error(&resp, what, permission));
    }
    Ok(resp)
}

/// Probes the API root and every stream: whether it is readable and how
/// many objects NetBox counts; whether deletions can be seen.
pub fn check(
    settings: &[(String, String)],
    http: &mut dyn Http,
) -> Result<Vec<StreamCheck>, ConnectorError> {
    let settings = Settings::parse(settings)?;
    let version = api_version(http, &settings)?;
    let change_log = if settings.change_log {
        change_log_note(http, &settings)?
    } else {
        " Deletions are not read (`change_log = \"off\"`).".to_string()
    };
    let mut report = Vec::new();
    for spec in &STREAMS {
        let request = Request::get(&settings.url, &settings.api_path(spec.endpoint))
            .query("brief", "1")
            .query("limit", "1");
        let probed = get(http, &request, spec.noun, spec.permission)
            .and_then(|resp| list_page(&resp, spec.noun));
        report.push(match probed {
            Ok(page) => StreamCheck {
                stream_name: spec.name.into(),
                readable: true,
                missing_columns: vec![],
                message: Some(format!(
                    "NetBox {version} counts {} {} that this token may read.{change_log}",
                    page.count
                        .map_or("an unknown number of".into(), |c| c.to_string()),
                    spec.noun
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

/// The API version NetBox reports at `/api/` (its `API-Version` header);
/// an answer without it is not NetBox's.
fn api_version(http: &mut dyn Http, settings: &Settings) -> Result<String, ConnectorError> {
    let request = Request::get(&settings.url, &settings.api_path(""));
    let resp = http
        .send(&request)
        .map_err(|e| e.to_connector_error(&request, "NetBox server"))?;
    match resp.header("api-version") {
        // NetBox sends it with every API answer, refusals included.
        Some(version) => Ok(version.trim().to_string()),
        None if resp.status == 429 || resp.status >= 500 => {
            Err(status_error(&resp, "the API root", "any object"))
        }
        None => Err(ConnectorError::NotFound(format!(
            "`{}` is not NetBox's API: it answered HTTP {} without NetBox's `API-Version` header ({}). Check `url` (the NetBox server, without `/api`) and `base_path`; a login page or proxy answering in NetBox's place looks the same.",
            request.url(),
            resp.status,
            resp.snippet()
        ))),
    }
}

/// A sentence on whether deletions can be read from the change log.
fn change_log_note(http: &mut dyn Http, settings: &Settings) -> Result<String, ConnectorError> {
    let request = Request::get(&settings.url, &settings.api_path(CHANGE_LOG))
        .query("brief", "1")
        .query("limit", "1");
    match get(http, &request, "the change log", CHANGE_LOG_PERMISSION) {
        Ok(_) => Ok(" Deletions are read from the change log.".into()),
        Err(e) if e.is_connection_wide() => Err(e),
        Err(e) => Ok(format!(
            " Deletions cannot be read, so deleted objects will be reported as no longer returned: {}",
            e.message()
        )),
    }
}

/// Reads one page of one stream partition.
pub fn read(
    settings: &[(String, String)],
    request: &ReadRequest,
    http: &mut dyn Http,
) -> Result<Page, ConnectorError> {
    let settings = Settings::parse(settings)?;
    let spec = StreamSpec::find(&request.stream_name)?;
    check_partition(request.partition)?;
    let cursor = match &request.cursor {
        Some(text) => Cursor::parse(text)?,
        None => Cursor::start(request.partition),
    };
    exposure_connector_sdk::cursor::check_watermarks(
        request,
        |v| to_utc_seconds(v).is_some(),
        "an RFC 3339 date-time",
    )?;
    let read = PartitionRead {
        settings: &settings,
        spec,
        request,
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
    spec: &'static StreamSpec,
    request: &'a ReadRequest,
    limit: u32,
}

impl PartitionRead<'_> {
    /// The list request for the stream's objects with ids from `from`
    /// (and below `below`), changed since the watermark.
    fn objects(&self, from: u64, below: Option<u64>, limit: u32) -> Request {
        let mut request = Request::get(
            &self.settings.url,
            &self.settings.api_path(self.spec.endpoint),
        )
        .query("ordering", "id")
        .query("limit", &limit.to_string())
        .query("id__gte", &from.to_string());
        if let Some(below) = below {
            request = request.query("id__lt", &below.to_string());
        }
        if let Some(watermark) = &self.request.watermark {
            request = request.query("last_updated__gte", watermark);
        }
        request
    }

    /// Whether partition 0 reads the change log once its rows are done.
    fn reads_deletions(&self) -> bool {
        self.settings.change_log
            && self.request.deletions_since.is_some()
            && self.request.partition.index == 0
    }

    /// The cursor once the rows are done: the deletions, or the end.
    fn after_rows(&self, cursor: &Cursor) -> Option<Cursor> {
        self.reads_deletions().then(|| Cursor {
            phase: Phase::Deletions,
            after: None,
            ..cursor.clone()
        })
    }

    /// A page of the stream's own objects.
    fn rows(&self, mut cursor: Cursor, http: &mut dyn Http) -> Result<Page, ConnectorError> {
        let partition = self.request.partition;
        let (from, below) = id_range(partition, &cursor);
        let request = self.objects(from, below, self.limit);
        let resp = get(http, &request, self.spec.noun, self.spec.permission)?;
        if cursor.watermark.is_none() {
            cursor.watermark = server_watermark(&resp, self.settings.watermark_lag_seconds);
        }
        let page = list_page(&resp, self.spec.noun)?;
        let (records, last) = self.records(&page, from, below, cursor.after)?;
        let returned = page.results.len();
        // An empty page ends the block whatever `count` says, so that a
        // server counting rows it does not return cannot hold a read.
        let block_done = returned == 0 || page.count.is_some_and(|c| returned as u64 >= c);
        let mut requests = 1;
        let next = if !block_done {
            Some(Cursor {
                after: last,
                ..cursor.clone()
            })
        } else if let Some(end) = below {
            requests += 1;
            // Blocks only move forward (ids at the very top of the id
            // space could otherwise pin a partition to one block).
            match self
                .first_id_from(end, http)?
                .map(|id| own_block_from(partition, id))
                .filter(|block| *block > cursor.block)
            {
                Some(block) => Some(Cursor {
                    block,
                    after: None,
                    ..cursor.clone()
                }),
                None => self.after_rows(&cursor),
            }
        } else {
            self.after_rows(&cursor)
        };
        let first_page = self.request.cursor.is_none();
        Ok(Page {
            counters: PageCounters {
                rows_requested: self.limit,
                rows_returned: returned as u32,
                // A lone partition's first count is the stream's; a block's is not the partition's.
                server_total: page.count.filter(|_| first_page && partition.count == 1),
                requests,
            },
            records,
            next_cursor: next.map(|c| c.to_json()),
            watermark: cursor.watermark,
            ..Page::default()
        })
    }

    /// The page's records, checking that NetBox kept to the id order and
    /// range asked for; and the last id.
    fn records(
        &self,
        page: &ListPage,
        from: u64,
        below: Option<u64>,
        after: Option<u64>,
    ) -> Result<(Vec<String>, Option<u64>), ConnectorError> {
        let mut records = Vec::with_capacity(page.results.len());
        let mut last: Option<u64> = None;
        for object in &page.results {
            let id = id_of(object, self.spec.noun)?;
            let previous = last.or(after);
            if id < from || below.is_some_and(|b| id >= b) || previous.is_some_and(|p| id <= p) {
                return Err(ConnectorError::BadResponse(format!(
                    "NetBox returned {} out of the id order or range asked for (id {id} after {last:?}, asked from {from}); it did not honour `ordering=id` and the id filters.",
                    self.spec.noun
                )));
            }
            last = Some(id);
            records.push((self.spec.map)(object)?);
        }
        Ok((records, last))
    }

    /// The first id at or after `from` that the read's filters admit.
    fn first_id_from(&self, from: u64, http: &mut dyn Http) -> Result<Option<u64>, ConnectorError> {
        let request = self.objects(from, None, 1).query("brief", "1");
        let resp = get(http, &request, self.spec.noun, self.spec.permission)?;
        let page = list_page(&resp, self.spec.noun)?;
        page.results
            .first()
            .map(|o| id_of(o, self.spec.noun))
            .transpose()
    }

    /// A page of the change log: deletions of this stream's objects since
    /// the last complete read. A token that may not read the change log
    /// gets a warning and no deletions.
    fn deletions(&self, cursor: Cursor, http: &mut dyn Http) -> Result<Page, ConnectorError> {
        let mut request = Request::get(&self.settings.url, &self.settings.api_path(CHANGE_LOG))
            .query("action", "delete")
            .query("changed_object_type", self.spec.content_type)
            .query("ordering", "id")
            .query("limit", &self.limit.to_string())
            .query("id__gt", &cursor.after.unwrap_or(0).to_string());
        if let Some(since) = &self.request.deletions_since {
            request = request.query("time_after", since);
        }
        let finished = |deleted: Vec<Tombstone>, next: Option<Cursor>| Page {
            deleted,
            next_cursor: next.map(|c| c.to_json()),
            watermark: cursor.watermark.clone(),
            counters: PageCounters {
                requests: 1,
                ..Default::default()
            },
            ..Page::default()
        };
        let resp = match get(http, &request, "the change log", CHANGE_LOG_PERMISSION) {
            Ok(resp) => resp,
            Err(ConnectorError::Forbidden(_) | ConnectorError::NotFound(_)) => {
                exposure_connector_sdk::warn!(
                    "NetBox's change log is not readable with this token, so {} deleted in NetBox are reported as no longer returned rather than deleted. Give the token's user the view permission on Object Changes ({CHANGE_LOG_PERMISSION}) to tell them apart, or set change_log = \"off\" to silence this.",
                    self.spec.noun
                );
                return Ok(finished(Vec::new(), None));
            }
            Err(e) => return Err(e),
        };
        let page = list_page(&resp, "the change log")?;
        let mut deleted = Vec::with_capacity(page.results.len());
        let mut last = cursor.after;
        for change in &page.results {
            let id = id_of(change, "a change")?;
            if last.is_some_and(|l| id <= l) {
                return Err(ConnectorError::BadResponse(
                    "NetBox returned the change log out of id order; it did not honour `ordering=id`.".into(),
                ));
            }
            last = Some(id);
            if let Some(key) = change.get("changed_object_id").and_then(|v| v.as_u64()) {
                deleted.push(Tombstone {
                    key: key.to_string(),
                    deleted_at: change
                        .get("time")
                        .and_then(|t| t.as_str())
                        .and_then(to_utc_seconds),
                });
            }
        }
        let done =
            page.results.is_empty() || page.count.is_some_and(|c| page.results.len() as u64 >= c);
        let next = (!done).then(|| Cursor {
            after: last,
            ..cursor.clone()
        });
        Ok(finished(deleted, next))
    }
}

/// The server's clock (its `Date` header) minus `lag_seconds`, as RFC 3339
/// UTC. `None` when the server sent no usable `Date`.
fn server_watermark(resp: &Response, lag_seconds: u32) -> Option<String> {
    let date = httpdate::parse_http_date(resp.header("date")?).ok()?;
    let at = date.checked_sub(std::time::Duration::from_secs(u64::from(lag_seconds)))?;
    time::OffsetDateTime::from(at)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .ok()
}
