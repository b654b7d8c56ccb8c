//! NetBox connector for the `exposure:connector` contract.
//!
//! Built for `wasm32-wasip2` this crate is a WebAssembly component that
//! exports `exposure:connector/source` and reads NetBox's REST API (DCIM
//! devices and interfaces, IPAM addresses, and the change log for
//! deletions) through `wasi:http`, by way of the guest SDK. Everything
//! here is plain Rust over the SDK's `Http` trait, so it is unit-tested
//! natively.
//!
//! Module map:
//! - [`connector`]: `info`, `check`, `read`: the operations the WIT exports.
//! - [`settings`]: settings, defaults and validation.
//! - [`streams`]: the three streams, their schemas and references.
//! - [`record`]: NetBox objects to records.
//! - [`cursor`]: the keyset cursor and how partitions split the id space.
//! - [`response`]: NetBox's answers to rows or operator-ready errors.

pub mod connector;
pub mod cursor;
pub mod record;
pub mod response;
pub mod settings;
pub mod streams;

use exposure_connector_sdk::prelude::*;

/// The component: the contract's three functions ([`connector`]), exported
/// by the SDK.
pub struct NetBox;

export_connector!(NetBox);
