//! `connector-host`: the reference host for `exposure:connector` components.
//!
//! It loads a connector component (by default the bundled ServiceNow CMDB
//! connector), holds the credentials and attaches them to the component's
//! outgoing requests, confines the component to one origin and to memory,
//! CPU and time limits, drives reads page by page with retries, and commits
//! records and cursors to SQLite atomically.
//!
//! Module map:
//! - [`cli`]: the command line (`info`, `check`, `sync`, `export`, `conformance`, `demo`).
//! - [`conformance`]: judging any connector component against the contract.
//! - [`config`], [`origin`], [`secrets`], [`credentials`], [`oauth`]: configuration,
//!   secrets and the credentials the host attaches (Basic, OAuth 2.0, API key).
//! - [`runtime`]: wasmtime engine, compiled components, instances and limits.
//! - [`component_cache`]: the on-disk cache of compiled components, used only when private.
//! - [`egress`]: the outbound HTTP policy every guest request passes through.
//! - [`sender`]: DNS with an address check, proxy, TLS with extra CAs, time-outs.
//! - [`pool`]: keep-alive connections reused between requests.
//! - [`sync`]: the sync engine (partitions, retries, checkpoints).
//! - [`pacing`]: staying inside rate limits (server headers, budget, shared cool-downs).
//! - [`stop`]: the stop signal every wait of a run awaits.
//! - [`store`]: the SQLite database.
//! - [`export`]: JSON-lines export, with nested records.
//! - [`demo`]: the self-contained demo against the bundled emulator.

pub mod cli;
pub mod component_cache;
pub mod config;
pub mod conformance;
pub mod credentials;
pub mod demo;
pub mod egress;
pub mod export;
pub mod oauth;
pub mod origin;
pub mod pacing;
pub mod pool;
pub mod progress;
pub mod runtime;
pub mod secrets;
pub mod sender;
pub mod stop;
pub mod store;
pub mod sync;
