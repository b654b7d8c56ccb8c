//! Checks that talk to the source through single calls: settings,
//! credentials, `check`, error mapping under injected faults, and egress.

use super::harness::Harness;
use super::Check;
use connector_sandbox::credentials::{Credential, DeclaredAuth};
use connector_sandbox::egress::{Fault, FaultInjector};
use connector_sandbox::runtime::{
    connector_error_kind, CallError, ConnectorError, Page, Partition, ReadRequest,
};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The variable the deliberately wrong secret is read from.
const WRONG_SECRET_VAR: &str = "CONNECTOR_HOST_CONFORMANCE_WRONG_SECRET";

fn first_page_request(h: &Harness, stream: &str) -> ReadRequest {
    ReadRequest {
        stream_name: stream.to_string(),
        partition: Partition { index: 0, count: 1 },
        cursor: None,
        watermark: None,
        deletions_since: None,
        page_size: h.config.sync.page_size,
    }
}

/// What a call's outcome was, for messages.
fn outcome<T>(result: &Result<T, CallError>) -> String {
    match result {
        Ok(_) => "success".into(),
        Err(CallError::Connector(e)) => format!("`{}`", connector_error_kind(e)),
        Err(CallError::Trap(t)) => format!("a trap ({t})"),
    }
}

/// Check 2: a missing required setting is `invalid-settings`, before any request.
pub(super) async fn missing_settings(h: &Harness) -> Check {
    const NAME: &str = "missing-settings";
    let required: Vec<&str> = h
        .info
        .settings
        .iter()
        .filter(|s| s.required && s.default_value.is_none())
        .map(|s| s.name.as_str())
        .collect();
    let Some(stream) = h.info.streams.first() else {
        return Check::skip(NAME, "the connector declares no stream");
    };
    if required.is_empty() {
        return Check::skip(
            NAME,
            "the connector declares no required setting without a default",
        );
    }
    let mut problems = Vec::new();
    for setting in &required {
        let settings: Vec<(String, String)> = h
            .config
            .settings
            .iter()
            .filter(|(n, _)| n != setting)
            .cloned()
            .collect();
        let mut probe = match h.probe(h.credential.clone(), None).await {
            Ok(p) => p,
            Err(e) => return Check::fail(NAME, e),
        };
        let checked = probe.instance.check(&settings).await;
        let read = probe
            .instance
            .read(&settings, &first_page_request(h, &stream.name))
            .await;
        for (call, result) in [("check", outcome(&checked)), ("read", outcome(&read))] {
            if result != "`invalid-settings`" {
                problems.push(format!(
                    "without `{setting}`, `{call}` gave {result}, not `invalid-settings`"
                ));
            }
        }
        let requests = probe.counters.requests.load(Ordering::Relaxed);
        if requests > 0 {
            problems.push(format!(
                "without `{setting}`, the connector still sent {requests} request(s)"
            ));
        }
    }
    Check::from_problems(
        NAME,
        problems,
        format!(
            "without any of {}: invalid-settings, no request",
            required.join(", ")
        ),
    )
}

/// Check 3: a deliberately wrong secret is `unauthenticated`.
pub(super) async fn wrong_credentials(h: &Harness) -> Check {
    const NAME: &str = "wrong-credentials";
    let Some(auth) = &h.config.auth else {
        return Check::skip(
            NAME,
            "no [auth] is configured: the source takes no credentials",
        );
    };
    let declared = DeclaredAuth::of(&h.info);
    let wrong = format!("conformance-wrong-{:016x}", rand::random::<u64>());
    let mut auth = auth.clone();
    let secret = match auth.method.as_str() {
        "basic" => {
            (auth.password_env, auth.password_file) = (Some(WRONG_SECRET_VAR.into()), None);
            wrong
        }
        "api-key" => {
            (auth.api_key_env, auth.api_key_file) = (Some(WRONG_SECRET_VAR.into()), None);
            // A key of the first declared format, so the host can write it.
            let prefix = declared.api_keys.first().and_then(|f| f.key_prefix.clone());
            format!("{}{wrong}", prefix.unwrap_or_default())
        }
        other => {
            return Check::skip(NAME, format!("[auth] method = \"{other}\": the host exchanges that secret itself, so a wrong one never reaches the connector"));
        }
    };
    let env = HashMap::from([(WRONG_SECRET_VAR.to_string(), secret)]);
    let credential = match Credential::from_config(
        Some(&auth),
        &declared,
        &h.origin,
        h.sender.clone(),
        h.config.limits.request_timeout(),
        &env,
    ) {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("the host cannot build a wrong credential: {e}"),
            )
        }
    };
    let mut probe = match h.probe(credential, None).await {
        Ok(p) => p,
        Err(e) => return Check::fail(NAME, e),
    };
    let checked = h.check(&mut probe.instance, &h.config.settings).await;
    match checked {
        Err(CallError::Connector(ConnectorError::Unauthenticated(m))) => Check::pass(
            NAME,
            format!("a wrong {} gave `unauthenticated`: {m}", auth.method),
        ),
        other => Check::fail(
            NAME,
            format!(
                "with a wrong {}, `check` gave {}, not `unauthenticated`",
                auth.method,
                outcome(&other)
            ),
        ),
    }
}

