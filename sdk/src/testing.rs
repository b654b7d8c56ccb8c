//! A scripted [`Http`] for native tests of connector logic.
//!
//! ```
//! use exposure_connector_sdk::prelude::*;
//! use exposure_connector_sdk::testing::FakeHttp;
//!
//! let mut http = FakeHttp::new(|request: &Request| {
//!     assert!(request.path_and_query.starts_with("/api/"));
//!     Ok(FakeHttp::json(200, r#"{"results": []}"#))
//! });
//! let endpoint = Endpoint::parse("url", "source.example.com").unwrap();
//! let response = http.send(&Request::get(&endpoint, "/api/items")).unwrap();
//! assert_eq!(response.status, 200);
//! assert_eq!(http.requests().len(), 1);
//! ```

use crate::http::{Http, Request, Response, TransportError};

/// The function a [`FakeHttp`] answers with.
type Responder = Box<dyn FnMut(&Request) -> Result<Response, TransportError>>;

/// An [`Http`] whose answers come from a function, and which keeps every
/// request it was given.
pub struct FakeHttp {
    respond: Responder,
    requests: Vec<Request>,
}

impl FakeHttp {
    /// A fake answering each request with `respond(request)`.
    pub fn new(
        respond: impl FnMut(&Request) -> Result<Response, TransportError> + 'static,
    ) -> Self {
        FakeHttp {
            respond: Box::new(respond),
            requests: Vec::new(),
        }
    }

    /// A JSON response with the given status and body.
    pub fn json(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// The requests sent so far, oldest first.
    pub fn requests(&self) -> &[Request] {
        &self.requests
    }
}

impl Http for FakeHttp {
    fn send(&mut self, request: &Request) -> Result<Response, TransportError> {
        self.requests.push(request.clone());
        (self.respond)(request)
    }
}
