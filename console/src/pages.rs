//! The pages, rendered on the server from compiled templates
//! (`console/templates/`), and the stylesheet they share.

use crate::view::{ConnectionDetail, ConnectionView};
use crate::{Backend, ConsoleState};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// The stylesheet, embedded: the console loads nothing from another origin.
pub const STYLESHEET: &str = include_str!("../assets/console.css");

/// Renders a template; a template that fails to render is a 500 with a plain message.
pub fn html(page: &impl Template) -> Response {
    match page.render() {
        Ok(text) => Html(text).into_response(),
        Err(e) => {
            tracing::error!("rendering a console page failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the console could not render this page; see the host's log",
            )
                .into_response()
        }
    }
}

/// The page a browser without a session sees.
#[derive(Template)]
#[template(path = "signed_out.html")]
pub struct SignedOut {
    /// What to do.
    pub message: &'static str,
}

/// The Data connectors page: one tile per connection.
#[derive(Template)]
#[template(path = "connectors.html")]
struct ConnectorsPage<'a> {
    connections: &'a [ConnectionView],
}

/// `GET /`: the Data connectors page.
pub async fn connectors(State(state): State<ConsoleState>) -> Response {
    let backend: &dyn Backend = state.backend.as_ref();
    match backend.connections() {
        Ok(connections) => html(&ConnectorsPage {
            connections: &connections,
        }),
        Err(e) => failure(&e),
    }
}

/// A connection's page.
#[derive(Template)]
#[template(path = "connection.html")]
struct ConnectionPage<'a> {
    detail: &'a ConnectionDetail,
}

/// The page for an unknown connection.
#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFound<'a> {
    id: &'a str,
}

/// `GET /connections/{id}`: health and the last runs' completeness reports.
pub async fn connection(State(state): State<ConsoleState>, Path(id): Path<String>) -> Response {
    match state.backend.connection(&id) {
        Ok(Some(detail)) => html(&ConnectionPage { detail: &detail }),
        Ok(None) => (StatusCode::NOT_FOUND, html(&NotFound { id: &id })).into_response(),
        Err(e) => failure(&e),
    }
}

/// `GET /assets/console.css`.
pub async fn stylesheet() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], STYLESHEET).into_response()
}

/// `GET /healthz`: the console answers (no session needed).
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// A backend failure as a 500 whose text says what happened.
pub fn failure(e: &anyhow::Error) -> Response {
    tracing::error!("the console could not read the connections: {e:#}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the console could not read the connections: {e:#}"),
    )
        .into_response()
}
