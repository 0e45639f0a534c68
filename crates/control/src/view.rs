//! Views of supervisor data for the API: process status, log lines, the resolved spec.

use super::model::{LogLineView, ProcessView};
use pilot_core::manifest::{ProcessSpec, ReadyStrategy};
use pilot_core::supervisor::{LogLine, ProcessStatus};

/// Returns a process's status as the API shows it.
pub fn view(s: ProcessStatus) -> ProcessView {
    ProcessView {
        state: s.state,
        ready: s.ready,
        pid: s.pid,
        uptime_sec: s.uptime_sec,
        restarts: s.restarts,
        last_exit: s.last_exit,
        reason: s.reason,
        cpu_percent: s.cpu_percent,
        rss_bytes: s.rss_bytes,
        cpu_seconds_total: s.cpu_seconds_total,
        start_time: s.start_time,
        dependencies: s.dependencies,
        name: s.name,
    }
}

/// Returns a log line as the API shows it.
pub fn line_view(line: LogLine) -> LogLineView {
    LogLineView {
        stream: match line.stream {
            pilot_core::supervisor::Stream::Stdout => "stdout".into(),
            pilot_core::supervisor::Stream::Stderr => "stderr".into(),
        },
        text: line.text,
    }
}

/// Returns the spec of one process as JSON, with what pilot-host resolved.
pub fn spec_json(p: &ProcessSpec) -> serde_json::Value {
    let ready = p.ready.as_ref().map(|r| {
        let params = match &r.strategy {
            ReadyStrategy::Tcp { host, port } => serde_json::json!({ "host": host, "port": port }),
            ReadyStrategy::File { path } | ReadyStrategy::Pipe { path } => {
                serde_json::json!({ "path": path })
            }
            ReadyStrategy::Plugin { params, .. } => params.clone(),
        };
        serde_json::json!({
            "strategy": r.strategy.name(),
            "timeout_sec": r.timeout.as_secs_f64(),
            "params": params,
        })
    });
    serde_json::json!({
        "path": p.path_written,
        "executable": p.executable,
        "args": p.args,
        "env": p.env,
        "working_directory": p.working_directory,
        "timeout_sec": p.timeout.as_secs_f64(),
        "shutdown_strategy": p.shutdown_strategy.as_str(),
        "dependencies": p.dependencies,
        "ready": ready,
        "lifecycle_hooks": p.lifecycle_hooks,
        "stat_handlers": p.stat_handlers,
        "affinity": p.affinity,
    })
}
