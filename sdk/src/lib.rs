//! Guest SDK for `exposure:connector` components.
//!
//! A connector is a WebAssembly component that reads one source system and
//! hands records to a host, page by page (see `wit/connector.wit`). This
//! crate is the one place that generates the contract's bindings; a
//! connector implements [`Connector`] and exports it with
//! [`export_connector!`]. Its logic uses the contract's types
//! ([`types`]) directly and, because it talks to the network through the
//! [`http::Http`] trait, compiles and unit-tests natively with
//! [`testing::FakeHttp`].
//!
//! ```
//! use exposure_connector_sdk::prelude::*;
//!
//! struct Hello;
//!
//! impl Connector for Hello {
//!     fn info() -> ConnectorInfo {
//!         ConnectorInfo {
//!             name: "hello".into(),
//!             version: "0.1.0".into(),
//!             description: "Says hello.".into(),
//!             settings: vec![endpoint_setting("url", "Where the source is.")],
//!             auth_methods: vec![],
//!             streams: vec![],
//!         }
//!     }
//!     fn check(_: &[(String, String)], _: &mut dyn Http) -> Result<CheckReport, ConnectorError> {
//!         Ok(CheckReport { streams: vec![] })
//!     }
//!     fn read(_: &[(String, String)], r: &ReadRequest, _: &mut dyn Http) -> Result<Page, ConnectorError> {
//!         Err(ConnectorError::InvalidSettings(format!("no stream `{}`", r.stream_name)))
//!     }
//! }
//!
//! export_connector!(Hello);
//! # fn main() {}
//! ```
//!
//! Module map:
//! - [`types`]: the contract's types, generated from the WIT.
//! - [`connector`]: the [`Connector`] trait and the export glue.
//! - [`http`]: requests, responses, typed transport failures, the `wasi:http` client.
//! - [`testing`]: [`testing::FakeHttp`], a scripted [`http::Http`] for native tests.
//! - [`settings`]: reading settings and the endpoint.
//! - [`cursor`], [`schema`], [`error`](mod@error), [`log`](mod@log): helpers every connector needs.

/// The generated bindings of the `connector` world (wasm32 imports are real;
/// natively they are stubs that the SDK never calls).
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "connector",
        with: {
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
            "wasi:clocks/wall-clock@0.2.12": wasip2::clocks::wall_clock,
            "wasi:random/random@0.2.12": wasip2::random::random,
            "wasi:random/insecure@0.2.12": wasip2::random::insecure,
            "wasi:random/insecure-seed@0.2.12": wasip2::random::insecure_seed,
            "wasi:cli/environment@0.2.12": wasip2::cli::environment,
            "wasi:cli/exit@0.2.12": wasip2::cli::exit,
            "wasi:cli/stdin@0.2.12": wasip2::cli::stdin,
            "wasi:cli/stdout@0.2.12": wasip2::cli::stdout,
            "wasi:cli/stderr@0.2.12": wasip2::cli::stderr,
            "wasi:cli/terminal-input@0.2.12": wasip2::cli::terminal_input,
            "wasi:cli/terminal-output@0.2.12": wasip2::cli::terminal_output,
            "wasi:cli/terminal-stdin@0.2.12": wasip2::cli::terminal_stdin,
            "wasi:cli/terminal-stdout@0.2.12": wasip2::cli::terminal_stdout,
            "wasi:cli/terminal-stderr@0.2.12": wasip2::cli::terminal_stderr,
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
        },
        additional_derives: [PartialEq, Eq],
        additional_type_attributes: {
            "exposure:connector/types@0.3.1/page-counters": [#[derive(Default)]],
            "exposure:connector/types@0.3.1/page": [#[derive(Default)]],
        },
        pub_export_macro: true,
        export_macro_name: "__export_connector_world",
        default_bindings_module: "exposure_connector_sdk::bindings",
    });
}

pub mod connector;
pub mod cursor;
pub mod error;
pub mod http;
pub mod log;
pub mod schema;
pub mod settings;
pub mod testing;

/// The contract's types (`exposure:connector/types`), generated from the WIT.
pub mod types {
    pub use crate::bindings::exposure::connector::types::*;
}

pub use connector::Connector;

/// The contract version these bindings implement (the WIT package's).
pub const CONTRACT_VERSION: &str = "0.3.1";

/// Everything a connector usually needs, in one `use`.
pub mod prelude {
    pub use crate::connector::Connector;
    pub use crate::export_connector;
    pub use crate::http::{Http, Request, Response, TransportError};
    pub use crate::settings::{endpoint_setting, setting, Endpoint, Settings};
    pub use crate::types::*;
}
