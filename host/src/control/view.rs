//! Views of supervisor data for the API: log lines, the resolved spec, CPU seconds.

use std::time::{SystemTime, UNIX_EPOCH};

use super::model::LogLineView;
use crate::manifest::{ProcessSpec, ReadyStrategy};
use crate::supervisor::LogLine;

pub fn line_view(line: LogLine) -> LogLineView {
    LogLineView {
        stream: match line.stream {
            crate::supervisor::Stream::Stdout => "stdout".into(),
            crate::supervisor::Stream::Stderr => "stderr".into(),
        },
        text: line.text,
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// SHIM: returns the CPU seconds (user + system) of `pid`, from `/proc/PID/stat`; v2's status carries them.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        // SAFETY: sysconf only reads a configuration value.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            t as f64
        } else {
            100.0
        }
    })
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
