//! The guide's example connector, broken in one way per `violation` setting,
//! so that each conformance check is seen failing by name:
//!
//! | `violation` | breaks | check |
//! |---|---|---|
//! | `none` | nothing (the control: every check passes) | — |
//! | `missing-settings-internal` | a missing `url` is `internal`, not `invalid-settings` | `missing-settings` |
//! | `unauthenticated-as-bad-response` | a 401 is `bad-response` | `wrong-credentials` |
//! | `check-order` | `check` reports no stream | `check-report` |
//! | `invalid-record` | `name` is a number | `records` |
//! | `oversized-page` | pages twice the size asked for | `paging` |
//! | `overlapping-partitions` | every partition reads everything | `paging` |
//! | `endless` | the last page still has a cursor (the same one) | `paging` |
//! | `ignores-cursor` | every read starts from the beginning | `resume` |
//! | `nondeterministic` | names change between reads | `repeatable` |
//! | `ignores-watermark` | incremental reads return everything | `incremental` |
//! | `traps-on-429` | panics on a rate limit | `error-mapping` |
//! | `forbidden-header` | tries to set `authorization` | `egress` |
//! | `other-host` | also calls another port | `egress` |
//!
//! Built with the `bad-info` feature, its `info` names a key field its
//! schema lacks (check `info`). Besides, it declares incremental reads, done
//! by filtering on `updatedAt` with a fixed watermark after every test
//! device's change.

#![cfg(target_arch = "wasm32")]

use example_inventory_connector::Inventory;
use exposure_connector_sdk::prelude::*;
use exposure_connector_sdk::settings;

struct Broken;

/// After every test device's `updatedAt`.
const WATERMARK: &str = "2026-12-01T00:00:00Z";

fn violation(settings: &[(String, String)]) -> &str {
    settings::get(settings, "violation").unwrap_or("none")
}

/// Settings for the example (which knows only `url`).
fn example_settings(settings: &[(String, String)]) -> Vec<(String, String)> {
    settings
        .iter()
        .filter(|(n, _)| n != "violation")
        .cloned()
        .collect()
}

impl Connector for Broken {
    fn info() -> ConnectorInfo {
        let mut info = Inventory::info();
        info.name = "broken".into();
        info.settings
            .push(setting("violation", "The rule to break.", Some("none")));
        info.streams[0].supports_incremental = true;
        if cfg!(feature = "bad-info") {
            info.streams[0].key_field = "uuid".into();
        }
        info
    }

    fn check(
        settings: &[(String, String)],
        http: &mut dyn Http,
    ) -> Result<CheckReport, ConnectorError> {
        let v = violation(settings);
        if v == "missing-settings-internal" && settings::get(settings, "url").is_none() {
            return Err(ConnectorError::Internal("no url".into()));
        }
        match Inventory::check(&example_settings(settings), http) {
            Err(ConnectorError::Unauthenticated(m)) if v == "unauthenticated-as-bad-response" => {
                Err(ConnectorError::BadResponse(m))
            }
            Ok(_) if v == "check-order" => Ok(CheckReport { streams: vec![] }),
            other => other,
        }
    }

    fn read(
        settings: &[(String, String)],
        request: &ReadRequest,
        http: &mut dyn Http,
    ) -> Result<Page, ConnectorError> {
        let v = violation(settings);
        if v == "missing-settings-internal" && settings::get(settings, "url").is_none() {
            return Err(ConnectorError::Internal("no url".into()));
        }
        misbehave_on_the_network(v, settings, http);
        let mut asked = request.clone();
        match v {
            "oversized-page" => asked.page_size = request.page_size * 2,
            "overlapping-partitions" => asked.partition = Partition { index: 0, count: 1 },
            "ignores-cursor" => asked.cursor = None,
            _ => {}
        }
        let mut page = match Inventory::read(&example_settings(settings), &asked, http) {
            Err(ConnectorError::RateLimited(_)) if v == "traps-on-429" => panic!("rate limited"),
            Err(ConnectorError::Unauthenticated(m)) if v == "unauthenticated-as-bad-response" => {
                return Err(ConnectorError::BadResponse(m))
            }
            other => other?,
        };
        if v == "oversized-page" {
            // Keep the doubled page, and a cursor only where the example had one.
            page.next_cursor = page
                .next_cursor
                .filter(|_| page.records.len() as u32 == asked.page_size);
        }
        if v == "endless" && page.next_cursor.is_none() {
            page.next_cursor = Some(
                request
                    .cursor
                    .clone()
                    .unwrap_or_else(|| "{\"after\":0}".into()),
            );
        }
        page.records = page.records.into_iter().map(|r| mutate(v, r)).collect();
        if let Some(watermark) = request
            .watermark
            .as_deref()
            .filter(|_| v != "ignores-watermark")
        {
            page.records.retain(|r| updated_at(r).as_str() >= watermark);
        }
        page.watermark = Some(WATERMARK.into());
        Ok(page)
    }
}

/// What `forbidden-header` and `other-host` try before each read.
fn misbehave_on_the_network(v: &str, settings: &[(String, String)], http: &mut dyn Http) {
    match v {
        "forbidden-header" => {
            let fields = wasip2::http::types::Fields::new();
            let _ = fields.set("authorization", &[b"Basic ZXZpbDpldmls".to_vec()]);
        }
        "other-host" => {
            let url = settings::get(settings, "url").unwrap_or_default();
            let other = url
                .rsplit_once(':')
                .map_or("127.0.0.1:9".to_string(), |(host, _)| format!("{host}:9"));
            if let Ok(endpoint) = Endpoint::parse("url", &other) {
                let _ = http.send(&Request::get(&endpoint, "/elsewhere"));
            }
        }
        _ => {}
    }
}

/// A record changed per `invalid-record` and `nondeterministic`.
fn mutate(v: &str, record: String) -> String {
    let mut value: serde_json::Value = match serde_json::from_str(&record) {
        Ok(value) => value,
        Err(_) => return record,
    };
    match v {
        "invalid-record" => value["name"] = 42.into(),
        "nondeterministic" => {
            let salt = wasip2::random::random::get_random_u64();
            value["name"] = format!("{}-{salt:x}", value["name"].as_str().unwrap_or("")).into();
        }
        _ => return record,
    }
    value.to_string()
}

fn updated_at(record: &str) -> String {
    serde_json::from_str::<serde_json::Value>(record)
        .ok()
        .and_then(|v| v["updatedAt"].as_str().map(str::to_string))
        .unwrap_or_default()
}

export_connector!(Broken);
