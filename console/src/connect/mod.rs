//! Connect: a form made from a connector's `info`, "Test connection"
//! (the connector's `check`, per stream), and "Connect" (the host writes
//! the connection's files and starts its first sync).
//!
//! Secrets go one way: from the browser to the host. The page never shows
//! one again; between a test and "Connect" they wait in a [`drafts`]
//! entry the form names.

pub mod drafts;
pub mod form;
mod submitted;

use crate::auth::Session;
use crate::pages::{ask, failure, html, notice, stale_form};
use crate::view::ConnectionView;
use crate::ConsoleState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use form::{ConnectRequest, Connected, ConnectorForm, TestOutcome};
use submitted::{auth_field, setting_field, Submitted, DRAFT_FIELD, METHOD_FIELD};

/// The Connect page: the form, and what the last test found.
#[derive(Template)]
#[template(path = "connect.html")]
struct ConnectPage<'a> {
    form: &'a ConnectorForm,
    /// Plain values to show again (never a secret).
    shown: Vec<(String, String)>,
    outcome: Option<&'a TestOutcome>,
    csrf: &'a str,
    /// The draft keeping the tested secrets.
    draft: Option<String>,
    /// The secret fields the draft keeps.
    kept: Vec<String>,
    /// The chosen authentication method.
    chosen: String,
}

impl ConnectPage<'_> {
    fn value(&self, field: &str) -> &str {
        self.shown
            .iter()
            .find(|(n, _)| n == field)
            .map_or("", |(_, v)| v.as_str())
    }

    fn setting_name(&self, name: &str) -> String {
        setting_field(name)
    }

    fn setting_value(&self, name: &str) -> &str {
        self.value(&setting_field(name))
    }

    fn auth_name(&self, method: &str, field: &str) -> String {
        auth_field(method, field)
    }

    fn auth_value(&self, method: &str, field: &str) -> &str {
        self.value(&auth_field(method, field))
    }

    fn is_kept(&self, method: &str, field: &str) -> bool {
        self.chosen == method && self.kept.iter().any(|k| k == field)
    }

    fn method_field(&self) -> &'static str {
        METHOD_FIELD
    }
}

/// The form of `connector`, when the host offers it.
async fn find_form(state: &ConsoleState, connector: &str) -> anyhow::Result<Option<ConnectorForm>> {
    let wanted = connector.to_string();
    let forms = ask(state, |b| b.connectors_available()).await?;
    Ok(forms.into_iter().find(|f| f.connector == wanted))
}

/// `GET /connect/{connector}`: the empty form.
pub async fn start(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
    Path(connector): Path<String>,
) -> Response {
    match find_form(&state, &connector).await {
        Ok(Some(form)) => html(&ConnectPage {
            chosen: form
                .auth_methods
                .first()
                .map(|m| m.method.clone())
                .unwrap_or_default(),
            form: &form,
            shown: Vec::new(),
            outcome: None,
            csrf: &session.csrf,
            draft: None,
            kept: Vec::new(),
        }),
        Ok(None) => unknown_connector(),
        Err(e) => failure(&e),
    }
}

fn unknown_connector() -> Response {
    notice(
        StatusCode::NOT_FOUND,
        "No such connector",
        "This host offers no connector by that name. Go back to Data connectors and pick one there.",
    )
}

/// `POST /connect/{connector}`: "Test connection" (`action=test`) or
/// "Connect" (`action=connect`).
pub async fn submit(
    State(state): State<ConsoleState>,
    Extension(session): Extension<Session>,
    Path(connector): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let submitted = Submitted::new(fields);
    if !session.accepts(submitted.get("csrf")) {
        return stale_form();
    }
    let form = match find_form(&state, &connector).await {
        Ok(Some(form)) => form,
        Ok(None) => return unknown_connector(),
        Err(e) => return failure(&e),
    };
    let mut request = submitted.request(&form);
    let draft = submitted.get(DRAFT_FIELD).to_string();
    if !draft.is_empty() {
        state.drafts.fill(&session, &draft, &mut request);
    }
    let answer = Answer {
        state: &state,
        session: &session,
        form: &form,
        submitted: &submitted,
        draft: &draft,
    };
    if submitted.get("action") == "connect" {
        answer.connect(request).await
    } else {
        answer.test(request).await
    }
}

/// Answers one submitted form.
struct Answer<'a> {
    state: &'a ConsoleState,
    session: &'a Session,
    form: &'a ConnectorForm,
    submitted: &'a Submitted,
    /// The draft the form named (empty when none).
    draft: &'a str,
}

impl Answer<'_> {
    /// Runs the test; the form again, with what it found.
    async fn test(&self, request: ConnectRequest) -> Response {
        let asked = request.clone();
        match ask(self.state, move |b| b.test_connection(&asked)).await {
            Ok(outcome) => self.form_again(StatusCode::OK, &request, &outcome),
            Err(e) => failure(&e),
        }
    }

    /// Connects: to the new connection's page, or the form again with why not.
    async fn connect(&self, request: ConnectRequest) -> Response {
        let asked = request.clone();
        match ask(self.state, move |b| b.connect(&asked)).await {
            Ok(Connected::Started { id }) => {
                self.state.drafts.forget(self.session, self.draft);
                let mut response = StatusCode::SEE_OTHER.into_response();
                if let Ok(location) = HeaderValue::from_str(&ConnectionView::href_of(&id)) {
                    response.headers_mut().insert(LOCATION, location);
                }
                response
            }
            Ok(Connected::Refused(outcome)) => {
                self.form_again(StatusCode::UNPROCESSABLE_ENTITY, &request, &outcome)
            }
            Err(e) => failure(&e),
        }
    }

    /// The form with the plain values given, the secrets kept in a new
    /// draft, and `outcome`.
    fn form_again(
        &self,
        status: StatusCode,
        request: &ConnectRequest,
        outcome: &TestOutcome,
    ) -> Response {
        if !self.draft.is_empty() {
            self.state.drafts.forget(self.session, self.draft);
        }
        let draft = self.state.drafts.keep(self.session, request);
        let kept = match draft {
            Some(_) => request.secrets.iter().map(|(f, _)| f.clone()).collect(),
            None => Vec::new(),
        };
        let page = ConnectPage {
            form: self.form,
            shown: self.submitted.shown(self.form),
            outcome: Some(outcome),
            csrf: &self.session.csrf,
            draft,
            kept,
            chosen: request.auth_method.clone().unwrap_or_default(),
        };
        (status, html(&page)).into_response()
    }
}
