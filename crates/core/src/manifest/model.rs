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
    /// Control plugins to run, in the order named (`control_server: NAME` first, then
    /// `control_plugins`), each once.
    pub control_plugins: Vec<String>,
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
    /// What a control plugin may do.
    pub grants: Grants,
}

/// What a control plugin may do; nothing by default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    /// Control calls it may make.
    pub control: std::collections::BTreeSet<ControlGrant>,
    /// Destinations of its outgoing HTTP requests.
    pub http: Vec<HttpGrant>,
}

/// A kind of control call a plugin may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ControlGrant {
    /// Processes, stats, the manifest, logs.
    Read,
    /// Starting processes.
    Start,
    /// Stopping processes.
    Stop,
    /// Restarting processes.
    Restart,
    /// Reloading the manifest.
    Reload,
}

impl ControlGrant {
    /// Every grant, in the order messages list them.
    pub const ALL: [ControlGrant; 5] = [
        ControlGrant::Read,
        ControlGrant::Start,
        ControlGrant::Stop,
        ControlGrant::Restart,
        ControlGrant::Reload,
    ];

    /// Returns its name in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            ControlGrant::Read => "read",
            ControlGrant::Start => "start",
            ControlGrant::Stop => "stop",
            ControlGrant::Restart => "restart",
            ControlGrant::Reload => "reload",
        }
    }

    /// Returns the grant called `name`.
    pub fn parse(name: &str) -> Option<ControlGrant> {
        ControlGrant::ALL.into_iter().find(|g| g.name() == name)
    }
}

/// A destination a control plugin may send HTTP requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    /// The host name or IP address, lowercase, without brackets.
    pub host: String,
    /// The port; `None`: 80 and 443.
    pub port: Option<u16>,
}

impl HttpGrant {
    /// Returns whether a request to `host` on `port` is granted.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_matches(['[', ']']);
        self.host.eq_ignore_ascii_case(host)
            && match self.port {
                Some(p) => p == port,
                None => port == 80 || port == 443,
            }
    }
}

impl std::fmt::Display for HttpGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.port, self.host.contains(':')) {
            (Some(p), true) => write!(f, "[{}]:{p}", self.host),
            (Some(p), false) => write!(f, "{}:{p}", self.host),
            (None, _) => f.write_str(&self.host),
        }
    }
}
