//! `connector-host`: the reference host for `exposure:connector` components.
//!
//! The command line on top of three crates, one per capability:
//! [`connector_sandbox`] runs a component confined (limits, egress policy,
//! credentials it never sees), [`connector_engine`] syncs its streams into
//! SQLite and exports them, and [`connector_conformance`] judges any
//! component against the contract. This crate only turns a configuration
//! file into their inputs and their results into output and exit codes.
//!
//! Module map:
//! - [`cli`]: the command line and [`cli::main`], the whole process.
//! - [`commands`]: one module per command (`info`, `check`, `sync`, `run`, …).
//! - [`connection`]: from a configuration to a loaded component, its origin,
//!   sender, credential and limits.
//! - [`failure`]: exit statuses (2 configuration, 75 temporary, 1 other).
//! - [`bundled`]: the ServiceNow component shipped inside the binary.
//! - `demo` (feature `demo`, on by default): the self-contained demo against
//!   the bundled emulator; without the feature the binary does not link it.

pub mod bundled;
pub mod cli;
pub mod commands;
pub mod connection;
pub mod database;
#[cfg(feature = "demo")]
pub mod demo;
pub mod failure;
