//! The manifest as the file says it: serde structs that mirror the YAML/JSON keys one to one.
//!
//! Every struct denies unknown keys, every field is optional here (defaults and required keys are the
//! validator's business, so that one run can report every problem), and the JSON Schema printed by
//! `pilot-host schema` is derived from these types, so the schema and the parser cannot drift apart.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The whole manifest file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// The processes to supervise, in any order; dependencies decide the start order.
    /// Example: `processes: [{ name: web, path: ./web }]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<RawProcess>>,
    /// Seconds to wait for a process group to be gone after SIGKILL. Default 5.0. Example: `kill_timeout: 2.0`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_timeout: Option<f64>,
    /// The runtime control server: a name (as in Process Pilot) or settings.
    /// Example: `control_server: { listen: "127.0.0.1:7070" }`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_server: Option<RawControlServer>,
    /// Folder that relative paths are resolved against. Default: the manifest's folder.
    /// Example: `base_directory: ./bin`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_directory: Option<String>,
    /// Seconds between two resource samples (CPU %, RSS) of all processes. Default 1.0.
    /// Example: `stats_interval_sec: 0.5`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_interval_sec: Option<f64>,
    /// Seconds between two calls of a plugin's ready check (built-in strategies are event-driven).
    /// Default 0.1. Example: `ready_check_interval_sec: 0.05`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_check_interval_sec: Option<f64>,
    /// Per-plugin limits, grants and configuration, keyed by the plugin's name.
    /// Example: `plugins: { http-ready: { allow_tcp: ["127.0.0.1:8080"] } }`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<BTreeMap<String, RawPluginSettings>>,
    /// Control plugins to run beside the built-in control plane, each serving HTTP under
    /// `/plugins/<name>/` (`control_server: NAME` adds one more, as in Process Pilot).
    /// Example: `control_plugins: [ops-endpoints, webhook-notify]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plugins: Option<Vec<String>>,
}

/// One process entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    /// Unique name (letters, digits, `_`, `-`, `.`). Required. Example: `name: api`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Executable: a bare name looked up on PATH, a path (relative to the manifest's folder or
    /// `base_directory`), or a `*` pattern. Required. Example: `path: ./bin/api`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Arguments; numbers and booleans are passed as their text. Example: `args: ["--port", 8080]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<Scalar>>,
    /// Environment variables, merged over pilot-host's own. Example: `env: { RUST_LOG: debug }`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, Scalar>>,
    /// Working directory. Default: the executable's folder. Example: `working_directory: /srv/api`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when stopping. Default 5.0. Example: `timeout: 3`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// What happens when the process exits. Default `restart`. Example: `shutdown_strategy: do_not_restart`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_strategy: Option<ShutdownStrategy>,
    /// Names of processes that must be ready before this one starts. Example: `dependencies: [db]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Vec<String>>,
    /// How readiness is decided: `tcp`, `pipe`, `file`, or a plugin's ready strategy.
    /// Without one, the process is ready once spawned. Example: `ready_strategy: tcp`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_strategy: Option<String>,
    /// Seconds the process has to become ready. Default 5.0. Example: `ready_timeout_sec: 10`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_timeout_sec: Option<f64>,
    /// Parameters of the ready strategy: `port` and `host` for tcp, `path` for file and pipe,
    /// anything for a plugin. Example: `ready_params: { port: 8080 }`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_params: Option<serde_json::Map<String, serde_json::Value>>,
    /// Names of plugin lifecycle hooks to call for this process. Example: `lifecycle_hooks: [event-log]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_hooks: Option<Vec<String>>,
    /// Names of plugin stat handlers that receive this process's stats. Example: `stat_handlers: [mem-guard]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat_handlers: Option<Vec<String>>,
    /// CPUs (0-based) the process may run on. Not on macOS. Example: `affinity: [0, 1]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Vec<usize>>,
    /// Another spelling of `affinity`, as in Process Pilot's examples; give one or the other.
    /// Example: `processor_affinity: [0]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor_affinity: Option<Vec<usize>>,
    /// Restart backoff and crash-loop budget for `shutdown_strategy: restart`.
    /// Example: `restart: { max_restarts: 5, window_sec: 60 }`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RawRestart>,
}

/// A string, number or boolean, kept as written and used as text.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    /// A string.
    Text(String),
    /// A whole number.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Text(s) => f.write_str(s),
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Float(n) => write!(f, "{n}"),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// What pilot-host does when a process exits on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownStrategy {
    /// Start it again, with backoff.
    #[default]
    Restart,
    /// Leave it stopped.
    DoNotRestart,
    /// Stop every process and exit.
    ShutdownEverything,
}

impl ShutdownStrategy {
    /// Returns the manifest spelling of the strategy.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownStrategy::Restart => "restart",
            ShutdownStrategy::DoNotRestart => "do_not_restart",
            ShutdownStrategy::ShutdownEverything => "shutdown_everything",
        }
    }
}

/// Restart backoff settings of one process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRestart {
    /// A run at least this long counts as stable: the next restart is immediate and the backoff resets.
    /// Default 1.0. Example: `min_uptime_sec: 2`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_uptime_sec: Option<f64>,
    /// Delay before the first restart after a quick crash. Default 0.1. Example: `initial_delay_sec: 0.5`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_sec: Option<f64>,
    /// Each further quick crash multiplies the delay by this. Default 2.0. Example: `factor: 3`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// The delay never exceeds this. Default 30.0. Example: `max_delay_sec: 10`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay_sec: Option<f64>,
    /// Random spread of each delay, as a fraction (0.1 = ±10 %). Default 0.1. Example: `jitter: 0`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
    /// Crashes allowed within `window_sec` before the process is marked failed. Default 10.
    /// Example: `max_restarts: 3`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// Length of the crash-loop window in seconds. Default 60.0. Example: `window_sec: 30`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_sec: Option<f64>,
}

