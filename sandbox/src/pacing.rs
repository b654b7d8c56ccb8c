//! Pacing requests so a sync stays inside the source's rate limits.
//!
//! One [`Pacer`] is shared by every partition of a run:
//! - when responses carry `X-RateLimit-Limit` and `X-RateLimit-Reset` (Unix
//!   seconds of the next window), the host counts its requests in the
//!   window and, once the limit is spent, waits for the reset instead of
//!   collecting 429s; the wait is measured against the server's `Date`
//!   header, so a skewed local clock does not matter;
//! - an optional `requests_per_hour` budget spaces requests evenly;
//! - a cool-down (after a 429) holds every partition, not only the one refused.
//!
//! The rate limit belongs to the source's user, not to one process: with
//! [`Pacer::shared`] the state lives behind a [`SharedPacing`] (the
//! database that workers serving one connection share) and every decision
//! is taken on it under its lock, on its clock.

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// What a pacer knows of the source's rate budget. Times are milliseconds
/// on one clock: the process's own, or the shared state's.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PacingState {
    /// Requests the server allows per window, once it said.
    limit: Option<u64>,
    /// The server's `X-RateLimit-Reset` of the current window.
    window_reset: Option<u64>,
    /// Requests counted in the current window.
    sent_in_window: u64,
    /// Requests sent whose response has not been observed yet.
    in_flight: u64,
    /// When the current window ends.
    window_ends_ms: Option<u64>,
    /// Until when a 429 holds every request.
    cool_until_ms: Option<u64>,
    /// The next slot of the even spacing of `requests_per_hour`.
    next_slot_ms: Option<u64>,
}

/// A rate budget's state shared by processes (every worker serving one
/// connection).
pub trait SharedPacing: Send + Sync {
    /// Runs `update` on the state under a lock that holds across processes,
    /// with the shared clock's time (milliseconds), and keeps what it left;
    /// an error says why the state could not be reached.
    fn update(&self, update: &mut dyn FnMut(&mut PacingState, u64)) -> Result<(), String>;
}

/// What [`Pacer::before_request`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send the request (it is counted).
    Go,
    /// The run was stopped while waiting.
    Stopped,
    /// The budget returns only at this time, later than the run waits.
    BudgetReturnsAt(SystemTime),
}

impl PacingState {
    /// Counts a request and returns `None` when it may go now; else how long
    /// it must wait.
    fn admit(&mut self, now: u64, spacing: Option<Duration>) -> Option<Duration> {
        let mut until: Option<u64> = self.cool_until_ms.filter(|t| *t > now);
        if let (Some(limit), Some(ends)) = (self.limit, self.window_ends_ms) {
            if ends <= now {
                // Requests still in flight may reach the server in the new
                // window, and be counted there.
                self.sent_in_window = self.in_flight;
                self.window_ends_ms = None;
            } else if self.sent_in_window >= limit {
                until = until.max(Some(ends));
            }
        }
        if let Some(slot) = self.next_slot_ms.filter(|slot| *slot > now) {
            until = until.max(Some(slot));
        }
        if let Some(t) = until {
            return Some(Duration::from_millis(t - now));
        }
        self.sent_in_window += 1;
        self.in_flight += 1;
        if let Some(spacing) = spacing {
            self.next_slot_ms = Some(now + spacing.as_millis() as u64);
        }
        None
    }

