//! Loading and running connector components on wasmtime.
//!
//! One [`Runtime`] per process: an [`Engine`] with epoch interruption (a
//! ticker thread advances the epoch every 10 ms), a [`Linker`] with WASI p2,
//! `wasi:http` and the contract's `log` import, and an in-memory plus on-disk
//! cache of compiled components keyed by the component's SHA-256 and the
//! engine's compatibility hash. Each [`ConnectorInstance`] has its own
//! [`Store`] with memory limits, a CPU budget per call (epoch ticks while
//! wasm runs) and a wall-clock time-out per call.

use crate::egress::{EgressCounters, EgressPolicy};
use crate::oauth::TokenError;
use anyhow::{anyhow, bail, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The contract's bindings, generated from `wit/` (undocumented items are
/// the WIT's, documented there).
#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "connector",
        imports: { default: async },
        exports: { default: async },
        // The WASI interfaces the world imports are wasmtime's own.
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
            "wasi:cli": wasmtime_wasi::p2::bindings::cli,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        },
    });
}
pub use bindings::*;

/// Facts read from `wit/` at build time (see `build.rs`).
mod contract {
    include!(concat!(env!("OUT_DIR"), "/contract.rs"));
}
pub use contract::{CONTRACT_VERSION, RUNTIME_WORLD_IMPORTS, WORLD_IMPORTS};

pub use exposure::connector::types::{
    AuthMethod, CheckReport, ConnectorError, ConnectorInfo, Oauth2Grant, Page, Partition,
    ReadRequest, StreamInfo,
};

/// How often the epoch advances.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Most log lines kept per instance.
const MAX_LOG_LINES: usize = 1000;
/// Longest log line kept.
const MAX_LOG_LINE: usize = 2048;
/// Guest stderr kept (panic messages).
const STDERR_CAPACITY: usize = 64 * 1024;

/// Sandbox limits of one instance.
#[derive(Debug, Clone)]
pub struct InstanceLimits {
    /// Linear memory, bytes.
    pub memory_bytes: usize,
    /// Wall clock per call.
    pub call_timeout: Duration,
    /// CPU (wasm execution) per call.
    pub cpu_per_call: Duration,
}

impl Default for InstanceLimits {
    fn default() -> Self {
        InstanceLimits {
            memory_bytes: 512 << 20,
            call_timeout: Duration::from_secs(600),
            cpu_per_call: Duration::from_secs(120),
        }
    }
}

/// Per-instance host state.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    egress: EgressPolicy,
    limits: StoreLimits,
    logs: Vec<(String, String)>,
    stderr: MemoryOutputPipe,
    cpu_ticks: u64,
    max_cpu_ticks: u64,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

impl exposure::connector::types::Host for HostState {}

impl exposure::connector::log::Host for HostState {
    async fn log(&mut self, level: exposure::connector::log::Level, message: String) {
        use exposure::connector::log::Level;
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        tracing::info!(target: "component", level, "{message}");
        if self.logs.len() < MAX_LOG_LINES {
            self.logs.push((level.to_string(), message));
        }
    }
}

/// A compiled component, checked against the contract.
#[derive(Clone)]
pub struct LoadedComponent {
    pre: ConnectorPre<HostState>,
    /// SHA-256 of the component bytes, hex.
    pub sha256: String,
}

/// Set (to anything) to have the engine write `/tmp/perf-PID.map`, so that
/// `perf report` names the guest's functions instead of `wasm[0]::function[N]`
/// offsets. For profiling only: the map grows with every component loaded.
pub const PERF_MAP_VAR: &str = "CONNECTOR_HOST_PERF_MAP";

/// The process-wide engine, linker and compiled-component cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    compiled: Mutex<HashMap<String, LoadedComponent>>,
    cache_dir: Option<PathBuf>,
}

impl Runtime {
    /// The shared runtime of this process (created on first use).
    pub fn shared() -> Result<&'static Runtime> {
        static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();
        RUNTIME
            .get_or_init(|| {
                Runtime::with_cache_dir(crate::component_cache::default_dir())
                    .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| anyhow!("cannot start the WebAssembly runtime: {e}"))
    }

