//! Scripted faults: the ugly answers real instances give.

use std::collections::VecDeque;

/// One misbehaviour the emulator can produce instead of a normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After` (seconds) and the X-RateLimit headers.
    RateLimited {
        /// Seconds in `Retry-After`.
        retry_after: u32,
    },
    /// 429 with no headers (semaphore queue full).
    RateLimitedBare,
    /// A status with the JSON error envelope (500, 502, 503, ...).
    Status(u16),
    /// 503 with an HTML maintenance page.
    Html503,
    /// 200 with the hibernating-instance HTML page.
    Hibernating,
    /// 200 whose body is the start of the real answer followed by
    /// "Transaction cancelled: maximum execution time exceeded".
    TransactionCancelled,
    /// The connection breaks in the middle of the response body.
    ConnectionReset,
    /// The response headers come after this many milliseconds.
    SlowHeaders(u64),
    /// The body comes in small pieces with this many milliseconds between them.
    SlowBody(u64),
    /// 302 to this URL (a misconfigured proxy or SSO page would do this).
    Redirect(String),
    /// Every OAuth access token issued so far expires just before this
    /// request is authenticated (a token expiring in the middle of a sync).
    ExpireTokens,
    /// The OAuth application is deactivated just before this request is
    /// authenticated: every access and refresh token issued is revoked and
    /// the token endpoint refuses its client (an administrator revoking the
    /// integration in the middle of a sync).
    RevokeOAuth,
    /// The answer waits until [`crate::server::State::release_held`] is
    /// called: a test looks at a sync in the middle, without timing.
    Held,
}

/// Faults drawn at random (but reproducibly, from a seed) for a share of requests.
#[derive(Debug, Clone)]
pub struct RandomFaults {
    /// Share of requests that fail, 0.0–1.0.
    pub rate: f64,
    rng: crate::data::Rng,
}

impl RandomFaults {
    /// Faults for `rate` of the requests, drawn from `seed`.
    pub fn new(rate: f64, seed: u64) -> Self {
        RandomFaults {
            rate: rate.clamp(0.0, 1.0),
            rng: crate::data::Rng::new(seed),
        }
    }

    /// The fault for the next request, if it draws one. Every kind a client
    /// must survive by retrying: 5xx, HTML pages, bare 429s, cancelled
    /// transactions and broken connections.
    pub fn draw(&mut self) -> Option<Fault> {
        let roll = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        if roll >= self.rate {
            return None;
        }
        Some(match self.rng.below(6) {
            0 => Fault::Status(500),
            1 => Fault::Status(503),
            2 => Fault::Html503,
            3 => Fault::RateLimitedBare,
            4 => Fault::TransactionCancelled,
            _ => Fault::ConnectionReset,
        })
    }
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// The fault.
    pub fault: Fault,
    /// Only requests whose path contains this text (empty: all).
    pub path_contains: String,
    /// How many matching requests get the fault.
    pub times: u32,
    /// Matching requests to let through before the first fault.
    pub after: u32,
}

impl FaultRule {
    /// A fault for the next `times` requests to any path.
    pub fn next(fault: Fault, times: u32) -> Self {
        FaultRule {
            fault,
            path_contains: String::new(),
            times,
            after: 0,
        }
    }

    /// Restricts the rule to paths containing `text`.
    pub fn on_path(mut self, text: &str) -> Self {
        self.path_contains = text.into();
        self
    }

    /// Lets `n` matching requests through first.
    pub fn after(mut self, n: u32) -> Self {
        self.after = n;
        self
    }
}

/// Pending fault rules, consumed as requests arrive.
#[derive(Debug, Default)]
pub struct FaultQueue {
    rules: VecDeque<FaultRule>,
}

impl FaultQueue {
    /// Adds a rule.
    pub fn push(&mut self, rule: FaultRule) {
        self.rules.push_back(rule);
    }

    /// The fault for a request to `path`, if a rule fires.
    pub fn take(&mut self, path: &str) -> Option<Fault> {
        let index = self
            .rules
            .iter()
            .position(|r| r.path_contains.is_empty() || path.contains(&r.path_contains))?;
        self.fire(index)
    }

