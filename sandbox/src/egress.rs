//! The outbound HTTP policy: the one choke point every request of the
//! component passes through (`WasiHttpHooks::send_request`).
//!
//! - Only the configured origin (scheme, host, port) is reachable; anything
//!   else is refused with `HttpRequestDenied` and logged.
//! - `authorization`, `cookie` and `set-cookie` are forbidden headers: the
//!   guest can neither set them nor see them in responses.
//! - The host attaches the credential (marked sensitive). When it has none
//!   to attach (the token endpoint refused a renewal), the request fails,
//!   and the reason waits in [`CredentialFailure`] for the run to report.
//! - Time-outs the guest asks for are clamped; response bodies are capped.
//! - Requests and response bytes are counted for the run report, and so are
//!   the guest's attempts to set a forbidden header (conformance judges them).
//! - A [`FaultInjector`] may answer the next request with a fault instead
//!   (conformance checks how the connector maps it).

use crate::credentials::Credential;
use crate::oauth::TokenError;
use crate::origin::Origin;
use crate::pacing::{Admission, Pacer, WaitClock};
use crate::sender::{bodiless_copy, Sender};
use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use http::uri::Scheme;
use http::HeaderName;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{
    ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks, DEFAULT_FORBIDDEN_HEADERS,
};

/// Counters shared between the policy and the run report. A partition's
/// counters add into their run's (the `parent`), where the request cap is
/// checked.
#[derive(Debug, Default)]
pub struct EgressCounters {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Response body bytes received.
    pub bytes: AtomicU64,
    /// Requests refused by the policy.
    pub denied: AtomicU64,
    /// Times the guest tried to set or remove a forbidden header.
    pub forbidden_header_attempts: AtomicU64,
    /// Requests the run's cap has granted (counted at the run's root).
    granted: AtomicU64,
    parent: Option<Arc<EgressCounters>>,
}

impl EgressCounters {
    /// Counters that also add into `parent`.
    pub fn child(parent: &Arc<EgressCounters>) -> Arc<EgressCounters> {
        Arc::new(EgressCounters {
            parent: Some(parent.clone()),
            ..Default::default()
        })
    }

    fn add(&self, pick: fn(&EgressCounters) -> &AtomicU64, n: u64) {
        pick(self).fetch_add(n, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            parent.add(pick, n);
        }
    }

    /// Takes one request from the run's cap of `max`, atomically: of any
    /// number of concurrent callers, exactly as many as the cap has left get
    /// `true`.
    pub fn grant_request(&self, max: u64) -> bool {
        match &self.parent {
            Some(parent) => parent.grant_request(max),
            None => self
                .granted
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok(),
        }
    }

    /// Requests sent by the whole run.
    pub fn run_requests(&self) -> u64 {
        match &self.parent {
            Some(parent) => parent.run_requests(),
            None => self.requests.load(Ordering::Relaxed),
        }
    }
}

/// The caps the policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressLimits {
    /// Cap on the connect, first-byte and between-bytes time-outs.
    pub max_timeout: Duration,
    /// Largest response body, bytes.
    pub max_body_bytes: u64,
    /// Most requests per run (counted in the shared counters).
    pub max_requests: u64,
}

impl From<&crate::config::LimitsConfig> for EgressLimits {
    fn from(l: &crate::config::LimitsConfig) -> Self {
        EgressLimits {
            max_timeout: l.request_timeout(),
            max_body_bytes: l.max_response_mib << 20,
            max_requests: l.max_requests_per_run,
        }
    }
}

/// The policy for one component instance.
#[derive(Clone)]
pub struct EgressPolicy {
    origin: Arc<Origin>,
    sender: Arc<Sender>,
    credential: Credential,
    limits: EgressLimits,
    counters: Arc<EgressCounters>,
    pacer: Arc<Pacer>,
    faults: Option<Arc<FaultInjector>>,
    stop: Option<Arc<crate::stop::StopSignal>>,
    max_budget_wait: Option<Duration>,
    budget_waits: Arc<WaitClock>,
    credential_failure: Arc<CredentialFailure>,
}

/// Why the host last had no credential to attach to one of an instance's
/// requests, until taken. The component only sees its request fail; the
/// run reports this reason instead of what the component made of it.
#[derive(Debug, Default)]
pub struct CredentialFailure(std::sync::Mutex<Option<TokenError>>);

impl CredentialFailure {
    fn record(&self, reason: TokenError) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// The reason recorded since the last call, if any.
    pub fn take(&self) -> Option<TokenError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A fault the host puts in place of a real answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429, with `Retry-After: N` when given (nothing is sent).
    TooManyRequests(Option<u32>),
    /// HTTP 503 (nothing is sent).
    Unavailable,
    /// The real answer, its body cut in half (a 200 whose body is malformed).
    TruncatedBody,
    /// The real answer's headers, then the connection fails half-way through the body.
    ResetMidBody,
}

