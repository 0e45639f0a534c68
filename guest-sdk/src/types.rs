//! Constructors and conveniences on the contract's types.

use std::fmt;

use crate::{Description, LifecycleEvent, PluginError, ReadyStatus, StatAction, StatActionKind};

impl Description {
    /// Returns a description of plugin `name` at `version` that provides nothing yet.
    ///
    /// `name` is the key of the plugin's `plugins.<name>` section in the manifest.
    ///
    /// ```
    /// use pilot_plugin_sdk::Description;
    ///
    /// let d = Description::new("probe", "1.2.0").ready_strategy("probe").stat_handler("probe-stats");
    /// assert_eq!(d.ready_strategies, ["probe"]);
    /// ```
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            ready_strategies: Vec::new(),
            lifecycle_hooks: Vec::new(),
            stat_handlers: Vec::new(),
        }
    }

    /// Adds a ready strategy, usable as a process's `ready_strategy`.
    pub fn ready_strategy(mut self, name: impl Into<String>) -> Self {
        self.ready_strategies.push(name.into());
        self
    }

    /// Adds a lifecycle hook, usable in a process's `lifecycle_hooks`.
    pub fn lifecycle_hook(mut self, name: impl Into<String>) -> Self {
        self.lifecycle_hooks.push(name.into());
        self
    }

    /// Adds a stat handler, usable in a process's `stat_handlers`.
    pub fn stat_handler(mut self, name: impl Into<String>) -> Self {
        self.stat_handlers.push(name.into());
        self
    }
}

impl PluginError {
    /// The configuration or `ready_params` are wrong; retrying will not help.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::InvalidConfig(message.into())
    }

    /// The strategy, hook or handler name is not one this plugin provides.
    pub fn unknown_name(message: impl Into<String>) -> Self {
        Self::UnknownName(message.into())
    }

    /// Something the plugin needs cannot be reached (a file, a socket, a variable).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }

    /// Any other failure.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }

    /// Returns the error's message without its kind.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidConfig(m)
            | Self::UnknownName(m)
            | Self::Unavailable(m)
            | Self::Failed(m) => m,
        }
    }
}

impl ReadyStatus {
    /// Not ready yet, because of `reason` (the host shows it if the deadline passes).
    pub fn not_yet(reason: impl Into<String>) -> Self {
        Self::NotYet(reason.into())
    }

    /// Returns whether this is [`ReadyStatus::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready)
    }
}

impl StatAction {
    /// Asks the host to restart `process`, for `reason`.
    pub fn restart(process: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            kind: StatActionKind::Restart,
            process: process.into(),
            reason: reason.into(),
        }
    }

    /// Asks the host to stop `process`, for `reason`.
    pub fn stop(process: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            kind: StatActionKind::Stop,
            process: process.into(),
            reason: reason.into(),
        }
    }
}

impl LifecycleEvent {
    /// Returns the event's name in the WIT contract: `pre-start`, `post-start`, `on-shutdown` or
    /// `on-restart`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreStart => "pre-start",
            Self::PostStart => "post-start",
            Self::OnShutdown => "on-shutdown",
            Self::OnRestart => "on-restart",
        }
    }
}

impl fmt::Display for LifecycleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_builder_collects_names() {
        let d = Description::new("p", "0.1.0")
            .ready_strategy("a")
            .ready_strategy("b")
            .lifecycle_hook("h")
            .stat_handler("s");
        assert_eq!(d.ready_strategies, ["a", "b"]);
        assert_eq!(d.lifecycle_hooks, ["h"]);
        assert_eq!(d.stat_handlers, ["s"]);
    }

    #[test]
    fn error_message_drops_the_kind() {
        assert_eq!(PluginError::unavailable("no socket").message(), "no socket");
    }
}
