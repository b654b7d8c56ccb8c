//! The guide's example connector: devices from a small JSON inventory API.
//!
//! The source answers `GET /api/devices?after=ID&limit=N` with
//! `{"devices": [{"id": 1, "name": "…", "os": "…", "updated": "…"}, …]}`,
//! in `id` order, only ids above `after`, and wants
//! `Authorization: Token <key>`. That is all a connector has to know; the
//! host owns the key, the network, retries and storage.

use exposure_connector_sdk::prelude::*;
use exposure_connector_sdk::schema::{FieldType, RecordSchema};
use exposure_connector_sdk::{cursor, error, settings};
use serde::{Deserialize, Serialize};

/// The connector.
pub struct Inventory;

/// The endpoint setting.
const URL: &str = "url";
/// The one stream.
const DEVICES: &str = "devices";
/// Most devices the API returns per request.
const MAX_LIMIT: u32 = 500;

/// Where a read is: the last id returned.
#[derive(Serialize, Deserialize)]
struct Position {
    after: u64,
}

/// One device as the API sends it.
#[derive(Deserialize, Serialize)]
struct Device {
    id: u64,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    os: Option<String>,
    #[serde(rename(serialize = "updatedAt"))]
    updated: String,
}

/// A page of the API.
#[derive(Deserialize)]
struct DevicesPage {
    devices: Vec<Device>,
}

impl Connector for Inventory {
    fn info() -> ConnectorInfo {
        let schema = RecordSchema::new(DEVICES, "Devices of the inventory.")
            .field("id", FieldType::Integer, "The device's id (the key).")
            .field("name", FieldType::String, "Its name.")
            .field("os", FieldType::String, "Its operating system, when known.")
            .field(
                "updatedAt",
                FieldType::DateTime,
                "When it last changed (RFC 3339).",
            )
            .required("id")
            .required("name")
            .required("updatedAt");
        ConnectorInfo {
            name: "example-inventory".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Reads devices from the example inventory API.".into(),
            settings: vec![endpoint_setting(
                URL,
                "The inventory server, e.g. `inventory.example.com`.",
            )],
            auth_methods: vec![AuthMethod::ApiKey(ApiKeyMethod {
                header_name: "authorization".into(),
                value_prefix: Some("Token ".into()),
                key_prefix: None,
            })],
            streams: vec![StreamInfo {
                name: DEVICES.into(),
                description: "Every device, in id order.".into(),
                key_field: "id".into(),
                json_schema: schema.to_json(),
                supports_incremental: false,
                references: vec![],
                updated_field: Some("updatedAt".into()),
            }],
        }
    }

    fn check(
        settings: &[(String, String)],
        http: &mut dyn Http,
    ) -> Result<CheckReport, ConnectorError> {
        let endpoint = Endpoint::parse(URL, settings::required(settings, URL)?)?;
        fetch(http, &endpoint, 0, 1)?;
        Ok(CheckReport {
            streams: vec![StreamCheck {
                stream_name: DEVICES.into(),
                readable: true,
                missing_columns: vec![],
                message: None,
            }],
        })
    }