/// The control server: a name, as in Process Pilot, or explicit settings.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RawControlServer {
    /// A named control server: `http` (the HTTP API on 127.0.0.1:7070), `tcp` (Process Pilot's
    /// protocol on 127.0.0.1:9999), or a control plugin's name. Example: `control_server: tcp`
    Name(String),
    /// Explicit settings.
    Settings(RawControlSettings),
}

/// Settings of the built-in control server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawControlSettings {
    /// TCP address to listen on (port 0 picks a free one). Example: `listen: "127.0.0.1:7070"`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Unix socket path, instead of the one derived from the manifest's path (the socket is on by
    /// default). Example: `unix_socket: /run/pilot.sock`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_socket: Option<String>,
    /// File holding the bearer token that HTTP requests on `listen` must carry (mode 0600). Default:
    /// `PILOT_HOST_TOKEN`, else a token generated at start beside the socket.
    /// Example: `token_file: /etc/pilot/token`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// Allow a `listen` address that is not loopback (needs a `token_file` holding at least 128 bits,
    /// and `tls` or `insecure_plaintext`). Default false. Example: `allow_remote: true`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_remote: Option<bool>,
    /// Serve `listen` over TLS with this certificate chain and private key (PEM files; the key readable
    /// by you alone). Example: `tls: { cert: /etc/pilot/cert.pem, key: /etc/pilot/key.pem }`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTls>,
    /// Serve plain HTTP on a `listen` address other machines reach: the token and the API then cross
    /// the network readable by anyone on the way, so only on a network you trust. Default false.
    /// Example: `insecure_plaintext: true`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_plaintext: Option<bool>,
    /// Host names HTTP requests may carry in their `Host` header besides loopback and the `listen`
    /// address; any other is answered 421 (this stops DNS rebinding). Default none.
    /// Example: `allowed_hosts: [pilot.example.com]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_hosts: Option<Vec<String>>,
    /// Serve Process Pilot's own TCP protocol on this loopback address (`control_server: tcp` means
    /// `127.0.0.1:9999`). Example: `process_pilot: "127.0.0.1:9999"`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_pilot: Option<String>,
    /// Let every local user use `process_pilot`, as in Process Pilot (by default only pilot-host's
    /// own user and root may: the kernel names each connection's owner). Default false.
    /// Example: `process_pilot_any_user: true`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_pilot_any_user: Option<bool>,
    /// Most connections served at once on each listener. Default 2048.
    /// Example: `max_connections: 256`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

/// The certificate and key of the HTTP control API's TLS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file with the certificate chain, the server's first. Example: `cert: /etc/pilot/cert.pem`
    pub cert: String,
    /// PEM file with the private key (mode 0600). Example: `key: /etc/pilot/key.pem`
    pub key: String,
}

/// Limits, grants and configuration of one plugin. Nothing is granted by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPluginSettings {
    /// Fuel (roughly wasm instructions) per call. Example: `fuel: 50000000`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Linear memory cap in MiB. Example: `memory_mib: 32`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Wall-clock limit of one call in milliseconds. Example: `call_timeout_ms: 500`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_timeout_ms: Option<u64>,
    /// Paths the plugin may read. Example: `allow_read: [/etc/myapp]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_read: Option<Vec<String>>,
    /// Paths the plugin may read and write. Example: `allow_write: [/var/log/myapp]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_write: Option<Vec<String>>,
    /// TCP destinations (`host:port`) the plugin may connect to. Example: `allow_tcp: ["127.0.0.1:8080"]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_tcp: Option<Vec<String>>,
    /// Environment variables the plugin may read. Example: `allow_env: [HOME]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_env: Option<Vec<String>>,
    /// Configuration handed to the plugin's init, as JSON. Example: `config: { threshold_mib: 200 }`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// What a control plugin may do: control calls and outgoing HTTP destinations.
    /// Example: `grants: { control: [read, restart], http: ["127.0.0.1:9000"] }`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<RawGrants>,
}

/// What a control plugin may do; nothing by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGrants {
    /// Control calls it may make: `read` (processes, stats, manifest, logs), `start`, `stop`,
    /// `restart`, `reload`. Example: `control: [read, restart]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Vec<String>>,
    /// Hosts it may send HTTP requests to: `host:port`, or `host` for its ports 80 and 443.
    /// Example: `http: ["127.0.0.1:9000", "hooks.example.com"]`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Vec<String>>,
}

// `Scalar` and `RawControlServer` deserialize by hand rather than as `untagged` enums, whose errors
// ("data did not match any variant") say neither what was found nor, for settings, which key is wrong.

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl<'de> Deserialize<'de> for RawControlServer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ControlVisitor;
        impl<'de> Visitor<'de> for ControlVisitor {
            type Value = RawControlServer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a name (`http`, `tcp` or a control plugin's) or a mapping of settings (e.g. `listen`)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawControlServer, E> {
                Ok(RawControlServer::Name(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawControlServer, A::Error> {
                RawControlSettings::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawControlServer::Settings)
            }
        }
        deserializer.deserialize_any(ControlVisitor)
    }
}
