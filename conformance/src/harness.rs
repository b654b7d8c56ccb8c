//! Instances of the connector under test, as `sync` makes them, and whole
//! reads of a stream through them.

use connector_sandbox::config::Config;
use connector_sandbox::credentials::Credential;
use connector_sandbox::egress::{EgressCounters, EgressLimits, EgressPolicy, FaultInjector};
use connector_sandbox::origin::Origin;
use connector_sandbox::pacing::Pacer;
use connector_sandbox::runtime::{
    CallError, CheckReport, ConnectorError, ConnectorInfo, ConnectorInstance, InstanceLimits,
    LoadedComponent, Page, Partition, ReadRequest, Runtime,
};
use connector_sandbox::sender::Sender;
use std::sync::Arc;
use std::time::Duration;

/// Most pages one read of a partition may take before it counts as endless.
pub const MAX_PAGES: usize = 2_000;
/// Attempts per page when the source answers rate-limited or temporarily unavailable.
const ATTEMPTS: u32 = 5;
/// Longest `Retry-After` a conformance read waits for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The connector under test, its source and what the host holds for it.
pub struct Harness {
    /// The process's runtime.
    pub runtime: &'static Runtime,
    /// The component.
    pub component: LoadedComponent,
    /// Its `info`.
    pub info: ConnectorInfo,
    /// The configuration (settings, `[auth]`, page size).
    pub config: Config,
    /// The endpoint's origin.
    pub origin: Origin,
    /// How requests reach the source.
    pub sender: Arc<Sender>,
    /// The configured credential.
    pub credential: Credential,
    /// Sandbox limits.
    pub limits: InstanceLimits,
    /// Egress caps.
    pub egress_limits: EgressLimits,
    /// Every instance's counters add into these (forbidden headers, denials).
    pub totals: Arc<EgressCounters>,
}

/// An instance with its own counters.
pub struct Probe {
    /// The instance.
    pub instance: ConnectorInstance,
    /// Its requests, denials and forbidden-header attempts.
    pub counters: Arc<EgressCounters>,
}

/// One page as a read saw it.
#[derive(Debug, Clone)]
pub struct SeenPage {
    /// The records, as JSON text.
    pub records: Vec<String>,
    /// The cursor that followed it.
    pub next_cursor: Option<String>,
    /// The watermark it carried.
    pub watermark: Option<String>,
}

/// How a whole read of a partition went.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// Its pages, in order.
    pub pages: Vec<SeenPage>,
    /// Whether the last cursor was none (else a cursor repeated, or the
    /// read hit [`MAX_PAGES`]).
    pub ended: bool,
}

impl Read {
    /// Every record of the read, in order.
    pub fn records(&self) -> impl Iterator<Item = &String> {
        self.pages.iter().flat_map(|p| p.records.iter())
    }
}

/// Where a read starts.
#[derive(Debug, Clone)]
pub struct ReadSpec<'a> {
    /// The stream.
    pub stream: &'a str,
    /// The partition.
    pub partition: Partition,
    /// Rows per page asked for.
    pub page_size: u32,
    /// Cursor to start from (none: the beginning).
    pub cursor: Option<String>,
    /// Incremental watermark.
    pub watermark: Option<String>,
}

impl Harness {
    /// A fresh instance with `credential`, and `faults` when given.
    pub async fn probe(
        &self,
        credential: Credential,
        faults: Option<Arc<FaultInjector>>,
    ) -> Result<Probe, String> {
        let counters = EgressCounters::child(&self.totals);
        let mut egress = EgressPolicy::new(
            self.origin.clone(),
            self.sender.clone(),
            credential,
            self.egress_limits,
            counters.clone(),
            Arc::new(Pacer::new(None)),
        );
        if let Some(faults) = faults {
            egress = egress.with_faults(faults);
        }
        let instance = self
            .runtime
            .instantiate(&self.component, egress, &self.limits)
            .await
            .map_err(|e| format!("{e:#}"))?;
        Ok(Probe { instance, counters })
    }

    /// Reads a partition from `spec.cursor` to its end (or [`MAX_PAGES`]),
    /// retrying what the contract says is retryable.
    pub async fn read(&self, spec: &ReadSpec<'_>) -> Result<Read, String> {
        let mut probe = self.probe(self.credential.clone(), None).await?;
        let mut read = Read::default();
        let mut cursor = spec.cursor.clone();
        while read.pages.len() < MAX_PAGES {
            let request = ReadRequest {
                stream_name: spec.stream.to_string(),
                partition: spec.partition,
                cursor: cursor.clone(),
                watermark: spec.watermark.clone(),
                deletions_since: None,
                page_size: spec.page_size,
            };
            let page = self.read_page(&mut probe.instance, &request).await?;
            // The same cursor again makes no progress: it would never end.
            let stuck = page.next_cursor.is_some() && page.next_cursor == cursor;
            cursor = page.next_cursor.clone();
            read.pages.push(SeenPage {
                records: page.records,
                next_cursor: page.next_cursor,
                watermark: page.watermark,
            });
            if cursor.is_none() {
                read.ended = true;
                break;
            }
            if stuck {
                break;
            }
        }
        Ok(read)
    }

    /// `check`, retried while the source is rate-limited or unavailable.
    pub async fn check(
        &self,
        instance: &mut ConnectorInstance,
        settings: &[(String, String)],
    ) -> Result<CheckReport, CallError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = instance.check(settings).await;
            match retry_wait(&result, attempt) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return result,
            }
        }
    }

    /// One page, retried while the source is rate-limited or unavailable.
    async fn read_page(
        &self,
        instance: &mut ConnectorInstance,
        request: &ReadRequest,
    ) -> Result<Page, String> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = instance.read(&self.config.settings, request).await;
            match retry_wait(&result, attempt) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => {
                    return result.map_err(|e| {
                        format!(
                            "reading `{}` (partition {} of {}) failed: {e}",
                            request.stream_name, request.partition.index, request.partition.count
                        )
                    })
                }
            }
        }
    }
}

/// How long to wait before attempt `attempt + 1`, when the contract says the
/// failure is retryable and attempts remain.
fn retry_wait<T>(result: &Result<T, CallError>, attempt: u32) -> Option<Duration> {
    if attempt >= ATTEMPTS {
        return None;
    }
    let wait = match result {
        Err(CallError::Connector(ConnectorError::RateLimited(r))) => {
            Duration::from_secs(r.retry_after_seconds.map_or(1, u64::from))
        }
        Err(CallError::Connector(ConnectorError::TemporarilyUnavailable(_))) => {
            Duration::from_millis(100 << attempt)
        }
        _ => return None,
    };
    (wait <= MAX_RETRY_AFTER).then_some(wait)
}
