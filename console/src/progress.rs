//! `GET /connections/{id}/progress`: server-sent events that follow a
//! connection's schedule, so a page shows a running sync's progress live
//! (`assets/console.js`) and reloads when it ends.

use crate::pages::ask;
use crate::view::ScheduleView;
use crate::ConsoleState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::time::Duration;

/// How often the schedule is looked at while a browser follows it.
const EVERY: Duration = Duration::from_millis(500);

/// The events: one `progress` event (the schedule as JSON) at once, then
/// one each time it changes; the stream ends when the connection has no
/// schedule any more, or the console stops.
pub async fn events(State(state): State<ConsoleState>, Path(id): Path<String>) -> Response {
    let first = {
        let id = id.clone();
        ask(&state, move |b| b.schedule(&id)).await
    };
    match first {
        Ok(Some(_)) => {}
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => return crate::pages::failure(&e),
    }
    let closing = state.closing.clone();
    let stream = futures_util::stream::unfold(
        (state, id, None::<ScheduleView>, closing),
        |(state, id, last, mut closing)| async move {
            loop {
                if last.is_some() {
                    // The console stopping ends the stream at once.
                    tokio::select! {
                        _ = tokio::time::sleep(EVERY) => {}
                        _ = closing.wait_for(|closed| *closed) => return None,
                    }
                }
                if *closing.borrow() {
                    return None;
                }
                let wanted = id.clone();
                let now = ask(&state, move |b| b.schedule(&wanted))
                    .await
                    .ok()
                    .flatten()?;
                if last.as_ref() != Some(&now) {
                    let event = Event::default().event("progress").json_data(&now).ok()?;
                    return Some((Ok::<_, Infallible>(event), (state, id, Some(now), closing)));
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
