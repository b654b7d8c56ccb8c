//! `connector-engine`: the sync engine for `exposure:connector` components.
//!
//! It reads every stream of a connection through sandboxed instances
//! ([`connector_sandbox`]), partition by partition and page by page; waits
//! for rate budgets and retries between calls, never inside them; and
//! commits each page's records with its cursor atomically, so an interrupted
//! sync resumes after its last committed page and nothing is lost or doubled.
//!
//! Module map:
//! - [`sync`]: the engine (streams, partitions, retries, checkpoints, the run report).
//! - [`store`]: the database, SQLite or PostgreSQL (records, cursors, runs,
//!   health; on PostgreSQL the leases and runs workers share).
//! - [`worker`]: workers sharing the syncs of a deployment through PostgreSQL.
//! - [`export`]: JSON-lines export, with nested records.
//! - [`priority`]: store calls on threads of their own, ahead of the
//!   async runtime's.
//! - [`progress`]: progress bars on a terminal, log lines otherwise.

pub mod export;
pub mod priority;
pub mod progress;
pub mod store;
pub mod sync;
pub mod worker;