    /// A counted request got no response.
    fn failed(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// A counted request's response told the window (or nothing).
    fn observe(&mut self, now: u64, window: Option<Window>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(window) = window else {
            return;
        };
        match self.window_reset {
            // A late answer to a request the server counted in an earlier
            // window: it says nothing of the current one (and taking it for a
            // new window would forget the requests counted since).
            Some(current) if window.reset < current => return,
            Some(current) if window.reset == current => {}
            _ => {
                // A new window: this response's request counts in it, and so
                // may every request still in flight.
                self.window_reset = Some(window.reset);
                self.sent_in_window = self.sent_in_window.min(1 + self.in_flight);
            }
        }
        self.limit = Some(window.limit);
        self.window_ends_ms = Some(now + window.remaining.as_millis() as u64);
    }

    /// Holds every request for `duration` from `now`.
    fn cool_down(&mut self, now: u64, duration: Duration) {
        let until = now + duration.as_millis() as u64;
        self.cool_until_ms = self.cool_until_ms.max(Some(until));
    }
}

/// A window a response's rate-limit headers tell.
#[derive(Debug, Clone, Copy)]
struct Window {
    limit: u64,
    reset: u64,
    /// Time until it resets (by the server's clock).
    remaining: Duration,
}

impl Window {
    /// The window `headers` tell, if they tell one.
    fn of(headers: &HeaderMap) -> Option<Window> {
        let limit = header_u64(headers, "x-ratelimit-limit")?;
        let reset = header_u64(headers, "x-ratelimit-reset")?;
        let server_now = headers
            .get(http::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .unwrap_or_else(SystemTime::now)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // A second of margin: the reset is given in whole seconds.
        let remaining = Duration::from_secs(reset.saturating_sub(server_now) + 1);
        Some(Window {
            limit,
            reset,
            remaining,
        })
    }
}

/// Time an instance spent waiting for the rate budget, so that those waits
/// do not count against its call time-out (overlapping waits count once),
/// and the wait it was refused, if any.
#[derive(Debug, Default)]
pub struct WaitClock {
    /// Waits in progress, since when, and the total of the finished ones.
    state: Mutex<(u32, Option<Instant>, Duration)>,
    /// When the budget returns, if this instance's last request was refused
    /// a wait for it (taken by [`WaitClock::take_refusal`]).
    refused_until: Mutex<Option<SystemTime>>,
}

impl WaitClock {
    /// When the budget returns, if this instance's request was refused a
    /// wait that long since the last call; clears it.
    pub fn take_refusal(&self) -> Option<SystemTime> {
        self.refused_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Time waited so far, the wait in progress included.
    pub fn waited(&self) -> Duration {
        let (_, since, total) = *self.state.lock().unwrap_or_else(|p| p.into_inner());
        total + since.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// Counts the time until the guard is dropped.
    fn waiting(&self) -> impl Drop + '_ {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.0 == 0 {
                s.1 = Some(Instant::now());
            }
            s.0 += 1;
        }
        WaitGuard(self)
    }
}

struct WaitGuard<'a>(&'a WaitClock);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 -= 1;
        if s.0 == 0 {
            if let Some(since) = s.1.take() {
                s.2 += since.elapsed();
            }
        }
    }
}