    fn read(
        settings: &[(String, String)],
        request: &ReadRequest,
        http: &mut dyn Http,
    ) -> Result<Page, ConnectorError> {
        let endpoint = Endpoint::parse(URL, settings::required(settings, URL)?)?;
        if request.stream_name != DEVICES {
            return Err(ConnectorError::InvalidSettings(format!(
                "There is no stream `{}`; the stream is `devices`.",
                request.stream_name
            )));
        }
        // The API cannot split a read: partition 0 reads everything, the others nothing.
        if request.partition.index > 0 {
            return Ok(Page::default());
        }
        let after = match &request.cursor {
            Some(text) => cursor::decode::<Position>(text)?.after,
            None => 0,
        };
        let limit = request.page_size.clamp(1, MAX_LIMIT);
        let devices = fetch(http, &endpoint, after, limit)?;
        let last = devices.last().map(|d| d.id);
        let records = devices
            .iter()
            .map(|d| serde_json::to_string(d).map_err(|e| ConnectorError::Internal(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            counters: PageCounters {
                rows_requested: limit,
                rows_returned: records.len() as u32,
                server_total: None,
                requests: 1,
            },
            records,
            // A short page is the last one.
            next_cursor: last
                .filter(|_| devices.len() as u32 == limit)
                .map(|after| cursor::encode(&Position { after })),
            ..Page::default()
        })
    }
}

/// One request to the API: devices after `after`, at most `limit`.
fn fetch(
    http: &mut dyn Http,
    endpoint: &Endpoint,
    after: u64,
    limit: u32,
) -> Result<Vec<Device>, ConnectorError> {
    let request = Request::get(endpoint, "/api/devices")
        .query("after", &after.to_string())
        .query("limit", &limit.to_string());
    let response = http
        .send(&request)
        .map_err(|e| e.to_connector_error(&request, "inventory server"))?;
    if response.status != 200 {
        return Err(error::from_status(
            &response,
            "The inventory server",
            "devices",
        ));
    }
    let page: DevicesPage = serde_json::from_slice(&response.body).map_err(|e| {
        ConnectorError::BadResponse(format!(
            "The inventory server's answer is not the expected JSON ({e}; {}). Is `url` the inventory server?",
            response.snippet()
        ))
    })?;
    Ok(page.devices)
}

#[cfg(feature = "component")]
export_connector!(Inventory);

#[cfg(test)]
mod tests {
    use super::*;
    use exposure_connector_sdk::testing::FakeHttp;

    fn settings() -> Vec<(String, String)> {
        vec![(URL.into(), "inventory.example.com".into())]
    }

    fn request(cursor: Option<String>) -> ReadRequest {
        ReadRequest {
            stream_name: DEVICES.into(),
            partition: Partition { index: 0, count: 1 },
            cursor,
            watermark: None,
            deletions_since: None,
            page_size: 2,
        }
    }

    /// Three devices, served two at a time.
    fn server() -> FakeHttp {
        FakeHttp::new(|r: &Request| {
            let after = if r.path_and_query.contains("after=2") {
                2
            } else {
                0
            };
            let body = if after == 0 {
                r#"{"devices":[{"id":1,"name":"a","os":"linux","updated":"2026-01-01T00:00:00Z"},{"id":2,"name":"b","updated":"2026-01-02T00:00:00Z"}]}"#
            } else {
                r#"{"devices":[{"id":3,"name":"c","updated":"2026-01-03T00:00:00Z"}]}"#
            };
            Ok(FakeHttp::json(200, body))
        })
    }

    #[test]
    fn pages_follow_the_cursor_to_the_end() {
        let mut http = server();
        let first = Inventory::read(&settings(), &request(None), &mut http).unwrap();
        assert_eq!(
            first.records[0],
            r#"{"id":1,"name":"a","os":"linux","updatedAt":"2026-01-01T00:00:00Z"}"#
        );
        let second = Inventory::read(&settings(), &request(first.next_cursor), &mut http).unwrap();
        assert_eq!(second.records.len(), 1);
        assert_eq!(second.next_cursor, None);
        assert_eq!(
            http.requests()[1].path_and_query,
            "/api/devices?after=2&limit=2"
        );
    }

    #[test]
    fn refusals_and_foreign_answers_are_typed() {
        let mut http = FakeHttp::new(|_: &Request| Ok(FakeHttp::json(401, "{}")));
        assert!(matches!(
            Inventory::read(&settings(), &request(None), &mut http),
            Err(ConnectorError::Unauthenticated(_))
        ));
        let mut http = FakeHttp::new(|_: &Request| Ok(FakeHttp::json(200, "<html>login</html>")));
        assert!(matches!(
            Inventory::check(&settings(), &mut http),
            Err(ConnectorError::BadResponse(_))
        ));
        assert!(matches!(
            Inventory::read(&[], &request(None), &mut server()),
            Err(ConnectorError::InvalidSettings(_))
        ));
    }
}
