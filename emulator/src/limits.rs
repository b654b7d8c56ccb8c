//! Inbound REST rate limiting and the API semaphore, as ServiceNow does them.
//!
//! - Rate-limit rules allow a number of requests per user per window (an
//!   hour on ServiceNow). Every answer to a user a rule covers carries
//!   `X-RateLimit-Limit`, `X-RateLimit-Reset` (Unix seconds of the next
//!   window) and `X-RateLimit-Rule`; once the count is spent the answer is
//!   429 with `Retry-After`.
//! - The semaphore runs a few requests at once and queues a few more; past
//!   the queue a request is refused with a bare 429 (no rate-limit headers).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A rate-limit rule (`sys_rate_limit_rules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRule {
    /// The rule's sys_id (sent as `X-RateLimit-Rule`).
    pub sys_id: String,
    /// The user it applies to; `None` applies to every user without a rule of their own.
    pub user: Option<String>,
    /// Requests allowed per window.
    pub limit: u32,
}

/// The outcome of counting one request against the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateDecision {
    /// No rule covers the user.
    Unlimited,
    /// Allowed; the headers to send.
    Allowed(Vec<(&'static str, String)>),
    /// Refused; the headers to send with the 429.
    Refused(Vec<(&'static str, String)>),
}

/// Rules and per-user counters.
#[derive(Debug)]
pub struct RateLimits {
    rules: Vec<RateRule>,
    window: Duration,
    counts: HashMap<String, (u64, u32)>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl RateLimits {
    /// No rules; windows of `window` (ServiceNow: one hour).
    pub fn new(window: Duration) -> Self {
        RateLimits {
            rules: Vec::new(),
            window: window.max(Duration::from_secs(1)),
            counts: HashMap::new(),
        }
    }

    /// Adds a rule.
    pub fn add(&mut self, rule: RateRule) {
        self.rules.push(rule);
    }

    /// Moves the rules of `other` into this one (counters start afresh).
    pub fn take_rules_from(&mut self, other: RateLimits) {
        self.rules.extend(other.rules);
    }

    /// Counts a request by `user`.
    pub fn check(&mut self, user: &str) -> RateDecision {
        let rule = self
            .rules
            .iter()
            .find(|r| r.user.as_deref() == Some(user))
            .or_else(|| self.rules.iter().find(|r| r.user.is_none()));
        let Some(rule) = rule else {
            return RateDecision::Unlimited;
        };
        let window = self.window.as_secs();
        let now = unix_now();
        let window_start = now - now % window;
        let reset = window_start + window;
        let entry = self
            .counts
            .entry(user.to_string())
            .or_insert((window_start, 0));
        if entry.0 != window_start {
            *entry = (window_start, 0);
        }
        let mut headers = vec![
            ("x-ratelimit-limit", rule.limit.to_string()),
            ("x-ratelimit-reset", reset.to_string()),
            ("x-ratelimit-rule", rule.sys_id.clone()),
        ];
        if entry.1 >= rule.limit {
            headers.push(("retry-after", (reset - now).max(1).to_string()));
            RateDecision::Refused(headers)
        } else {
            entry.1 += 1;
            RateDecision::Allowed(headers)
        }
    }
}

/// A bounded pool of request slots with a bounded queue.
#[derive(Debug)]
pub struct ApiSemaphore {
    slots: Option<Semaphore>,
    queue_depth: usize,
    waiting: AtomicUsize,
}

impl ApiSemaphore {
    /// `concurrent` slots (None: unlimited) and `queue_depth` waiting places.
    pub fn new(concurrent: Option<usize>, queue_depth: usize) -> Self {
        ApiSemaphore {
            slots: concurrent.map(|n| Semaphore::new(n.max(1))),
            queue_depth,
            waiting: AtomicUsize::new(0),
        }
    }

    /// A slot, waiting in the queue if needed; `None` when the queue is full.
    pub async fn enter(&self) -> Option<Option<SemaphorePermit<'_>>> {
        let Some(slots) = &self.slots else {
            return Some(None);
        };
        if let Ok(permit) = slots.try_acquire() {
            return Some(Some(permit));
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue_depth {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let permit = slots.acquire().await.ok();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        Some(permit)
    }
}

/// Shared, lockable rate limits.
pub type SharedRateLimits = Mutex<RateLimits>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_count_per_user_and_refuse_with_retry_after() {
        let mut r = RateLimits::new(Duration::from_secs(3600));
        assert_eq!(r.check("svc"), RateDecision::Unlimited);
        r.add(RateRule {
            sys_id: "r1".into(),
            user: Some("svc".into()),
            limit: 2,
        });
        r.add(RateRule {
            sys_id: "r0".into(),
            user: None,
            limit: 100,
        });
        assert!(
            matches!(r.check("svc"), RateDecision::Allowed(h) if h[0].1 == "2" && h[2].1 == "r1")
        );
        assert!(matches!(r.check("svc"), RateDecision::Allowed(_)));
        match r.check("svc") {
            RateDecision::Refused(h) => assert!(h
                .iter()
                .any(|(n, v)| *n == "retry-after" && v.parse::<u64>().unwrap() >= 1)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.check("other"), RateDecision::Allowed(h) if h[2].1 == "r0"));
    }
}
