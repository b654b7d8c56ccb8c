//! The pages, rendered on the server from compiled templates
//! (`console/templates/`), and the stylesheet they share.

use crate::auth::Session;
use crate::connect::form::ConnectorForm;
use crate::view::{ConnectionDetail, ConnectionView};
use crate::{Backend, ConsoleState};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form};
use std::sync::Arc;

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

/// A page that only says something: no session, a stale form, nothing there.
#[derive(Template)]
#[template(path = "notice.html")]
struct Notice {
    heading: &'static str,
    message: &'static str,
}

/// A [`Notice`] page with `status`.
pub fn notice(status: StatusCode, heading: &'static str, message: &'static str) -> Response {
    (status, html(&Notice { heading, message })).into_response()
}

/// Calls the backend off the async threads (it reads databases).
pub async fn ask<T: Send + 'static>(
    state: &ConsoleState,
    question: impl FnOnce(&dyn Backend) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let backend: Arc<dyn Backend> = state.backend.clone();
    tokio::task::spawn_blocking(move || question(backend.as_ref()))
        .await
        .map_err(|e| anyhow::anyhow!("the console's backend failed: {e}"))?
}

/// The Data connectors page: one tile per connection.
#[derive(Template)]
#[template(path = "connectors.html")]
struct ConnectorsPage<'a> {
    connections: &'a [ConnectionView],
    available: &'a [ConnectorForm],
    csrf: &'a str,
}

/// `GET /`: the Data connectors page.
pub async fn connectors(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
) -> Response {
    match ask(&state, |b| {
        Ok((b.connections()?, b.connectors_available()?))
    })
    .await
    {
        Ok((connections, available)) => html(&ConnectorsPage {
            connections: &connections,
            available: &available,
            csrf: &session.csrf,
        }),
        Err(e) => failure(&e),
    }
}

/// A connection's page.
#[derive(Template)]
#[template(path = "connection.html")]
struct ConnectionPage<'a> {
    detail: &'a ConnectionDetail,
    csrf: &'a str,
}

/// The page for an unknown connection.
#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFound<'a> {
    id: &'a str,
}

/// `GET /connections/{id}`: health and the last runs' completeness reports.
pub async fn connection(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    detail_page(&state, &session, id, |detail, csrf| {
        html(&ConnectionPage { detail, csrf })
    })
    .await
}

/// A page about connection `id`, rendered by `render` from its detail and
/// the session's CSRF token; 404 when there is no such connection.
async fn detail_page(
    state: &ConsoleState,
    session: &Session,
    id: String,
    render: impl FnOnce(&ConnectionDetail, &str) -> Response,
) -> Response {
    let wanted = id.clone();
    match ask(state, move |b| b.connection(&wanted)).await {
        Ok(Some(detail)) => render(&detail, &session.csrf),
        Ok(None) => not_found(&id),
        Err(e) => failure(&e),
    }
}

fn not_found(id: &str) -> Response {
    (StatusCode::NOT_FOUND, html(&NotFound { id })).into_response()
}

/// A state-changing form: its CSRF token.
#[derive(Debug, serde::Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /connections/{id}/sync`: "Sync now", then back to the connection's page.
pub async fn sync_now(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !session.accepts(&form.csrf) {
        return stale_form();
    }
    let wanted = id.clone();
    done(&id, ask(&state, move |b| b.sync_now(&wanted)).await)
}

/// The answer to a form without this session's CSRF token.
pub fn stale_form() -> Response {
    notice(
        StatusCode::FORBIDDEN,
        "Form refused",
        "This form is out of date or did not come from this console. Reload the page and try again.",
    )
}

/// After an action on connection `id`: back to its page, or what went wrong.
fn done(id: &str, outcome: anyhow::Result<bool>) -> Response {
    match outcome {
        Ok(true) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(location) = HeaderValue::from_str(&ConnectionView::href_of(id)) {
                response.headers_mut().insert(LOCATION, location);
            }
            response
        }
        Ok(false) => not_found(id),
        Err(e) => failure(&e),
    }
}

/// The page that asks before disconnecting.
#[derive(Template)]
#[template(path = "disconnect.html")]
struct DisconnectPage<'a> {
    detail: &'a ConnectionDetail,
    csrf: &'a str,
}

/// `GET /connections/{id}/disconnect`: asks, with the records to keep or delete.
pub async fn confirm_disconnect(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    detail_page(&state, &session, id, |detail, csrf| {
        html(&DisconnectPage { detail, csrf })
    })
    .await
}

/// The disconnect form: its CSRF token, and the box to delete the records.
#[derive(Debug, serde::Deserialize)]
pub struct DisconnectForm {
    csrf: String,
    #[serde(default)]
    delete_records: Option<String>,
}

/// `POST /connections/{id}/disconnect`: "Disconnect", then back to the connection's page.
pub async fn disconnect(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(form): Form<DisconnectForm>,
) -> Response {
    if !session.accepts(&form.csrf) {
        return stale_form();
    }
    let delete = form.delete_records.as_deref() == Some("yes");
    let wanted = id.clone();
    done(
        &id,
        ask(&state, move |b| b.disconnect(&wanted, delete)).await,
    )
}

/// The script that follows a running sync, embedded.
pub const SCRIPT: &str = include_str!("../assets/console.js");

/// `GET /assets/console.js`.
pub async fn script() -> Response {
    ([(CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response()
}

/// The console's icon, embedded.
pub const ICON: &str = include_str!("../assets/icon.svg");

/// `GET /assets/icon.svg`.
pub async fn icon() -> Response {
    ([(CONTENT_TYPE, "image/svg+xml")], ICON).into_response()
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
