//! The state of a supervised process: the coordinator's [`Phase`], one enum whose variants carry their
//! data, and the public [`State`] and [`ProcessStatus`] derived from it.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Where a process is in its life (the name of its phase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for its dependencies.
    Pending,
    /// Being started, or spawned and not yet confirmed ready.
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

/// A process's phase as the coordinator keeps it; each variant holds what is true only in it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
    /// Waiting for its dependencies to be up before it starts on its own.
    Pending,
    /// A run was started: hooks and preparation, then the spawn (`pid` once spawned).
    Starting {
        /// The child, once spawned.
        pid: Option<u32>,
        /// When the run began.
        since: Instant,
    },
    /// Spawned and up: confirmed ready by its strategy, or without one.
    Up {
        /// The child.
        pid: u32,
        /// When it was spawned.
        since: Instant,
        /// Whether a ready strategy confirmed it.
        ready: bool,
    },
    /// Its group is being stopped.
    Stopping {
        /// The child, if one was spawned.
        pid: Option<u32>,
        /// When the stop began.
        since: Instant,
    },
    /// Exited; starts again at `until`.
    BackingOff {
        /// When the restart is due.
        until: Instant,
    },
    /// Not running, as configured or asked.
    Stopped {
        /// Why, when there is more to say.
        reason: Option<String>,
    },
    /// Given up on.
    Failed {
        /// Why.
        reason: String,
    },
    /// Never started: a dependency failed or ended.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl Phase {
    /// Returns the public name of the phase.
    pub fn state(&self) -> State {
        match self {
            Phase::Pending => State::Pending,
            Phase::Starting { .. } => State::Starting,
            Phase::Up { ready: true, .. } => State::Ready,
            Phase::Up { ready: false, .. } => State::Running,
            Phase::Stopping { .. } => State::Stopping,
            Phase::BackingOff { .. } => State::BackingOff,
            Phase::Stopped { .. } => State::Stopped,
            Phase::Failed { .. } => State::Failed,
            Phase::Skipped { .. } => State::Skipped,
        }
    }

    /// Returns the live child's pid.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Phase::Starting { pid, .. } | Phase::Stopping { pid, .. } => *pid,
            Phase::Up { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// Returns why the process is where it is, if there is more to say.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Phase::Stopped { reason } => reason.as_deref(),
            Phase::Failed { reason } | Phase::Skipped { reason } => Some(reason),
            _ => None,
        }
    }

    /// Returns whether a run (and maybe a child) exists.
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            Phase::Starting { .. } | Phase::Up { .. } | Phase::Stopping { .. }
        )
    }
}

/// A snapshot of one process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessStatus {
    /// The process's name.
    pub name: String,
    /// Its state.
    pub state: State,
    /// Whether dependents may rely on it (ready, or running without a ready strategy).
    pub ready: bool,
    /// Its pid (also its process group id) while it runs.
    pub pid: Option<u32>,
    /// How often it was restarted.
    pub restarts: u32,
    /// The pid of its latest run, also after it ended.
    pub last_pid: Option<u32>,
    /// When its current run started.
    #[serde(skip)]
    pub started: Option<Instant>,
    /// When its current run started, in seconds since the Unix epoch.
    pub start_time: Option<f64>,
    /// Seconds since its current run started (0 when not running).
    pub uptime_sec: f64,
    /// How its last run ended, e.g. `status 3` or `signal 9 (SIGKILL)`.
    pub last_exit: Option<String>,
    /// Why it is failed, skipped or stopped, if there is more to say.
    pub reason: Option<String>,
    /// Seconds until a restart that is backing off.
    pub retry_in_sec: Option<f64>,
    /// The processes it depends on.
    pub dependencies: Vec<String>,
    /// CPU use at the latest sample, in percent of one core.
    pub cpu_percent: f64,
    /// Resident memory at the latest sample, in bytes.
    pub rss_bytes: u64,
    /// CPU time used by its current child, in seconds, at the latest sample.
    pub cpu_seconds_total: f64,
    /// Descendants that left its process group and were adopted by pilot-host (pids).
    pub adopted: Vec<u32>,
}

/// Turns an instant of this process's clock into seconds since the Unix epoch.
pub(super) fn unix_time(at: Instant) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    now - at.elapsed().as_secs_f64()
}
