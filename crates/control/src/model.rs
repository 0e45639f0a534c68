//! The JSON the control API speaks, shared by the server and `pilot-host ctl`.

use serde::{Deserialize, Serialize};

use pilot_core::supervisor::State;

/// One process, as `GET /v1/processes` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessView {
    /// Its name.
    pub name: String,
    /// Its state, on the wire as its snake_case name: pending, starting, ready, running, stopping,
    /// stopped, backing_off, failed, skipped.
    pub state: State,
    /// Its pid (and process group) while it runs.
    pub pid: Option<u32>,
    /// Whether dependents may rely on it (ready by its strategy, or running without one).
    pub ready: bool,
    /// Seconds since its current run started, or 0.
    pub uptime_sec: f64,
    /// How often it was restarted.
    pub restarts: u32,
    /// How its last run ended, e.g. `exit status 3`.
    pub last_exit: Option<String>,
    /// Why it is failed, skipped or stopped.
    pub reason: Option<String>,
    /// CPU use in percent of one core, from the latest sample.
    pub cpu_percent: f64,
    /// Resident memory in bytes, from the latest sample.
    pub rss_bytes: u64,
    /// CPU seconds its current child used.
    pub cpu_seconds_total: f64,
    /// When its current run started, in seconds since the Unix epoch.
    pub start_time: Option<f64>,
    /// The processes it depends on.
    pub dependencies: Vec<String>,
}

/// One process with its spec, as `GET /v1/processes/{name}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessDetailView {
    /// Its status.
    #[serde(flatten)]
    pub status: ProcessView,
    /// Its spec, as resolved from the manifest.
    pub spec: serde_json::Value,
}

/// An error, as every failed request answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, and the fix.
    pub error: String,
    /// A stable name of the kind of error: `bad_request`, `unauthorized`, `unknown_process`,
    /// `not_found`, `method_not_allowed`, `dependency_down`, `shutting_down`, `failed`, `invalid_manifest`,
    /// `too_large`, `busy`.
    pub kind: String,
}

/// The body of `POST /v1/restart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartRequest {
    /// The processes to restart.
    pub processes: Vec<String>,
}

/// The answer to start, stop and restart: the processes as they are once it took effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionReply {
    /// The processes acted on.
    pub processes: Vec<ProcessView>,
}

/// One line of a process's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLineView {
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text.
    pub text: String,
}

/// The answer to `GET /v1/processes/{name}/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsReply {
    /// The process.
    pub process: String,
    /// Its last lines, oldest first.
    pub lines: Vec<LogLineView>,
}
