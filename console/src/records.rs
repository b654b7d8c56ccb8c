//! The record browser: a search over a stream's records, a page at a time
//! (the backend pages on the server), and one record with what hangs off it.

use crate::pages::{ask, failure, html, notice};
use crate::view::{RecordView, RecordsView};
use crate::ConsoleState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

/// `?q=…&offset=…`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    offset: u64,
}

#[derive(Template)]
#[template(path = "records.html")]
struct RecordsPage<'a> {
    view: &'a RecordsView,
}

#[derive(Template)]
#[template(path = "record.html")]
struct RecordPage<'a> {
    view: &'a RecordView,
}

/// The page for what is not there.
fn missing() -> Response {
    notice(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such connection, stream or record (a record deleted at the source is no longer shown).",
    )
}

/// `GET /connections/{id}/streams/{stream}`: a page of the records found.
pub async fn records(
    State(state): State<ConsoleState>,
    Path((id, stream)): Path<(String, String)>,
    Query(query): Query<SearchQuery>,
) -> Response {
    let found = ask(&state, move |b| {
        b.records(&id, &stream, &query.q, query.offset)
    })
    .await;
    match found {
        Ok(Some(view)) => html(&RecordsPage { view: &view }),
        Ok(None) => missing(),
        Err(e) => failure(&e),
    }
}

/// `GET /connections/{id}/streams/{stream}/records/{key}`: one record.
pub async fn record(
    State(state): State<ConsoleState>,
    Path((id, stream, key)): Path<(String, String, String)>,
) -> Response {
    match ask(&state, move |b| b.record(&id, &stream, &key)).await {
        Ok(Some(view)) => html(&RecordPage { view: &view }),
        Ok(None) => missing(),
        Err(e) => failure(&e),
    }
}
