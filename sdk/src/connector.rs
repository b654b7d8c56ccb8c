//! The [`Connector`] trait a connector implements, and the glue that exports
//! it as the contract's `source` interface.

use crate::http::Http;
use crate::types::{CheckReport, ConnectorError, ConnectorInfo, Page, ReadRequest};

/// A connector: the three functions of the contract's `source` interface,
/// over an [`Http`] client so that the same code runs in the component
/// (with [`crate::http::WasiHttp`]) and in native tests (with
/// [`crate::testing::FakeHttp`]).
///
/// Connectors are stateless between calls: everything a read needs to go
/// on is in the cursor it returned.
pub trait Connector {
    /// Describes the connector: settings (one of them the endpoint), auth
    /// methods and streams. Makes no requests.
    fn info() -> ConnectorInfo;

    /// Touches every stream once and reports, per stream and in `info`
    /// order, whether it is readable. Fails only when no stream can be
    /// probed (bad settings, unreachable source, rejected credentials).
    fn check(
        settings: &[(String, String)],
        http: &mut dyn Http,
    ) -> Result<CheckReport, ConnectorError>;

    /// Reads one page of one stream partition.
    fn read(
        settings: &[(String, String)],
        request: &ReadRequest,
        http: &mut dyn Http,
    ) -> Result<Page, ConnectorError>;
}

impl<T: Connector> crate::bindings::exports::exposure::connector::source::Guest for T {
    fn info() -> ConnectorInfo {
        T::info()
    }

    fn check(settings: Vec<(String, String)>) -> Result<CheckReport, ConnectorError> {
        T::check(&settings, &mut crate::http::WasiHttp)
    }

    fn read(settings: Vec<(String, String)>, request: ReadRequest) -> Result<Page, ConnectorError> {
        T::read(&settings, &request, &mut crate::http::WasiHttp)
    }
}

/// Exports a [`Connector`] as the component's `exposure:connector/source`.
///
/// Write it once, at the top level of the connector crate (a `cdylib` built
/// for `wasm32-wasip2`). On other targets it expands to nothing, so the
/// same crate also builds natively for tests.
#[macro_export]
macro_rules! export_connector {
    ($connector:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_connector_world!($connector with_types_in $crate::bindings);
    };
}
