//! `connector-sandbox`: running `exposure:connector` components, confined.
//!
//! A component gets no file system, no sockets and no environment (a
//! language runtime may import the filesystem and sockets interfaces, world
//! `connector-with-runtime`, but no directory is preopened and TCP, UDP and
//! name lookup are refused); its only way out is `wasi:http`, and every request passes the [`egress`] policy:
//! one origin, forbidden headers refused, the host's credential attached
//! (the component never sees it), caps on requests, bodies and time, and the
//! rate budget of [`pacing`]. Memory, CPU per call and wall-clock time per
//! call are limited by [`runtime`].
//!
//! Module map:
//! - [`runtime`]: wasmtime engine, compiled components, instances and limits.
//! - [`component_cache`]: the on-disk cache of compiled components, used only when private.
//! - [`egress`]: the outbound HTTP policy every guest request passes through.
//! - [`sender`]: DNS with an address check, Happy Eyeballs, proxy, TLS with extra CAs, time-outs.
//! - [`pool`]: keep-alive connections reused between requests.
//! - [`transport_error`]: what the component is told when a connection fails.
//! - [`config`], [`origin`], [`secrets`], [`credentials`], [`oauth`]: the host's
//!   configuration, secrets and the credentials it attaches (Basic, OAuth 2.0, API key).
//! - [`pacing`]: staying inside rate limits (server headers, budget, shared cool-downs).
//! - [`stop`]: the stop signal every wait of a run awaits.

pub mod component_cache;
pub mod config;
pub mod credentials;
pub mod egress;
pub mod oauth;
pub mod origin;
pub mod pacing;
pub mod pool;
pub mod runtime;
pub mod secrets;
pub mod sender;
pub mod stop;
pub mod transport_error;
