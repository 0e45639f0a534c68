//! The validated manifest: every invariant holds, every default is filled in, every path is resolved.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawManifest;
pub use super::raw::ShutdownStrategy;

/// A manifest that passed validation.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it was loaded from.
    pub source: PathBuf,
    /// The folder relative paths were resolved against.
    pub base_directory: PathBuf,
    /// How long to wait for a process group to be gone after SIGKILL.
    pub kill_timeout: Duration,
    /// The control server, if any.
    pub control_server: Option<ControlServer>,
    /// Time between two resource samples.
    pub stats_interval: Duration,
    /// Time between two calls of a plugin's ready check.
    pub ready_check_interval: Duration,
    /// Per-plugin limits and grants.
    pub plugins: BTreeMap<String, PluginSettings>,
    /// The processes, in file order.
    pub processes: Vec<ProcessSpec>,
    /// What the file said, for round-tripping.
    pub raw: RawManifest,
}

impl Manifest {
    /// Returns the process called `name`.
    pub fn process(&self, name: &str) -> Option<&ProcessSpec> {
        self.processes.iter().find(|p| p.name == name)
    }
}

/// One process to supervise.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    /// Unique name.
    pub name: String,
    /// `path` as the manifest wrote it.
    pub path_written: String,
    /// The resolved, absolute executable.
    pub executable: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Variables set over pilot-host's own environment.
    pub env: BTreeMap<String, String>,
    /// Absolute working directory.
    pub working_directory: PathBuf,
    /// Grace between SIGTERM and SIGKILL.
    pub timeout: Duration,
    /// What to do when it exits on its own.
    pub shutdown_strategy: ShutdownStrategy,
    /// Processes that must be ready first.
    pub dependencies: Vec<String>,
    /// How readiness is decided; `None`: ready once spawned.
    pub ready: Option<Readiness>,
    /// Plugin lifecycle hooks to call.
    pub lifecycle_hooks: Vec<String>,
    /// Plugin stat handlers to feed.
    pub stat_handlers: Vec<String>,
    /// CPUs it may run on; `None`: any.
    pub affinity: Option<Vec<usize>>,
    /// Restart backoff.
    pub restart: RestartPolicy,
}

/// A ready strategy with its deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    /// The check.
    pub strategy: ReadyStrategy,
    /// How long the process has to become ready.
    pub timeout: Duration,
}

/// How readiness is decided.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadyStrategy {
    /// Ready when a TCP connection to `host:port` succeeds.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port, 1..=65535.
        port: u16,
    },
    /// Ready when `path` exists.
    File {
        /// Absolute path.
        path: PathBuf,
    },
    /// Ready when the line `ready` is read from the FIFO at `path`.
    Pipe {
        /// Absolute path.
        path: PathBuf,
    },
    /// Ready when the plugin's check says so.
    Plugin {
        /// The ready strategy's name, as described by its plugin.
        name: String,
        /// `ready_params`, handed to the plugin as JSON text.
        params: serde_json::Value,
    },
}

impl ReadyStrategy {
    /// Returns the strategy's manifest name.
    pub fn name(&self) -> &str {
        match self {
            ReadyStrategy::Tcp { .. } => "tcp",
            ReadyStrategy::File { .. } => "file",
            ReadyStrategy::Pipe { .. } => "pipe",
            ReadyStrategy::Plugin { name, .. } => name,
        }
    }
}

/// Restart backoff and crash-loop budget.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    /// A run this long is stable: immediate restart, backoff reset.
    pub min_uptime: Duration,
    /// First delay after a quick crash.
    pub initial_delay: Duration,
    /// Growth of the delay per quick crash.
    pub factor: f64,
    /// Cap of the delay.
    pub max_delay: Duration,
    /// Random spread, as a fraction of the delay.
    pub jitter: f64,
    /// Crashes allowed within `window`.
    pub max_restarts: u32,
    /// The crash-loop window.
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            min_uptime: Duration::from_secs(1),
            initial_delay: Duration::from_millis(100),
            factor: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: 0.1,
            max_restarts: 10,
            window: Duration::from_secs(60),
        }
    }
}

/// The control plane's settings from the manifest. The unix socket is on whatever they say (see
/// `pilot-host run --control-socket` and `--no-control`); these add listeners and change defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ControlServer {
    /// HTTP (the API and the dashboard) on this TCP address, with a bearer token.
    pub listen: Option<SocketAddr>,
    /// The unix socket's path, instead of the one derived from the manifest's path.
    pub unix_socket: Option<PathBuf>,
    /// The file holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// Whether `listen` may be an address other machines reach.
    pub allow_remote: bool,
    /// Process Pilot's own TCP protocol on this (loopback) address.
    pub process_pilot: Option<SocketAddr>,
    /// Whether every local user may use `process_pilot` (else pilot-host's own user and root).
    pub process_pilot_any_user: bool,
    /// Most connections served at once per listener; `None`: the default.
    pub max_connections: Option<usize>,
    /// TLS on `listen`.
    pub tls: Option<TlsFiles>,
    /// Whether plain HTTP on an address other machines reach was asked for.
    pub insecure_plaintext: bool,
    /// Host names (lowercase) that requests may carry besides loopback and the listen address.
    pub allowed_hosts: Vec<String>,
}

/// The PEM files of the HTTP control API's TLS.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

impl ControlServer {
    /// Where `control_server: http` serves HTTP.
    pub const HTTP_LISTEN: &'static str = "127.0.0.1:7070";
    /// Where `control_server: tcp` serves Process Pilot's protocol, as Process Pilot did.
    pub const PROCESS_PILOT_LISTEN: &'static str = "127.0.0.1:9999";
}

/// Limits, grants and configuration of one plugin.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PluginSettings {
    /// Fuel per call; `None`: the host's default.
    pub fuel: Option<u64>,
    /// Memory cap in bytes; `None`: the host's default.
    pub memory_bytes: Option<u64>,
    /// Wall-clock limit per call; `None`: the host's default.
    pub call_timeout: Option<Duration>,
    /// Read-only paths.
    pub allow_read: Vec<PathBuf>,
    /// Read-write paths.
    pub allow_write: Vec<PathBuf>,
    /// TCP destinations as `host:port`.
    pub allow_tcp: Vec<(String, u16)>,
    /// Environment variables.
    pub allow_env: Vec<String>,
    /// Configuration for the plugin's init.
    pub config: Option<serde_json::Value>,
}