    /// A runtime keeping compiled components in `cache_dir` (none: memory only).
    pub fn with_cache_dir(cache_dir: Option<PathBuf>) -> Result<Runtime> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        if std::env::var_os(PERF_MAP_VAR).is_some() {
            // `perf report` then names the guest's functions (BENCHMARKS.md).
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        exposure::connector::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        exposure::connector::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        Ok(Runtime {
            engine,
            linker,
            compiled: Mutex::new(HashMap::new()),
            cache_dir,
        })
    }

    /// Compiles (or fetches from the cache) and links a component.
    pub fn load(&self, wasm: &[u8]) -> Result<LoadedComponent> {
        let sha256 = hex(&Sha256::digest(wasm));
        if let Some(c) = self
            .compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&sha256)
        {
            return Ok(c.clone());
        }
        let component = self.compile_cached(wasm, &sha256)?;
        check_imports(&self.engine, &component)?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            anyhow::Error::from(e)
                .context("the component cannot be linked with the host's interfaces")
        })?;
        let pre = ConnectorPre::new(pre).map_err(|e| {
            anyhow::Error::from(e).context(format!(
                "the component does not export exposure:connector/source@{CONTRACT_VERSION} (is it a connector built against this contract?)"
            ))
        })?;
        let loaded = LoadedComponent {
            pre,
            sha256: sha256.clone(),
        };
        self.compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sha256, loaded.clone());
        Ok(loaded)
    }

    /// The wasmtime engine every component of this runtime runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Where the compiled form of the component `wasm` is cached (none
    /// without a cache directory).
    pub fn cache_entry_of(&self, wasm: &[u8]) -> Option<PathBuf> {
        self.cache_entry(&hex(&Sha256::digest(wasm)))
    }

    /// Where the compiled form of the component with this SHA-256 is cached:
    /// the engine's compatibility hash is part of the name.
    fn cache_entry(&self, sha256: &str) -> Option<PathBuf> {
        let compat = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.engine.precompile_compatibility_hash().hash(&mut h);
            format!("{:016x}", h.finish())
        };
        let dir = self.cache_dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{compat}.cwasm")))
    }

    fn compile_cached(&self, wasm: &[u8], sha256: &str) -> Result<Component> {
        if !wasm.starts_with(b"\0asm") {
            bail!("the plugin file is not a WebAssembly binary");
        }
        let cached = self.cache_entry(sha256);
        if let Some(path) = cached.as_ref().filter(|p| p.exists()) {
            match crate::component_cache::distrust(path) {
                Some(why) => tracing::warn!("not using the compiled-component cache: {why}"),
                // SAFETY: the file was written by `precompile_component` of an
                // engine with the same compatibility hash (part of its name),
                // and only this user can have written it (`distrust`).
                None => match unsafe { Component::deserialize_file(&self.engine, path) } {
                    Ok(c) => return Ok(c),
                    Err(e) => {
                        tracing::debug!("ignoring unusable cache entry {}: {e}", path.display())
                    }
                },
            }
        }
        let bytes = self.engine.precompile_component(wasm).map_err(|e| {
            anyhow::Error::from(e).context("the plugin is not a valid WebAssembly component")
        })?;
        if let Some(path) = &cached {
            if let Err(e) = crate::component_cache::write(path, &bytes) {
                tracing::debug!("not caching the compiled component: {e}");
            }
        }
        // SAFETY: `bytes` was produced just now by this engine.
        Ok(unsafe { Component::deserialize(&self.engine, &bytes)? })
    }

    /// Creates an instance with its own store, sandbox limits and egress policy.
    pub async fn instantiate(
        &self,
        component: &LoadedComponent,
        egress: EgressPolicy,
        limits: &InstanceLimits,
    ) -> Result<ConnectorInstance> {
        self.instantiate_in(component, egress, limits, &[]).await
    }

    /// Test hook, never used by the host: an instance whose guest sees these
    /// environment variables, so that the sandbox test proving a guest sees
    /// none has a positive control (the same probe sees these).
    #[doc(hidden)]
    pub async fn instantiate_with_guest_environment(
        &self,
        component: &LoadedComponent,
        egress: EgressPolicy,
        environment: &[(&str, &str)],
    ) -> Result<ConnectorInstance> {
        self.instantiate_in(component, egress, &InstanceLimits::default(), environment)
            .await
    }

    async fn instantiate_in(
        &self,
        component: &LoadedComponent,
        egress: EgressPolicy,
        limits: &InstanceLimits,
        environment: &[(&str, &str)],
    ) -> Result<ConnectorInstance> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // No preopened directory, and no TCP, UDP or name lookup: the
        // filesystem and sockets interfaces a language runtime links grant
        // nothing (wasmtime-wasi's defaults, stated here on purpose).
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .envs(environment)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = HostState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            egress,
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                // Core instances: a Rust component has a handful; one built
                // by componentize-py (CPython and its stubs) has 33 or more.
                .instances(256)
                .memories(32)
                .tables(64)
                .table_elements(100_000)
                .trap_on_grow_failure(true)
                .build(),
            logs: Vec::new(),
            stderr,
            cpu_ticks: 0,
            max_cpu_ticks: (limits.cpu_per_call.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.cpu_ticks += 1;
            if state.cpu_ticks > state.max_cpu_ticks {
                return Err(wasmtime::format_err!(
                    "the component used more CPU time than a call may"
                ));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        let bindings = component
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| anyhow::Error::from(e).context("instantiating the component failed"))?;
        Ok(ConnectorInstance {
            store,
            bindings,
            call_timeout: limits.call_timeout,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses a component built for another contract version (naming the
/// version to rebuild against), and one that imports anything the
/// `connector-with-runtime` world does not (the `connector` world, and the
/// filesystem and sockets interfaces that grant nothing here).
fn check_imports(engine: &Engine, component: &Component) -> Result<()> {
    let ty = component.component_type();
    let exports = ty.exports(engine).map(|(name, _)| name.to_string());
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    for name in imports.iter().cloned().chain(exports) {
        if let Some(version) = contract_version_of(&name) {
            if !semver_compatible(version, CONTRACT_VERSION) {
                bail!(
                    "the component was built against exposure:connector@{version}, and this host implements exposure:connector@{CONTRACT_VERSION}; rebuild the component against exposure:connector@{CONTRACT_VERSION} (this host's wit/connector.wit)"
                );
            }
        }
    }
    for name in &imports {
        if !RUNTIME_WORLD_IMPORTS
            .iter()
            .any(|allowed| import_matches(name, allowed))
        {
            bail!(
                "the component imports `{name}`, which the connector world does not grant (it grants: {}; and, granting nothing through them, the filesystem and sockets interfaces of `connector-with-runtime`); a connector may use only what wit/connector.wit's worlds import",
                WORLD_IMPORTS.join(", ")
            );
        }
    }
    Ok(())
}

/// The version in an `exposure:connector/...@VERSION` name.
fn contract_version_of(name: &str) -> Option<&str> {
    name.strip_prefix("exposure:connector/")?
        .split_once('@')
        .map(|(_, version)| version)
}

/// Whether an import names the same interface as `allowed` at a
/// semver-compatible version (as wasmtime links them).
fn import_matches(import: &str, allowed: &str) -> bool {
    match (import.split_once('@'), allowed.split_once('@')) {
        (Some((name, version)), Some((allowed_name, allowed_version))) => {
            name == allowed_name && semver_compatible(version, allowed_version)
        }
        _ => import == allowed,
    }
}

/// Semver compatibility: the same major version, and for 0.x the same minor.
fn semver_compatible(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.split(['.', '-', '+'])
            .take(3)
            .map(|p| p.parse().unwrap_or(u64::MAX))
            .collect()
    };
    let (a, b) = (parts(a), parts(b));
    match (a.first(), b.first()) {
        (Some(0), Some(0)) => a.get(1) == b.get(1),
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Why a call into the component failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The connector returned an error.
    #[error("{}", connector_error_message(.0))]
    Connector(ConnectorError),
    /// The component trapped, ran out of time, CPU or memory.
    #[error("{0}")]
    Trap(String),
}

/// The message of any `connector-error` case.
pub fn connector_error_message(e: &ConnectorError) -> &str {
    match e {
        ConnectorError::InvalidSettings(m)
        | ConnectorError::Unreachable(m)
        | ConnectorError::Unauthenticated(m)
        | ConnectorError::Forbidden(m)
        | ConnectorError::NotFound(m)
        | ConnectorError::TemporarilyUnavailable(m)
        | ConnectorError::BadResponse(m)
        | ConnectorError::Internal(m) => m,
        ConnectorError::RateLimited(r) => &r.message,
    }
}

/// The name of a `connector-error` case, for reports.
pub fn connector_error_kind(e: &ConnectorError) -> &'static str {
    match e {
        ConnectorError::InvalidSettings(_) => "invalid-settings",
        ConnectorError::Unreachable(_) => "unreachable",
        ConnectorError::Unauthenticated(_) => "unauthenticated",
        ConnectorError::Forbidden(_) => "forbidden",
        ConnectorError::NotFound(_) => "not-found",
        ConnectorError::RateLimited(_) => "rate-limited",
        ConnectorError::TemporarilyUnavailable(_) => "temporarily-unavailable",
        ConnectorError::BadResponse(_) => "bad-response",
        ConnectorError::Internal(_) => "internal",
    }
}

/// One running component instance.
pub struct ConnectorInstance {
    store: Store<HostState>,
    bindings: Connector,
    call_timeout: Duration,
}

impl ConnectorInstance {
    fn trap(&self, what: &str, e: impl std::fmt::Display) -> CallError {
        let stderr = self.store.data().stderr.contents();
        let stderr = String::from_utf8_lossy(&stderr);
        let tail: String = stderr
            .trim()
            .chars()
            .rev()
            .take(600)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if tail.is_empty() {
            CallError::Trap(format!("the component failed during `{what}`: {e}"))
        } else {
            CallError::Trap(format!(
                "the component failed during `{what}`: {e} (component output: {tail})"
            ))
        }
    }

    async fn call<T>(
        &mut self,
        what: &str,
        f: impl AsyncFnOnce(&Connector, &mut Store<HostState>) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        self.store.data_mut().cpu_ticks = 0;
        self.store.set_epoch_deadline(1);
        let timeout = self.call_timeout;
        // Waits for the rate budget are the host's, not the component's: the
        // deadline moves by them.
        let clock = self.store.data().egress.budget_waits();
        let started = tokio::time::Instant::now();
        let waited_before = clock.waited();
        let result = {
            let mut call = std::pin::pin!(f(&self.bindings, &mut self.store));
            loop {
                let waited = clock.waited().saturating_sub(waited_before);
                tokio::select! {
                    r = &mut call => break Some(r),
                    _ = tokio::time::sleep_until(started + timeout + waited) => {
                        if clock.waited().saturating_sub(waited_before) == waited {
                            break None;
                        }
                    }
                }
            }
        };
        match result {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(self.trap(what, format!("{e:#}"))),
            None => Err(self.trap(
                what,
                format!(
                    "no answer within {} s (the call time-out)",
                    timeout.as_secs()
                ),
            )),
        }
    }

    /// Calls `info`.
    pub async fn info(&mut self) -> Result<ConnectorInfo, CallError> {
        self.call("info", async |b, s| {
            b.exposure_connector_source().call_info(s).await
        })
        .await
    }

    /// Calls `check`.
    pub async fn check(&mut self, settings: &[(String, String)]) -> Result<CheckReport, CallError> {
        let settings = settings.to_vec();
        self.call("check", async move |b, s| {
            b.exposure_connector_source().call_check(s, &settings).await
        })
        .await?
        .map_err(CallError::Connector)
    }

    /// Calls `read`.
    pub async fn read(
        &mut self,
        settings: &[(String, String)],
        request: &ReadRequest,
    ) -> Result<Page, CallError> {
        let settings = settings.to_vec();
        self.call("read", async move |b, s| {
            b.exposure_connector_source()
                .call_read(s, &settings, request)
                .await
        })
        .await?
        .map_err(CallError::Connector)
    }

    /// When the rate budget returns, if one of this instance's requests was
    /// refused a wait for it since the last time this was asked.
    pub fn take_budget_refusal(&self) -> Option<std::time::SystemTime> {
        self.store.data().egress.budget_waits().take_refusal()
    }

    /// Why the host had no credential for one of this instance's requests
    /// since the last time this was asked, as the contract's error: a
    /// refused token is `unauthenticated`, an endpoint out of reach
    /// `unreachable`, one unavailable for now `temporarily-unavailable`.
    /// The component saw only a failed request; this is what happened.
    pub fn take_credential_failure(&self) -> Option<ConnectorError> {
        let reason = self.store.data().egress.credential_failure().take()?;
        let said = |m: String| format!("the OAuth token could not be renewed during the sync: {m}");
        Some(match reason {
            TokenError::Refused(m) => ConnectorError::Unauthenticated(said(m)),
            TokenError::Unreachable(m) => ConnectorError::Unreachable(said(m)),
            TokenError::Unavailable(m) => ConnectorError::TemporarilyUnavailable(said(m)),
        })
    }

    /// Log lines the component emitted so far.
    pub fn logs(&self) -> &[(String, String)] {
        &self.store.data().logs
    }
}

/// Instantiates a component just to read its `info` (no network access).
pub async fn read_info(runtime: &Runtime, component: &LoadedComponent) -> Result<ConnectorInfo> {
    let nowhere = crate::origin::Origin {
        scheme: "https",
        host: "invalid.".into(),
        port: 443,
    };
    let sender = crate::sender::Sender::new(&nowhere, &crate::sender::SenderOptions::default())
        .map_err(|e| anyhow!(e))?;
    let no_network = EgressPolicy::new(
        nowhere,
        Arc::new(sender),
        crate::credentials::Credential::None,
        crate::egress::EgressLimits {
            max_timeout: Duration::from_secs(1),
            max_body_bytes: 0,
            max_requests: 0,
        },
        Arc::new(EgressCounters::default()),
        Arc::new(crate::pacing::Pacer::new(None)),
    );
    let mut instance = runtime
        .instantiate(component, no_network, &InstanceLimits::default())
        .await?;
    instance.info().await.map_err(|e| anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_match_the_world_by_name_and_compatible_version() {
        assert!(import_matches(
            "wasi:io/error@0.2.0",
            "wasi:io/error@0.2.12"
        ));
        assert!(import_matches(
            "wasi:http/types@0.2.4",
            "wasi:http/types@0.2.12"
        ));
        assert!(!import_matches(
            "wasi:http/types@0.3.0",
            "wasi:http/types@0.2.12"
        ));
        assert!(!import_matches(
            "wasi:io/errors@0.2.12",
            "wasi:io/error@0.2.12"
        ));
        assert!(semver_compatible("1.2.0", "1.9.3"));
        assert!(!semver_compatible("1.2.0", "2.0.0"));
        assert!(!semver_compatible("0.2.0", "0.3.0"));
        assert!(!semver_compatible("x", "0.3.0"));
    }

    #[test]
    fn the_world_grants_http_and_no_filesystem_or_sockets() {
        assert!(CONTRACT_VERSION.starts_with("0.3."));
        for needed in [
            "wasi:http/outgoing-handler@0.2.12",
            "wasi:cli/environment@0.2.12",
            "exposure:connector/log@0.3.1",
        ] {
            assert!(
                WORLD_IMPORTS.contains(&needed),
                "{needed}: {WORLD_IMPORTS:?}"
            );
        }
        assert!(!WORLD_IMPORTS
            .iter()
            .any(|i| i.starts_with("wasi:filesystem") || i.starts_with("wasi:sockets")));
        // The runtime world adds the filesystem and sockets, and nothing else.
        let extra: Vec<&&str> = RUNTIME_WORLD_IMPORTS
            .iter()
            .filter(|i| !WORLD_IMPORTS.contains(i))
            .collect();
        assert_eq!(extra.len(), 9, "{extra:?}");
        assert!(extra
            .iter()
            .all(|i| i.starts_with("wasi:filesystem/") || i.starts_with("wasi:sockets/")));
    }
}
