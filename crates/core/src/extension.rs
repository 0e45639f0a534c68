//! The points where plugins plug in: ready strategies, lifecycle hooks and stat handlers.
//!
//! The supervisor calls these through [`Extensions`]; the plugin runtime implements it. Every call is
//! expected to return on its own within its limits: the supervisor never waits for a plugin longer than
//! the plugin runtime allows.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A boxed future, as the extension calls return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a plugin learns about a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    /// The process's name.
    pub name: String,
    /// Its pid, while it runs.
    pub pid: Option<u32>,
    /// The resolved executable.
    pub path: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its working directory.
    pub working_directory: String,
    /// How often it was restarted.
    pub restart_count: u32,
}

/// A ready check's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyAnswer {
    /// The process is ready.
    Ready,
    /// Not yet, with a reason shown if the deadline passes.
    NotYet(String),
    /// The check itself failed; the process counts as not ready.
    Error(String),
}

/// The moment a lifecycle hook is called at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum LifecycleEvent {
    /// Before the process is spawned.
    PreStart,
    /// Right after it was spawned.
    PostStart,
    /// After it exited: its exit code, or the signal that ended it.
    OnShutdown {
        /// Exit code, if it exited.
        exit_code: Option<i32>,
        /// Signal number, if a signal ended it.
        signal: Option<i32>,
    },
    /// Before it is started again.
    OnRestart,
}

impl LifecycleEvent {
    /// Returns the event's name as hooks see it.
    pub fn name(&self) -> &'static str {
        match self {
            LifecycleEvent::PreStart => "pre_start",
            LifecycleEvent::PostStart => "post_start",
            LifecycleEvent::OnShutdown { .. } => "on_shutdown",
            LifecycleEvent::OnRestart => "on_restart",
        }
    }
}

/// One sample of a process's resource use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessStats {
    /// The process's name.
    pub name: String,
    /// Its pid when sampled.
    pub pid: Option<u32>,
    /// CPU use since the previous sample, in percent of one core.
    pub cpu_percent: f64,
    /// The highest `cpu_percent` seen.
    pub max_cpu_percent: f64,
    /// Resident memory in bytes.
    pub rss_bytes: u64,
    /// The highest `rss_bytes` seen.
    pub max_rss_bytes: u64,
    /// How often it was restarted.
    pub restarts: u32,
    /// Seconds since its current run started.
    pub uptime_sec: f64,
}

/// What a stat handler may ask for; applied only to processes that named the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatAction {
    /// Restart the named process.
    Restart {
        /// The process.
        process: String,
        /// Why, for the log.
        reason: String,
    },
    /// Stop the named process.
    Stop {
        /// The process.
        process: String,
        /// Why, for the log.
        reason: String,
    },
}

/// What the supervisor (and the control plane) can read about one plugin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginStatus {
    /// The plugin's name, as it describes itself.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The component file it was loaded from.
    pub file: String,
    /// The ready strategies, lifecycle hooks and stat handlers it provides.
    pub provides: Vec<String>,
    /// Calls made into it (ready checks, hooks, stat handlers), failed or not.
    pub calls_total: u64,
    /// Calls that trapped, timed out or answered with the plugin's own error.
    pub failures_total: u64,
    /// Whether it is quarantined (its checks count as not ready, its hooks and handlers are skipped).
    pub quarantined: bool,
    /// Fuel its calls consumed, in total.
    pub fuel_consumed_total: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// Something that happened to a plugin, reported to the supervisor's event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum PluginEvent {
    /// A call trapped, ran out of time or answered with the plugin's own error.
    CallFailed {
        /// The plugin.
        plugin: String,
        /// What was called, e.g. "ready check `http` of `web`".
        call: String,
        /// How it failed.
        error: String,
    },
    /// The plugin failed too often in a row and is no longer called.
    Quarantined {
        /// The plugin.
        plugin: String,
    },
    /// A control plugin tried something its grants do not allow (reported once per kind).
    Denied {
        /// The plugin.
        plugin: String,
        /// What it tried, and the grant that would allow it.
        what: String,
    },
    /// A control plugin's event queue overflowed and events were dropped for it.
    EventsDropped {
        /// The plugin.
        plugin: String,
        /// How many events.
        count: u64,
    },
    /// Log lines of the plugin were dropped by the rate limit.
    LogDropped {
        /// The plugin.
        plugin: String,
        /// How many lines.
        count: u64,
    },
}

/// Where the plugin runtime reports [`PluginEvent`]s; must return at once (it is called from plugin
/// threads and must never block them).
pub type PluginEventSink = Arc<dyn Fn(PluginEvent) + Send + Sync>;

/// The ready strategies, lifecycle hooks and stat handlers the supervisor can call.
pub trait Extensions: Send + Sync + 'static {
    /// Asks ready strategy `strategy` about `process`; `params` is `ready_params` as JSON text.
    fn ready_check<'a>(
        &'a self,
        strategy: &'a str,
        process: &'a ProcessInfo,
        params: &'a str,
    ) -> BoxFuture<'a, ReadyAnswer>;

    /// Calls lifecycle hook `hook` for `event` of `process`.
    fn lifecycle<'a>(
        &'a self,
        hook: &'a str,
        event: LifecycleEvent,
        process: &'a ProcessInfo,
    ) -> BoxFuture<'a, ()>;

    /// Hands `stats` (of the processes that name `handler`) to stat handler `handler`.
    fn stats<'a>(
        &'a self,
        handler: &'a str,
        stats: &'a [ProcessStats],
    ) -> BoxFuture<'a, Vec<StatAction>>;

    /// Returns the pause between two calls of a ready check.
    fn ready_check_interval(&self) -> Duration {
        Duration::from_millis(100)
    }

    /// Returns what can be read about each plugin (for status and metrics); none by default.
    fn plugins(&self) -> Vec<PluginStatus> {
        Vec::new()
    }

    /// Adapts to a reloaded manifest before the supervisor applies it: plugins it uses that were not
    /// started are started, plugins whose settings changed get fresh instances with the new settings.
    /// On error nothing changed, and every problem is returned.
    fn reload<'a>(
        &'a self,
        manifest: &'a crate::manifest::Manifest,
    ) -> BoxFuture<'a, Result<(), Vec<String>>> {
        let _ = manifest;
        Box::pin(async { Ok(()) })
    }
}

/// No plugins: only the built-in ready strategies exist.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoExtensions;

impl Extensions for NoExtensions {
    fn ready_check<'a>(
        &'a self,
        strategy: &'a str,
        _: &'a ProcessInfo,
        _: &'a str,
    ) -> BoxFuture<'a, ReadyAnswer> {
        Box::pin(async move {
            ReadyAnswer::Error(format!("no plugin provides ready strategy `{strategy}`"))
        })
    }

    fn lifecycle<'a>(
        &'a self,
        _: &'a str,
        _: LifecycleEvent,
        _: &'a ProcessInfo,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn stats<'a>(&'a self, _: &'a str, _: &'a [ProcessStats]) -> BoxFuture<'a, Vec<StatAction>> {
        Box::pin(async { Vec::new() })
    }
}