    /// The fault for a request to `path` from a rule that names it
    /// ([`FaultRule::on_path`]); rules for any path are left alone. The
    /// OAuth token endpoint takes its faults so: a rule for the next
    /// requests of a sync does not meet the token request before them.
    pub fn take_named(&mut self, path: &str) -> Option<Fault> {
        let index = self
            .rules
            .iter()
            .position(|r| !r.path_contains.is_empty() && path.contains(&r.path_contains))?;
        self.fire(index)
    }

    /// Counts a request against rule `index`: its fault, once the requests
    /// it lets through first have passed.
    fn fire(&mut self, index: usize) -> Option<Fault> {
        let rule = &mut self.rules[index];
        if rule.after > 0 {
            rule.after -= 1;
            return None;
        }
        let fault = rule.fault.clone();
        rule.times -= 1;
        if rule.times == 0 {
            self.rules.remove(index);
        }
        Some(fault)
    }

    /// Number of faults still pending.
    pub fn pending(&self) -> u32 {
        self.rules.iter().map(|r| r.times).sum()
    }

    /// Consumes the next rule for `path` only if it changes the tokens
    /// before the request is authenticated ([`Fault::ExpireTokens`],
    /// [`Fault::RevokeOAuth`]), and returns it.
    pub fn take_token_event(&mut self, path: &str) -> Option<Fault> {
        let next = self
            .rules
            .iter()
            .find(|r| r.path_contains.is_empty() || path.contains(&r.path_contains))?;
        let is_token_event = matches!(next.fault, Fault::ExpireTokens | Fault::RevokeOAuth);
        if is_token_event && next.after == 0 {
            return self.take(path);
        }
        None
    }
}

/// The page a hibernating developer instance serves.
pub const HIBERNATING_PAGE: &str = "<!DOCTYPE html><html><head><title>Instance Hibernating page</title></head><body><h1>Your instance is hibernating</h1><p>Sign in to the site to wake your instance.</p></body></html>";

/// What an instance's IP Address Access Control serves an address a Deny
/// rule covers and no Allow rule admits: an HTML page, not the Table API's
/// JSON error object. ServiceNow's node log records the same refusal as
/// "Security restricted: Access restricted (ADDRESS) not authorized".
/// The emulator sends it with HTTP 401, the status Microsoft's ServiceNow
/// connector troubleshooting lists the IP allow-list under
/// (`shared/reference/peer-connectors.md`, reference M1); the connector recognises
/// the page by its text, whatever the status.
pub const ACCESS_RESTRICTED_PAGE: &str = "<!DOCTYPE html><html><head><title>Access restricted</title></head><body><h1>Access restricted</h1><p>Access to this instance is restricted: your IP address is not authorized.</p></body></html>";

/// A maintenance page from a load balancer.
pub const MAINTENANCE_PAGE: &str = "<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1><p>The instance is down for maintenance.</p></body></html>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_faults_are_reproducible_and_near_their_rate() {
        let draw = |seed| {
            let mut f = RandomFaults::new(0.2, seed);
            (0..1000).map(|_| f.draw()).collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
        let hits = draw(9).iter().filter(|f| f.is_some()).count();
        assert!((150..250).contains(&hits), "{hits}");
        assert!(RandomFaults::new(0.0, 1).draw().is_none());
    }

    #[test]
    fn rules_fire_in_order_and_expire() {
        let mut q = FaultQueue::default();
        q.push(
            FaultRule::next(Fault::Status(503), 2)
                .on_path("adapter")
                .after(1),
        );
        assert_eq!(q.take("/api/now/table/cmdb_ci_computer"), None);
        assert_eq!(q.take("/api/now/table/cmdb_ci_network_adapter"), None);
        assert_eq!(
            q.take("/api/now/table/cmdb_ci_network_adapter"),
            Some(Fault::Status(503))
        );
        assert_eq!(q.pending(), 1);
        assert_eq!(q.take("/x/adapter"), Some(Fault::Status(503)));
        assert_eq!(q.take("/x/adapter"), None);
    }
}
