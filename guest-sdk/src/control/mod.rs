//! Control plugins: the `pilot-control` world. A control plugin serves HTTP under `/plugins/<name>/`
//! on pilot-host's control plane (behind its token), receives the supervisor's events and ticks it asks
//! for, drives the supervisor through the control calls the manifest grants it, and may send HTTP
//! requests to the hosts the manifest grants.
//!
//! Implement [`ControlPlugin`] and export it with [`export_control!`](crate::export_control):
//!
//! - [`ControlPlugin::handle`] answers a [`Request`] (its path is the part after the mount point) with a
//!   [`Response`]. Each request runs on a fresh instance: keep nothing between requests.
//! - [`ControlPlugin::init`] returns a [`Setup`]: the [`EventKind`]s to receive in
//!   [`ControlPlugin::on_event`] and the interval of [`ControlPlugin::on_tick`]. Events and ticks go to
//!   one long-lived instance, in order, so state kept in `self` (a rate limit, a count) lasts there.
//! - [`processes`], [`stats`], [`manifest`], [`logs`], [`start`], [`stop`], [`restart`], [`reload`]:
//!   the control calls, each allowed only by a grant in `plugins.<name>.grants.control` (else
//!   [`ControlError::Denied`]).
//! - [`http::send`]: outgoing HTTP to the hosts in `plugins.<name>.grants.http`.

pub(crate) mod adapter;
pub mod http;
mod message;

pub use self::message::{Request, Response};
pub use crate::__private::control_bindings::exports::pilot::plugin::control_plugin::{
    ControlDescription, Event, EventKind, Setup,
};
use crate::__private::control_bindings::pilot::plugin::control as host;
pub use crate::__private::control_bindings::pilot::plugin::control::{
    ControlError, ProcessPhase, ProcessState,
};
pub use crate::{PluginError, ProcessStats};

/// A control plugin: its HTTP handler, and what it does with events and ticks.
///
/// The host makes an instance with [`Default`] for each HTTP request (then [`init`](Self::init) and
/// [`handle`](Self::handle)), and one long-lived instance for events and ticks (made again after a
/// trap). Every call runs under the plugin's fuel, memory and time limits: answer at once.
pub trait ControlPlugin: Default + 'static {
    /// Says what the plugin is: its name (its mount point is `/plugins/<name>/`) and version.
    fn describe(&self) -> ControlDescription;

    /// Configures the instance with the manifest's `plugins.<name>.config` (`Null` when there is none)
    /// and says what it wants to receive. The default wants nothing.
    fn init(&mut self, config: serde_json::Value) -> Result<Setup, PluginError> {
        let _ = config;
        Ok(Setup::default())
    }

    /// Receives one event of a kind [`init`](Self::init) asked for.
    fn on_event(&mut self, event: &Event) -> Result<(), PluginError> {
        let _ = event;
        Ok(())
    }

    /// Called every `tick_ms` that [`init`](Self::init) asked for.
    fn on_tick(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    /// Answers one HTTP request. The default answers 404.
    fn handle(&mut self, request: Request) -> Response {
        Response::text(
            404,
            format!("no route for {} {}\n", request.method, request.path),
        )
    }
}

impl ControlDescription {
    /// Returns the description of control plugin `name` at `version`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
        }
    }
}

#[allow(clippy::derivable_impls)] // `Setup` is generated; it cannot derive here.
impl Default for Setup {
    fn default() -> Self {
        Setup {
            events: Vec::new(),
            tick_ms: None,
        }
    }
}

impl Setup {
    /// Asks for events of `kinds`.
    pub fn events(mut self, kinds: &[EventKind]) -> Self {
        self.events.extend_from_slice(kinds);
        self
    }

    /// Asks for [`ControlPlugin::on_tick`] every `ms` milliseconds (at least 100).
    pub fn tick_ms(mut self, ms: u32) -> Self {
        self.tick_ms = Some(ms);
        self
    }
}

impl Event {
    /// Returns the event as JSON, as `GET /v1/events` sends it (`{"type": "exited", "code": 1, ...}`).
    pub fn data(&self) -> serde_json::Value {
        serde_json::from_str(&self.json).unwrap_or(serde_json::Value::Null)
    }
}

/// Returns every process, in manifest order. Grant: `read`.
pub fn processes() -> Result<Vec<ProcessState>, ControlError> {
    host::processes()
}

/// Returns the latest resource sample of every process. Grant: `read`.
pub fn stats() -> Result<Vec<ProcessStats>, ControlError> {
    host::stats()
}

/// Returns the manifest in effect, as JSON. Grant: `read`.
pub fn manifest() -> Result<serde_json::Value, ControlError> {
    host::manifest().map(|text| serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// Returns the last `tail` lines `process` printed (at most 1000). Grant: `read`.
pub fn logs(process: &str, tail: u32) -> Result<Vec<String>, ControlError> {
    host::logs(process, tail)
}

fn names(processes: &[&str]) -> Vec<String> {
    processes.iter().map(|p| p.to_string()).collect()
}

/// Starts the named processes that are not running (all or none). Grant: `start`.
pub fn start(processes: &[&str]) -> Result<(), ControlError> {
    host::start(&names(processes))
}

/// Stops the named processes (all or none). Grant: `stop`.
pub fn stop(processes: &[&str]) -> Result<(), ControlError> {
    host::stop(&names(processes))
}

/// Restarts the named processes (all or none). Grant: `restart`.
///
/// Returns once the supervisor accepted it; follow the events for when it took effect. Changes are
/// rate-limited per plugin (a burst of 10, then one a second): past it, [`ControlError::Refused`].
pub fn restart(processes: &[&str]) -> Result<(), ControlError> {
    host::restart(&names(processes))
}

/// Re-reads the manifest file and applies it; returns the report (`added`, `removed`, `changed`,
/// ...). Grant: `reload`.
pub fn reload() -> Result<serde_json::Value, ControlError> {
    host::reload().map(|text| serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}
