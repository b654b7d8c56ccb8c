//! ServiceNow CMDB connector for the `exposure:connector` contract.
//!
//! Built for `wasm32-wasip2` this crate is a WebAssembly component that
//! exports `exposure:connector/source` and speaks the ServiceNow Table API
//! through `wasi:http`, both by way of the guest SDK
//! (`exposure-connector-sdk`). Everything here is plain Rust over the SDK's
//! `Http` trait, so it is unit-tested and benchmarked natively.
//!
//! Module map:
//! - [`connector`]: `info`, `check`, `read`: the operations the WIT exports.
//! - [`settings`]: settings, defaults and validation.
//! - [`streams`]: streams, record fields and their source columns.
//! - [`query`]: Table API request paths.
//! - [`cursor`]: keyset cursor and partition bounds.
//! - [`rows`] and [`record`]: parsing rows and mapping them to records;
//!   [`columns`] finds a stream's columns in a page's rows, and
//!   [`json_object`] writes a record's JSON.
//! - [`response`]: HTTP statuses and bodies to operator-ready errors.

pub mod columns;
pub mod connector;
pub mod cursor;
pub mod flat_rows;
pub mod json_object;
pub mod probe;
pub mod query;
pub mod record;
pub mod response;
pub mod rows;
pub mod settings;
pub mod streams;

use exposure_connector_sdk::prelude::*;

/// The component: the contract's three functions, exported by the SDK.
pub struct ServiceNow;

impl Connector for ServiceNow {
    fn info() -> ConnectorInfo {
        connector::info()
    }

    fn check(
        settings: &[(String, String)],
        http: &mut dyn Http,
    ) -> Result<CheckReport, ConnectorError> {
        connector::check(settings, http).map(|streams| CheckReport { streams })
    }

    fn read(
        settings: &[(String, String)],
        request: &ReadRequest,
        http: &mut dyn Http,
    ) -> Result<Page, ConnectorError> {
        connector::read(settings, request, http)
    }
}

export_connector!(ServiceNow);