/// The pacing of one run (of one connection, on every worker serving it
/// when shared).
pub struct Pacer {
    spacing: Option<Duration>,
    /// The state when it is this process's alone (or the shared one cannot
    /// be reached), on the clock of `started`.
    local: Mutex<PacingState>,
    started: Instant,
    shared: Option<Arc<dyn SharedPacing>>,
    waits: AtomicU64,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("spacing", &self.spacing)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl Pacer {
    /// A pacer of this process's own, with an optional budget of requests
    /// per hour.
    pub fn new(requests_per_hour: Option<u32>) -> Pacer {
        Pacer {
            spacing: requests_per_hour
                .filter(|n| *n > 0)
                .map(|n| Duration::from_secs_f64(3600.0 / f64::from(n))),
            local: Mutex::new(PacingState::default()),
            started: Instant::now(),
            shared: None,
            waits: AtomicU64::new(0),
        }
    }

    /// A pacer whose state is `shared` with other processes.
    pub fn shared(requests_per_hour: Option<u32>, shared: Arc<dyn SharedPacing>) -> Pacer {
        Pacer {
            shared: Some(shared),
            ..Pacer::new(requests_per_hour)
        }
    }

    /// Runs `f` on the state with its clock's time: the shared state when
    /// there is one (this process's own when it cannot be reached: pacing
    /// goes on, and the failure is logged).
    fn with_state<R>(&self, f: impl FnOnce(&mut PacingState, u64) -> R) -> R {
        let mut f = Some(f);
        let mut result = None;
        if let Some(shared) = &self.shared {
            let outcome = shared.update(&mut |state, now| {
                if let Some(f) = f.take() {
                    result = Some(f(state, now));
                }
            });
            if let Err(e) = outcome {
                tracing::warn!("the shared rate-limit state cannot be reached, pacing alone: {e}");
            }
        }
        if let Some(result) = result {
            return result;
        }
        let f = f.expect("run once");
        let now = self.started.elapsed().as_millis() as u64;
        f(
            &mut self.local.lock().unwrap_or_else(|p| p.into_inner()),
            now,
        )
    }

    /// Waits until a request may be sent, and counts it. The wait ends early
    /// when `stop` is triggered; it is refused when it would last longer than
    /// `max_wait`; `clock` counts it.
    pub async fn before_request(
        &self,
        stop: Option<&crate::stop::StopSignal>,
        max_wait: Option<Duration>,
        clock: &WaitClock,
    ) -> Admission {
        loop {
            let Some(wait) = self.with_state(|state, now| state.admit(now, self.spacing)) else {
                return Admission::Go;
            };
            if max_wait.is_some_and(|max| wait > max) {
                let at = SystemTime::now() + wait;
                *clock
                    .refused_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(at);
                return Admission::BudgetReturnsAt(at);
            }
            self.waits.fetch_add(1, Ordering::Relaxed);
            let wait_until = Instant::now() + wait;
            let _waiting = clock.waiting();
            match stop {
                Some(stop) => {
                    if stop.sleep_until(wait_until).await {
                        return Admission::Stopped;
                    }
                }
                None => tokio::time::sleep_until(wait_until).await,
            }
        }
    }

    /// Records that a request counted by [`Pacer::before_request`] got no response.
    pub fn failed(&self) {
        self.with_state(|state, _| state.failed());
    }

    /// Learns the window from a response's rate-limit headers.
    pub fn observe(&self, headers: &HeaderMap) {
        let window = Window::of(headers);
        // One critical section: with partitions on several threads (and
        // workers), responses are observed concurrently, and a count of the
        // requests in flight taken between two locks would miss those
        // answered in between.
        self.with_state(|state, now| state.observe(now, window));
    }

    /// Holds every request for `duration` (after a 429).
    pub fn cool_down(&self, duration: Duration) {
        self.with_state(|state, now| state.cool_down(now, duration));
    }

    /// How many times a request of this process had to wait.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(limit: u64, reset_in: u64) -> HeaderMap {
        let now = SystemTime::now();
        let reset = now.duration_since(UNIX_EPOCH).unwrap().as_secs() + reset_in;
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit", limit.into());
        h.insert("x-ratelimit-reset", reset.into());
        h.insert(
            http::header::DATE,
            httpdate::fmt_http_date(now).parse().unwrap(),
        );
        h
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_the_window_once_the_limit_is_spent() {
        let p = Pacer::new(None);
        p.before_request(None, None, &WaitClock::default()).await;
        p.observe(&headers(2, 10));
        p.before_request(None, None, &WaitClock::default()).await;
        assert_eq!(p.waits(), 0);
        let started = Instant::now();
        p.before_request(None, None, &WaitClock::default()).await;
        assert!(
            started.elapsed() >= Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(p.waits(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_answer_from_the_previous_window_keeps_the_count() {
        let p = Pacer::new(None);
        for _ in 0..3 {
            p.before_request(None, None, &WaitClock::default()).await;
        }
        // Answers arrive out of order across the server's window boundary.
        p.observe(&headers(3, 20));
        p.observe(&headers(3, 1));
        p.observe(&headers(3, 20));
        let started = Instant::now();
        p.before_request(None, None, &WaitClock::default()).await;
        assert_eq!(p.waits(), 1, "the three requests of the new window count");
        assert!(started.elapsed() >= Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_at_the_window_end_counts_in_the_next_window() {
        let p = Pacer::new(None);
        p.before_request(None, None, &WaitClock::default()).await;
        p.before_request(None, None, &WaitClock::default()).await;
        // The first answer tells the window; the second request is still in flight.
        p.observe(&headers(2, 10));
        tokio::time::sleep(Duration::from_secs(12)).await;
        // The window ended here; the late request may count in the next one.
        p.before_request(None, None, &WaitClock::default()).await;
        assert_eq!(p.waits(), 0);
        // Its answer comes from the next window: together with the request
        // just sent, that window's two requests are spent.
        p.observe(&headers(2, 20));
        let started = Instant::now();
        p.before_request(None, None, &WaitClock::default()).await;
        assert_eq!(
            p.waits(),
            1,
            "a third request would exceed the next window's limit"
        );
        assert!(started.elapsed() >= Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_wait_for_the_budget() {
        let p = Pacer::new(None);
        p.cool_down(Duration::from_secs(3600));
        let stop = crate::stop::StopSignal::default();
        stop.trigger();
        let started = Instant::now();
        assert_eq!(
            p.before_request(Some(&stop), None, &WaitClock::default())
                .await,
            Admission::Stopped
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_are_clocked_and_too_long_ones_refused() {
        let p = Pacer::new(None);
        let clock = WaitClock::default();
        p.cool_down(Duration::from_secs(30));
        let max = Some(Duration::from_secs(60));
        assert_eq!(p.before_request(None, max, &clock).await, Admission::Go);
        assert!(
            clock.waited() >= Duration::from_secs(30),
            "{:?}",
            clock.waited()
        );
        p.cool_down(Duration::from_secs(600));
        let Admission::BudgetReturnsAt(at) = p.before_request(None, max, &clock).await else {
            panic!("a ten-minute wait is longer than the run waits");
        };
        assert_eq!(clock.take_refusal(), Some(at));
        assert_eq!(clock.take_refusal(), None, "a refusal is reported once");
    }

    #[tokio::test(start_paused = true)]
    async fn cool_down_and_budget_hold_requests() {
        let p = Pacer::new(Some(3600));
        p.before_request(None, None, &WaitClock::default()).await;
        let started = Instant::now();
        p.before_request(None, None, &WaitClock::default()).await;
        assert!(started.elapsed() >= Duration::from_secs(1));
        p.cool_down(Duration::from_secs(30));
        let started = Instant::now();
        p.before_request(None, None, &WaitClock::default()).await;
        assert!(started.elapsed() >= Duration::from_secs(30));
    }

    /// A state pacers share, as workers share the database's.
    struct InMemory {
        state: Mutex<PacingState>,
        started: Instant,
        reachable: bool,
    }

    impl InMemory {
        fn new(reachable: bool) -> Arc<InMemory> {
            Arc::new(InMemory {
                state: Mutex::new(PacingState::default()),
                started: Instant::now(),
                reachable,
            })
        }
    }

    impl SharedPacing for InMemory {
        fn update(&self, update: &mut dyn FnMut(&mut PacingState, u64)) -> Result<(), String> {
            if !self.reachable {
                return Err("connection refused".into());
            }
            let now = self.started.elapsed().as_millis() as u64;
            update(&mut self.state.lock().unwrap(), now);
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pacers_sharing_a_state_spend_one_window_and_one_cool_down() {
        let shared = InMemory::new(true);
        let a = Pacer::shared(None, shared.clone());
        let b = Pacer::shared(None, shared.clone());
        for pacer in [&a, &b, &a] {
            pacer
                .before_request(None, None, &WaitClock::default())
                .await;
            pacer.observe(&headers(3, 10));
        }
        // The window's three requests are spent by both together.
        let started = Instant::now();
        b.before_request(None, None, &WaitClock::default()).await;
        assert_eq!((a.waits(), b.waits()), (0, 1));
        assert!(started.elapsed() >= Duration::from_secs(10));
        b.observe(&headers(3, 20));
        // A 429 one of them got holds the other.
        a.cool_down(Duration::from_secs(30));
        let started = Instant::now();
        b.before_request(None, None, &WaitClock::default()).await;
        assert!(started.elapsed() >= Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_shared_state_leaves_the_pacer_pacing_alone() {
        let p = Pacer::shared(None, InMemory::new(false));
        p.before_request(None, None, &WaitClock::default()).await;
        p.observe(&headers(1, 10));
        let started = Instant::now();
        p.before_request(None, None, &WaitClock::default()).await;
        assert_eq!(p.waits(), 1);
        assert!(started.elapsed() >= Duration::from_secs(10));
    }
}