/// Answers the next request with a fault, once.
#[derive(Debug, Default)]
pub struct FaultInjector {
    next: std::sync::Mutex<Option<Fault>>,
    injected: AtomicU64,
}

impl FaultInjector {
    /// Arms `fault` for the next request.
    pub fn arm(&self, fault: Fault) {
        *self.next.lock().unwrap_or_else(|p| p.into_inner()) = Some(fault);
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn take(&self) -> Option<Fault> {
        let fault = self.next.lock().unwrap_or_else(|p| p.into_inner()).take();
        if fault.is_some() {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fault
    }

    /// Puts back a fault that could not be applied (a body fault needs a 200).
    fn put_back(&self, fault: Fault) {
        self.injected.fetch_sub(1, Ordering::Relaxed);
        self.arm(fault);
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl EgressPolicy {
    /// A policy allowing only `origin`, attaching `credential`.
    pub fn new(
        origin: Origin,
        sender: Arc<Sender>,
        credential: Credential,
        limits: EgressLimits,
        counters: Arc<EgressCounters>,
        pacer: Arc<Pacer>,
    ) -> Self {
        EgressPolicy {
            origin: Arc::new(origin),
            sender,
            credential,
            limits,
            counters,
            pacer,
            faults: None,
            stop: None,
            max_budget_wait: None,
            budget_waits: Arc::default(),
            credential_failure: Arc::default(),
        }
    }

    /// The same policy, refusing to wait longer than `max` for the rate budget.
    pub fn with_max_budget_wait(mut self, max: Duration) -> Self {
        self.max_budget_wait = Some(max);
        self
    }

    /// Time this instance's requests spent waiting for the rate budget.
    pub fn budget_waits(&self) -> Arc<WaitClock> {
        self.budget_waits.clone()
    }

    /// Why this instance's requests last went without a credential.
    pub fn credential_failure(&self) -> Arc<CredentialFailure> {
        self.credential_failure.clone()
    }

    /// Waits for the rate budget (outside the call's time-out); the error
    /// the request meets when the run stopped or the wait is too long.
    async fn admit(&self) -> Result<(), wasmtime_wasi_http::Error> {
        let stop = self.stop.as_deref();
        match self
            .pacer
            .before_request(stop, self.max_budget_wait, &self.budget_waits)
            .await
        {
            Admission::Go => Ok(()),
            Admission::Stopped => Err(stopped()),
            Admission::BudgetReturnsAt(at) => {
                Err(wasmtime_wasi_http::Error::InternalError(Some(format!(
                    "the rate budget returns only at {}",
                    httpdate::fmt_http_date(at)
                ))))
            }
        }
    }

    /// The same policy, whose waits for the rate budget end when `stop` is triggered.
    pub fn with_stop(mut self, stop: Arc<crate::stop::StopSignal>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The same policy, with faults injected from `faults`.
    pub fn with_faults(mut self, faults: Arc<FaultInjector>) -> Self {
        self.faults = Some(faults);
        self
    }

    fn clamp(&self, options: Option<RequestOptions>) -> RequestOptions {
        let cap = |d: Option<Duration>| {
            Some(d.map_or(self.limits.max_timeout, |d| d.min(self.limits.max_timeout)))
        };
        let o = options.unwrap_or_default();
        RequestOptions {
            connect_timeout: cap(o.connect_timeout),
            first_byte_timeout: cap(o.first_byte_timeout),
            between_bytes_timeout: cap(o.between_bytes_timeout),
        }
    }
}

/// Whether the guest may not set (or see) a header.
pub fn is_forbidden_header(name: &HeaderName) -> bool {
    *name == AUTHORIZATION
        || *name == COOKIE
        || *name == SET_COOKIE
        || name.as_str() == "proxy-authorization"
        || DEFAULT_FORBIDDEN_HEADERS.contains(name)
}

impl WasiHttpHooks for EgressPolicy {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let guarded = self.credential.guarded_header();
        Arc::new(move |name| is_forbidden_header(name) || guarded.as_ref() == Some(name))
    }

    /// Asked when the guest sets, appends or removes a header (responses
    /// reach the guest without forbidden headers already: `send_request`
    /// strips them), so every `true` here is a guest's attempt.
    fn is_forbidden_header(&mut self, name: &HeaderName) -> bool {
        let forbidden = (self.forbidden_header_filter())(name);
        if forbidden {
            self.counters.add(|c| &c.forbidden_header_attempts, 1);
            tracing::warn!(target: "egress", header = %name, "the component tried to set a forbidden header");
        }
        forbidden
    }

    /// Quietly, with the exact code: see [`crate::transport_error`].
    fn p2_error_from_hyper(&mut self, err: &hyper::Error) -> ErrorCode {
        crate::transport_error::from_hyper(err)
    }

    /// Quietly: see [`crate::transport_error`].
    fn p2_error_from_connect(&mut self, err: &std::io::Error) -> ErrorCode {
        crate::transport_error::from_connect(err)
    }

    fn is_supported_scheme(&mut self, scheme: &Scheme) -> bool {
        scheme.as_str().eq_ignore_ascii_case(self.origin.scheme)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<
        dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), wasmtime_wasi_http::Error>>
            + Send,
    > {
        let policy = self.clone();
        Box::new(async move { policy.handle(request, options).await })
    }
}

/// The error type of `wasi:http`, as the component sees it.
type HttpError = wasmtime_wasi_http::Error;
/// A response with the future that drives its connection.
type Sent = (http::Response<WasiBody>, IoFuture);

impl EgressPolicy {
    /// Everything between the component's request and the response it sees.
    async fn handle(
        &self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Sent, HttpError> {
        self.allow(&request)?;
        let used = self.attach_credential(&mut request).await?;
        // A GET refused with 401 under an OAuth token is sent once more
        // with a fresh token (the first may have expired in flight).
        let retry = (request.method() == http::Method::GET && used.is_some())
            .then(|| bodiless_copy(&request));
        let fault = self.faults.as_ref().and_then(|f| f.take());
        if let Some(response) = fault.and_then(synthetic_response) {
            return Ok((response, Box::new(async { Ok(()) }) as IoFuture));
        }
        let options = self.clamp(options);
        let mut sent = self.transmit(request, options).await?;
        if sent.0.status() == http::StatusCode::UNAUTHORIZED {
            if let Some(again) = retry {
                sent = self
                    .resend_after_401(again, used, options)
                    .await?
                    .unwrap_or(sent);
            }
        }
        let (response, io) = sent;
        let response = self.limit_response(response)?;
        let response = match (fault, &self.faults) {
            (Some(fault), _) if response.status() == http::StatusCode::OK => {
                damage(response, fault).await?
            }
            (Some(fault), Some(faults)) => {
                faults.put_back(fault);
                response
            }
            _ => response,
        };
        Ok((response, io))
    }

    /// Refuses a request to anything but the endpoint, or past the run's cap.
    fn allow(&self, request: &http::Request<WasiBody>) -> Result<(), HttpError> {
        if !self.origin.matches(request.uri()) {
            self.counters.add(|c| &c.denied, 1);
            tracing::warn!(
                target: "egress",
                uri = %redact_query(request.uri()),
                allowed = %self.origin,
                "request denied: not the configured endpoint"
            );
            return Err(HttpError::HttpRequestDenied);
        }
        if !self.counters.grant_request(self.limits.max_requests) {
            tracing::warn!(target: "egress", cap = self.limits.max_requests, "request denied: the run reached its request cap");
            return Err(HttpError::ConnectionLimitReached);
        }
        Ok(())
    }

    /// Removes whatever credential the component set and attaches the
    /// host's; returns the OAuth token used, if any.
    async fn attach_credential(
        &self,
        request: &mut http::Request<WasiBody>,
    ) -> Result<Option<http::HeaderValue>, HttpError> {
        let guarded = self.credential.guarded_header();
        let headers = request.headers_mut();
        for name in [AUTHORIZATION, COOKIE].into_iter().chain(guarded) {
            headers.remove(name);
        }
        self.apply_credential(headers).await
    }

    /// Sets the credential on `headers`; when there is none to be had, the
    /// request fails and the reason is kept for the run.
    async fn apply_credential(
        &self,
        headers: &mut http::HeaderMap,
    ) -> Result<Option<http::HeaderValue>, HttpError> {
        self.credential.apply(headers).await.map_err(|reason| {
            let error = HttpError::InternalError(Some(format!(
                "the host has no credential for the request: {reason}"
            )));
            self.credential_failure.record(reason);
            error
        })
    }

    /// Waits for the rate budget, then sends; counts the request and tells
    /// the pacer what the server said.
    async fn transmit(
        &self,
        request: http::Request<WasiBody>,
        options: RequestOptions,
    ) -> Result<Sent, HttpError> {
        self.admit().await?;
        self.counters.add(|c| &c.requests, 1);
        tracing::debug!(target: "egress", uri = %redact_query(request.uri()), "request");
        let sent = self.sender.send(request, options).await;
        let sent = sent.inspect_err(|_| self.pacer.failed())?;
        self.pacer.observe(sent.0.headers());
        Ok(sent)
    }

    /// Sends `again` with a fresh token after a 401 under `used`, when the
    /// cap allows one more request and the credential could be renewed.
    async fn resend_after_401(
        &self,
        mut again: http::Request<WasiBody>,
        used: Option<http::HeaderValue>,
        options: RequestOptions,
    ) -> Result<Option<Sent>, HttpError> {
        // The resend is a request like any other: the cap applies.
        if !self.counters.grant_request(self.limits.max_requests)
            || !self.credential.refused(used.as_ref()).await
        {
            return Ok(None);
        }
        self.apply_credential(again.headers_mut()).await?;
        self.transmit(again, options).await.map(Some)
    }

    /// Refuses a body declared over the cap before any byte is read, cuts
    /// off an undeclared one when it passes the cap, and strips the headers
    /// the component may not see.
    fn limit_response(
        &self,
        mut response: http::Response<WasiBody>,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let max = self.limits.max_body_bytes;
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = declared.filter(|l| *l > max) {
            return Err(HttpError::HttpResponseBodySize(Some(length)));
        }
        let guarded = self.credential.guarded_header();
        strip_forbidden(response.headers_mut(), guarded.as_ref());
        let counters = self.counters.clone();
        Ok(response.map(move |body| {
            CappedBody {
                inner: body,
                seen: 0,
                max,
                counters,
            }
            .boxed_unsync()
        }))
    }
}

/// The error a request meets when the run stopped while it waited.
fn stopped() -> wasmtime_wasi_http::Error {
    wasmtime_wasi_http::Error::InternalError(Some(
        "the sync was stopped while the request waited for the rate budget".into(),
    ))
}

/// Removes the headers the guest may not see.
fn strip_forbidden(headers: &mut http::HeaderMap, guarded: Option<&HeaderName>) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_forbidden_header(n) || guarded == Some(*n))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// A whole response body of `bytes`.
fn full_body(bytes: Bytes) -> WasiBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The answer for a fault that sends nothing; `None` for faults that damage a real answer.
fn synthetic_response(fault: Fault) -> Option<http::Response<WasiBody>> {
    let (status, retry_after) = match fault {
        Fault::TooManyRequests(retry_after) => (429, retry_after),
        Fault::Unavailable => (503, None),
        Fault::TruncatedBody | Fault::ResetMidBody => return None,
    };
    let mut response = http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(seconds) = retry_after {
        response = response.header(http::header::RETRY_AFTER, seconds);
    }
    let body = format!("{{\"error\":\"HTTP {status} injected by the host\"}}");
    response.body(full_body(Bytes::from(body))).ok()
}

/// The real answer with its body cut in half, either cleanly (a malformed
/// body) or by a failing connection.
async fn damage(
    response: http::Response<WasiBody>,
    fault: Fault,
) -> Result<http::Response<WasiBody>, wasmtime_wasi_http::Error> {
    let (mut parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let half = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let body = match fault {
        Fault::ResetMidBody => {
            let frames = vec![
                Ok(Frame::data(half)),
                Err(wasmtime_wasi_http::Error::ConnectionTerminated),
            ];
            http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
        }
        _ => full_body(half),
    };
    Ok(http::Response::from_parts(parts, body))
}

/// Logs only the path of a URI: queries can be long and are not needed to
/// diagnose a denial.
fn redact_query(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map_or("?", |a| a.as_str()),
        uri.path()
    )
}

/// A response body that fails once it exceeds `max` bytes and counts what it passes on.
struct CappedBody {
    inner: WasiBody,
    seen: u64,
    max: u64,
    counters: Arc<EgressCounters>,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    this.counters.add(|c| &c.bytes, data.len() as u64);
                    if this.seen > this.max {
                        return Poll::Ready(Some(Err(
                            wasmtime_wasi_http::Error::HttpResponseBodySize(Some(this.seen)),
                        )));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_cap_grants_exactly_its_number_to_concurrent_callers() {
        let run = Arc::new(EgressCounters::default());
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let granted: u64 = (0..8)
            .map(|_| {
                let (partition, barrier) = (EgressCounters::child(&run), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..5).filter(|_| partition.grant_request(3)).count() as u64
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(granted, 3);
        assert!(!run.grant_request(3));
    }

    #[test]
    fn forbidden_headers() {
        for h in [
            "authorization",
            "cookie",
            "set-cookie",
            "host",
            "proxy-authorization",
        ] {
            assert!(is_forbidden_header(&HeaderName::from_static(h)), "{h}");
        }
        assert!(!is_forbidden_header(&HeaderName::from_static("accept")));
    }
}