/// Check 4: `check` reports every stream once, in `info` order.
pub(super) async fn check_report(h: &Harness) -> Check {
    const NAME: &str = "check-report";
    let mut probe = match h.probe(h.credential.clone(), None).await {
        Ok(p) => p,
        Err(e) => return Check::fail(NAME, e),
    };
    match h.check(&mut probe.instance, &h.config.settings).await {
        Ok(report) => {
            let expected: Vec<&str> = h.info.streams.iter().map(|s| s.name.as_str()).collect();
            let got: Vec<&str> = report
                .streams
                .iter()
                .map(|s| s.stream_name.as_str())
                .collect();
            if got == expected {
                let unreadable = report.streams.iter().filter(|s| !s.readable).count();
                Check::pass(
                    NAME,
                    format!(
                        "{} streams in info order, {unreadable} not readable",
                        got.len()
                    ),
                )
            } else {
                Check::fail(
                    NAME,
                    format!(
                        "`check` reported [{}]; `info` declares [{}]",
                        got.join(", "),
                        expected.join(", ")
                    ),
                )
            }
        }
        Err(e) => Check::fail(NAME, format!("`check` failed: {e}")),
    }
}

/// Tries at injecting one fault before giving up on it.
const INJECTION_ATTEMPTS: usize = 5;

/// The faults of check 10 and the cases a connector must answer them with.
const FAULTS: &[(Fault, &str, &[&str])] = &[
    (
        Fault::TooManyRequests(Some(7)),
        "HTTP 429 with Retry-After: 7",
        &["rate-limited"],
    ),
    (
        Fault::TooManyRequests(None),
        "HTTP 429 without Retry-After",
        &["rate-limited"],
    ),
    (Fault::Unavailable, "HTTP 503", &["temporarily-unavailable"]),
    (
        Fault::TruncatedBody,
        "a 200 whose body is cut in half",
        &["bad-response", "temporarily-unavailable"],
    ),
    (
        Fault::ResetMidBody,
        "a connection reset in the middle of the body",
        &["temporarily-unavailable"],
    ),
];

/// Check 10: injected faults map to the right `connector-error` case.
pub(super) async fn error_mapping(h: &Harness) -> Check {
    const NAME: &str = "error-mapping";
    let Some(stream) = h.info.streams.first() else {
        return Check::skip(NAME, "the connector declares no stream");
    };
    let mut problems = Vec::new();
    for (fault, what, expected) in FAULTS {
        match inject(h, &stream.name, *fault).await {
            Err(e) => return Check::fail(NAME, e),
            Ok(None) => problems.push(format!(
                "reading `{}` never gave the host a request to refuse or a 200 to damage, so {what} could not be injected",
                stream.name
            )),
            Ok(Some(result)) => problems.extend(judge_fault(*fault, what, expected, &result)),
        }
    }
    Check::from_problems(
        NAME,
        problems,
        format!(
            "{} injected faults each mapped to the right case",
            FAULTS.len()
        ),
    )
}

/// Reads the first page of `stream` with `fault` in place of the answer;
/// `None` when it could not be injected (a body fault needs a real 200,
/// which a flaky source may not give at once).
async fn inject(
    h: &Harness,
    stream: &str,
    fault: Fault,
) -> Result<Option<Result<Page, CallError>>, String> {
    let faults = Arc::new(FaultInjector::default());
    for _ in 0..INJECTION_ATTEMPTS {
        faults.arm(fault);
        let mut probe = h.probe(h.credential.clone(), Some(faults.clone())).await?;
        let result = probe
            .instance
            .read(&h.config.settings, &first_page_request(h, stream))
            .await;
        if faults.injected() > 0 {
            return Ok(Some(result));
        }
    }
    Ok(None)
}

/// What is wrong with the connector's answer to `fault`, if anything.
fn judge_fault(
    fault: Fault,
    what: &str,
    expected: &[&str],
    result: &Result<Page, CallError>,
) -> Option<String> {
    match result {
        Ok(page) => Some(format!(
            "after {what} the connector returned a page ({} records) instead of an error",
            page.records.len()
        )),
        Err(CallError::Connector(e)) if expected.contains(&connector_error_kind(e)) => {
            match (fault, e) {
                (Fault::TooManyRequests(asked), ConnectorError::RateLimited(r))
                    if r.retry_after_seconds != asked =>
                {
                    Some(format!(
                        "after {what} `retry-after-seconds` was {:?}, not {asked:?}",
                        r.retry_after_seconds
                    ))
                }
                _ => None,
            }
        }
        other => Some(format!(
            "after {what} the connector gave {}, not {}",
            outcome(other),
            expected.join(" or ")
        )),
    }
}

/// Check 11: no forbidden header set, nothing but the endpoint contacted,
/// over every call conformance made.
pub(super) fn egress(h: &Harness) -> Check {
    const NAME: &str = "egress";
    let attempts = h.totals.forbidden_header_attempts.load(Ordering::Relaxed);
    let denied = h.totals.denied.load(Ordering::Relaxed);
    let requests = h.totals.requests.load(Ordering::Relaxed);
    let mut problems = Vec::new();
    if attempts > 0 {
        problems.push(format!("the connector tried {attempts} time(s) to set a header only the host may set (authorization, cookie, the API key header, …)"));
    }
    if denied > 0 {
        problems.push(format!(
            "the connector sent {denied} request(s) to somewhere other than its endpoint {}",
            h.origin
        ));
    }
    Check::from_problems(
        NAME,
        problems,
        format!(
            "{requests} requests, all to {}, no forbidden header",
            h.origin
        ),
    )
}
