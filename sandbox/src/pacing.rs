//! Pacing requests so a sync stays inside the source's rate limits.
//!
//! One [`Pacer`] is shared by every worker of a run:
//! - when responses carry `X-RateLimit-Limit` and `X-RateLimit-Reset` (Unix
//!   seconds of the next window), the host counts its requests in the
//!   window and, once the limit is spent, waits for the reset instead of
//!   collecting 429s; the wait is measured against the server's `Date`
//!   header, so a skewed local clock does not matter;
//! - an optional `requests_per_hour` budget spaces requests evenly;
//! - a cool-down (after a 429) holds every worker, not only the one refused.

use http::HeaderMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

#[derive(Debug, Default)]
struct State {
    limit: Option<u64>,
    window_reset: Option<u64>,
    sent_in_window: u64,
    /// Requests sent whose response has not been observed yet.
    in_flight: u64,
    /// Local instant at which the current window resets.
    window_ends: Option<Instant>,
    cool_until: Option<Instant>,
    next_slot: Option<Instant>,
    waits: u64,
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

/// Shared pacing state of one run.
#[derive(Debug)]
pub struct Pacer {
    spacing: Option<Duration>,
    state: Mutex<State>,
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl Pacer {
    /// A pacer with an optional budget of requests per hour.
    pub fn new(requests_per_hour: Option<u32>) -> Pacer {
        Pacer {
            spacing: requests_per_hour
                .filter(|n| *n > 0)
                .map(|n| Duration::from_secs_f64(3600.0 / f64::from(n))),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
            let wait_until = {
                let mut s = self.lock();
                let now = Instant::now();
                let mut until: Option<Instant> = s.cool_until.filter(|t| *t > now);
                if let (Some(limit), Some(ends)) = (s.limit, s.window_ends) {
                    if ends <= now {
                        // Requests still in flight may reach the server in
                        // the new window, and be counted there.
                        s.sent_in_window = s.in_flight;
                        s.window_ends = None;
                    } else if s.sent_in_window >= limit {
                        until = until.max(Some(ends));
                    }
                }
                if let Some(slot) = s.next_slot.filter(|slot| *slot > now) {
                    until = until.max(Some(slot));
                }
                match until {
                    Some(t) if max_wait.is_some_and(|max| t - now > max) => {
                        let at = SystemTime::now() + (t - now);
                        *clock
                            .refused_until
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(at);
                        return Admission::BudgetReturnsAt(at);
                    }
                    Some(t) => {
                        s.waits += 1;
                        t
                    }
                    None => {
                        s.sent_in_window += 1;
                        s.in_flight += 1;
                        if let Some(spacing) = self.spacing {
                            s.next_slot = Some(now + spacing);
                        }
                        return Admission::Go;
                    }
                }
            };
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
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
    }

    /// Learns the window from a response's rate-limit headers.
    pub fn observe(&self, headers: &HeaderMap) {
        let window = match (
            header_u64(headers, "x-ratelimit-limit"),
            header_u64(headers, "x-ratelimit-reset"),
        ) {
            (Some(limit), Some(reset)) => {
                let server_now = headers
                    .get(http::header::DATE)
                    .and_then(|d| d.to_str().ok())
                    .and_then(|d| httpdate::parse_http_date(d).ok())
                    .unwrap_or_else(SystemTime::now)
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                // A second of margin: the reset is given in whole seconds.
                let remaining = Duration::from_secs(reset.saturating_sub(server_now) + 1);
                Some((limit, reset, remaining))
            }
            _ => None,
        };
        // One critical section: with partitions on several threads, responses
        // are observed concurrently, and a count of the requests in flight
        // taken between two locks would miss those answered in between.
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        let Some((limit, reset, remaining)) = window else {
            return;
        };
        match s.window_reset {
            // A late answer to a request the server counted in an earlier
            // window: it says nothing of the current one (and taking it for a
            // new window would forget the requests counted since).
            Some(current) if reset < current => return,
            Some(current) if reset == current => {}
            _ => {
                // A new window: this response's request counts in it, and so
                // may every request still in flight.
                s.window_reset = Some(reset);
                s.sent_in_window = s.sent_in_window.min(1 + s.in_flight);
            }
        }
        s.limit = Some(limit);
        s.window_ends = Some(Instant::now() + remaining);
    }

    /// Holds every worker for `duration` (after a 429).
    pub fn cool_down(&self, duration: Duration) {
        let mut s = self.lock();
        let until = Instant::now() + duration;
        s.cool_until = s.cool_until.max(Some(until));
    }

    /// How many times a request had to wait.
    pub fn waits(&self) -> u64 {
        self.lock().waits
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
}
