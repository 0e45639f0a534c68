//! What a plugin's Store holds: its WASI context, opened only by the manifest's grants; a resource
//! limiter that also measures the peak of linear memory; the deadline of the running call; the
//! plugin's log; and the watch that records what the plugin tried beyond its grants.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::{self, LogLevel};
use super::control::{ControlAccess, Outgoing};
use super::log::{LogStream, PluginLog};
use super::watch::{Attempt, Watch};
use pilot_core::manifest::PluginSettings;

/// What a Store holds.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: Limiter,
    pub(super) deadline: Instant,
    log: Arc<PluginLog>,
    pub(super) watch: Watch,
    http: WasiHttpCtx,
    /// Where a control plugin's outgoing HTTP requests may go (nowhere for other plugins).
    pub(super) outgoing: Outgoing,
    /// What a control plugin may ask of the supervisor (`None` for other plugins).
    pub(super) control: Option<Arc<ControlAccess>>,
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outgoing,
        }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::pilot::plugin::types::Host for StoreState {}

impl bindings::pilot::plugin::host::Host for StoreState {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.log.line(level, &message);
        Ok(())
    }
}

impl StoreState {
    /// Creates the state of a fresh Store for a plugin with `grants`.
    pub(super) fn new(
        grants: &Grants,
        limits: StoreLimits,
        log: &Arc<PluginLog>,
    ) -> wasmtime::Result<StoreState> {
        let watch = Watch::new(
            log.name(),
            grants.observed.clone(),
            !grants.settings.allow_env.is_empty(),
        );
        Ok(StoreState {
            wasi: wasi_ctx(grants, log, &watch)?,
            table: ResourceTable::new(),
            limiter: Limiter {
                inner: limits,
                total: 0,
                peak: 0,
            },
            deadline: Instant::now(),
            log: log.clone(),
            watch,
            http: WasiHttpCtx::new(),
            outgoing: Outgoing::default(),
            control: None,
        })
    }
}

/// Why a Store's linear memory could not grow: past the plugin's `memory_mib`.
#[derive(Debug)]
pub struct MemoryCapHit {
    /// The size asked for, in bytes.
    pub desired: usize,
}

impl std::fmt::Display for MemoryCapHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "linear memory cannot grow to {} bytes: past the memory cap",
            self.desired
        )
    }
}

impl std::error::Error for MemoryCapHit {}

/// The memory cap (and instance, table, memory counts) of a Store, measuring the peak of linear memory.
pub struct Limiter {
    inner: StoreLimits,
    total: usize,
    /// The most linear memory (all memories together) the Store has held, in bytes.
    pub peak: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Past the cap, the trap carries a type of ours, which `describe_trap` tells by.
        let allowed = self
            .inner
            .memory_growing(current, desired, maximum)
            .map_err(|_| wasmtime::Error::new(MemoryCapHit { desired }))?;
        if allowed {
            self.total = self.total + desired - current.min(desired);
            self.peak = self.peak.max(self.total);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// A plugin's grants, with `allow_tcp` host names looked up once, when the plugin starts, on its own
/// thread (`getaddrinfo` blocks); and, for `plugin check`, where attempts beyond them are recorded.
#[derive(Clone)]
pub struct Grants {
    /// The manifest's settings (limits, grants, configuration).
    pub settings: Arc<PluginSettings>,
    tcp: Arc<Vec<SocketAddr>>,
    observed: Option<Observed>,
}

/// Where `plugin check` collects attempts, the empty folder offered to the plugin as `/` so that
/// its libc asks the host for paths outside its grants instead of failing on its own, and the
/// stand-in world a control plugin's granted calls and requests reach instead of a real one.
#[derive(Clone)]
pub struct Observed {
    /// The attempts.
    pub attempts: Arc<std::sync::Mutex<Vec<Attempt>>>,
    /// An empty folder.
    pub decoy_root: PathBuf,
    /// The stand-in supervisor and network.
    pub stand_in: Arc<crate::check::world::StandIn>,
}

impl Grants {
    /// Resolves the grants of `settings` (blocking: call it off the async workers).
    pub fn resolve(settings: PluginSettings, observed: Option<Observed>) -> Grants {
        let tcp = resolve_tcp(&settings.allow_tcp);
        Grants {
            settings: Arc::new(settings),
            tcp: Arc::new(tcp),
            observed,
        }
    }
}

/// Resolves `host:port` grants to socket addresses.
fn resolve_tcp(grants: &[(String, u16)]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (host, port) in grants {
        match host.parse::<IpAddr>() {
            Ok(ip) => out.push(SocketAddr::new(ip, *port)),
            Err(_) => match (host.as_str(), *port).to_socket_addrs() {
                Ok(addrs) => out.extend(addrs),
                Err(e) => {
                    tracing::warn!("cannot resolve granted TCP destination `{host}:{port}`: {e}")
                }
            },
        }
    }
    out
}

/// Builds the WASI context a plugin's grants allow; with no grants it reaches nothing.
fn wasi_ctx(grants: &Grants, log: &Arc<PluginLog>, watch: &Watch) -> wasmtime::Result<WasiCtx> {
    let settings = &grants.settings;
    let mut b = WasiCtxBuilder::new();
    b.stdout(LogStream::new(log.clone(), LogLevel::Info))
        .stderr(LogStream::new(log.clone(), LogLevel::Warn));
    if let Some(observed) = &grants.observed {
        // Offered first: a granted folder, a longer prefix, still wins in the guest's path lookup.
        b.preopened_dir(&observed.decoy_root, "/", FsPerms::ReadOnly)?;
    }
    for (paths, perms) in [
        (&settings.allow_read, FsPerms::ReadOnly),
        (&settings.allow_write, FsPerms::ReadWrite),
    ] {
        for path in paths {
            let dir = if path.is_dir() {
                path.as_path()
            } else {
                path.parent().unwrap_or(path)
            };
            b.preopened_dir(dir, dir.to_string_lossy(), perms)?;
        }
    }
    for var in &settings.allow_env {
        if let Ok(value) = std::env::var(var) {
            b.env(var, value);
        }
    }
    let observing = grants.observed.is_some();
    if !grants.tcp.is_empty() || observing {
        // Under `plugin check` sockets can be made, so that what the plugin tries reaches the check.
        b.allow_tcp(true).allow_udp(observing);
        let allowed = grants.tcp.clone();
        let recorder = watch.recorder();
        b.socket_addr_check(move |addr, usage| {
            let ok = match usage {
                SocketAddrUse::TcpConnect => allowed.contains(&addr),
                // The implicit bind of a connect uses the wildcard address and port 0; listening is not granted.
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                _ => false,
            };
            if !ok {
                recorder.record(Attempt::socket(usage, addr));
            }
            Box::pin(async move { ok })
        });
    }
    Ok(b.build())
}
