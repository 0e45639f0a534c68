//! The state of a supervised process, as its task publishes it.

use std::time::Instant;

use serde::Serialize;

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for its dependencies.
    Pending,
    /// Spawned, readiness not yet confirmed.
    Starting,
    /// Spawned and confirmed ready by its ready strategy.
    Ready,
    /// Spawned, without a ready strategy (ready once spawned).
    Running,
    /// Being stopped.
    Stopping,
    /// Not running, by request or as configured.
    Stopped,
    /// Exited; waiting out the restart delay.
    BackingOff,
    /// Gave up: not ready in time, cannot start, crash loop, or exited with an error for good.
    Failed,
    /// Never started because a dependency failed.
    Skipped,
}

impl State {
    /// Returns whether dependents may rely on the process.
    pub fn is_up(self) -> bool {
        matches!(self, State::Ready | State::Running)
    }

    /// Returns whether nothing more will happen unless asked.
    pub fn is_final(self) -> bool {
        matches!(self, State::Stopped | State::Failed | State::Skipped)
    }

    /// Returns the state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Starting => "starting",
            State::Ready => "ready",
            State::Running => "running",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::BackingOff => "backing_off",
            State::Failed => "failed",
            State::Skipped => "skipped",
        }
    }
}

/// A snapshot of one process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessStatus {
    /// The process's name.
    pub name: String,
    /// Its state.
    pub state: State,
    /// Its pid (also its process group id) while it runs.
    pub pid: Option<u32>,
    /// How often it was restarted.
    pub restarts: u32,
    /// The pid of its latest run, also after it ended.
    pub last_pid: Option<u32>,
    /// When its current run started.
    #[serde(skip)]
    pub started: Option<Instant>,
    /// How its last run ended, e.g. `exit status 3`.
    pub last_exit: Option<String>,
    /// Why it is failed, skipped or stopped, if there is more to say.
    pub reason: Option<String>,
}

impl ProcessStatus {
    /// A process that has not started yet.
    pub fn pending(name: &str) -> ProcessStatus {
        ProcessStatus {
            name: name.to_string(),
            state: State::Pending,
            pid: None,
            restarts: 0,
            last_pid: None,
            started: None,
            last_exit: None,
            reason: None,
        }
    }

    /// Returns seconds since the current run started, or 0.
    pub fn uptime_sec(&self) -> f64 {
        match (
            self.state.is_up() || self.state == State::Starting,
            self.started,
        ) {
            (true, Some(t)) => t.elapsed().as_secs_f64(),
            _ => 0.0,
        }
    }
}
