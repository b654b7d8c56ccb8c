//! ServiceNow CMDB connector for the `exposure:connector` contract.
//!
//! Built for `wasm32-wasip2` this crate is a WebAssembly component that
//! exports `exposure:connector/source` and speaks the ServiceNow Table API
//! through `wasi:http` (see `component.rs`). Everything else is plain Rust
//! behind the [`transport::Transport`] trait, so it is unit-tested and
//! benchmarked natively.
//!
//! Module map:
//! - [`connector`]: `info`, `check`, `read`: the operations the WIT exports.
//! - [`settings`]: settings, defaults and validation.
//! - [`streams`]: streams, record fields and their source columns.
//! - [`query`]: Table API request paths.
//! - [`cursor`]: keyset cursor and partition bounds.
//! - [`rows`] and [`record`]: parsing rows and mapping them to records.
//! - [`response`]: HTTP statuses and bodies to operator-ready errors.
//! - [`transport`] and [`contract`], [`error`]: the types the rest stands on.

pub mod connector;
pub mod contract;
pub mod cursor;
pub mod error;
pub mod query;
pub mod record;
pub mod response;
pub mod rows;
pub mod settings;
pub mod streams;
pub mod transport;

#[cfg(target_arch = "wasm32")]
mod component;
