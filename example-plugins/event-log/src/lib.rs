//! `event-log`: a pilot-host plugin whose lifecycle hook `event-log` appends one JSON line per event to
//! a file, for audits and for tools that follow a stack's history.
//!
//! ```yaml
//! processes:
//!   - name: api
//!     path: ./api
//!     lifecycle_hooks: [event-log]
//! plugins:
//!   event-log:
//!     allow_write: [/var/log/pilot]              # the folder of the file
//!     config: { path: /var/log/pilot/events.jsonl }
//! ```
//!
//! Each line: `{"process":"api","event":"on-shutdown","pid":4242,"exit_code":1,"signal":null,
//! "restarts":0,"unix_ms":1767225600000}`. `event` is `pre-start`, `post-start`, `on-shutdown` or
//! `on-restart`; `exit_code` and `signal` are set for `on-shutdown` only; `pid` is null before the
//! process runs. The file is opened, appended to and closed on each event.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use pilot_plugin_sdk::serde_json;
use pilot_plugin_sdk::{
    export_plugin, Description, ExitStatus, LifecycleEvent, Params, Plugin, PluginError,
    ProcessInfo,
};

/// The plugin: the file it appends to, once configured.
#[derive(Default)]
struct EventLog {
    path: Option<String>,
}

impl Plugin for EventLog {
    fn describe(&self) -> Description {
        Description::new("event-log", env!("CARGO_PKG_VERSION")).lifecycle_hook("event-log")
    }

    fn init(&mut self, config: serde_json::Value) -> Result<(), PluginError> {
        let path = Params::config(config).str("path")?.to_string();
        if !Path::new(&path).is_absolute() {
            return Err(PluginError::invalid_config(format!(
                "`config.path` must be an absolute path, got `{path}`"
            )));
        }
        self.path = Some(path);
        Ok(())
    }

    fn lifecycle(
        &mut self,
        _hook: &str,
        event: LifecycleEvent,
        process: &ProcessInfo,
        exit: Option<ExitStatus>,
    ) -> Result<(), PluginError> {
        let path = self.path.as_deref().ok_or_else(|| {
            PluginError::invalid_config("`plugins.event-log.config.path` is required")
        })?;
        let mut line = serde_json::to_string(&Event::new(event, process, exit, unix_ms()))
            .map_err(|e| PluginError::failed(format!("cannot encode the event: {e}")))?;
        line.push('\n');
        append(path, &line)
    }
}

/// One line of the log, its fields in this order.
#[derive(Debug, serde::Serialize)]
struct Event<'a> {
    process: &'a str,
    event: &'static str,
    pid: Option<u32>,
    exit_code: Option<i32>,
    signal: Option<i32>,
    restarts: u32,
    unix_ms: u64,
}

impl<'a> Event<'a> {
    /// Returns the record of `event` of `process`.
    fn new(
        event: LifecycleEvent,
        process: &'a ProcessInfo,
        exit: Option<ExitStatus>,
        unix_ms: u64,
    ) -> Self {
        Self {
            process: &process.name,
            event: event.as_str(),
            pid: process.pid,
            exit_code: exit.and_then(|e| e.code),
            signal: exit.and_then(|e| e.signal),
            restarts: process.restart_count,
            unix_ms,
        }
    }
}

/// Appends `line` to the file at `path` in one write.
fn append(path: &str, line: &str) -> Result<(), PluginError> {
    let folder = Path::new(path).parent().unwrap_or(Path::new("/"));
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| {
            PluginError::unavailable(format!(
                "cannot append to `{path}`: {e} (is `{}` in `plugins.event-log.allow_write`?)",
                folder.display()
            ))
        })
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

export_plugin!(EventLog);

#[cfg(test)]
mod tests {
    use super::*;
    use pilot_plugin_sdk::serde_json::json;

    fn line(event: LifecycleEvent, process: &ProcessInfo, exit: Option<ExitStatus>) -> String {
        serde_json::to_string(&Event::new(event, process, exit, 7)).unwrap()
    }

    fn process(pid: Option<u32>) -> ProcessInfo {
        ProcessInfo {
            name: "api".into(),
            pid,
            path: "/bin/api".into(),
            args: vec![],
            working_directory: "/".into(),
            restart_count: 2,
        }
    }

    #[test]
    fn lines_carry_the_event_and_exit() {
        let exit = ExitStatus {
            code: Some(3),
            signal: None,
        };
        assert_eq!(
            line(LifecycleEvent::OnShutdown, &process(Some(42)), Some(exit)),
            r#"{"process":"api","event":"on-shutdown","pid":42,"exit_code":3,"signal":null,"restarts":2,"unix_ms":7}"#
        );
        assert_eq!(
            line(LifecycleEvent::PreStart, &process(None), None),
            r#"{"process":"api","event":"pre-start","pid":null,"exit_code":null,"signal":null,"restarts":2,"unix_ms":7}"#
        );
    }

    #[test]
    fn appends_to_the_file() {
        let path =
            std::env::temp_dir().join(format!("event-log-test-{}.jsonl", std::process::id()));
        let path_str = path.to_str().unwrap();
        let mut plugin = EventLog::default();
        plugin.init(json!({ "path": path_str })).unwrap();
        for event in [LifecycleEvent::PreStart, LifecycleEvent::PostStart] {
            plugin
                .lifecycle("event-log", event, &process(Some(1)), None)
                .unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let events: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].to_string())
            .collect();
        assert_eq!(events, [r#""pre-start""#, r#""post-start""#]);
    }

    #[test]
    fn relative_or_missing_path_is_invalid_config() {
        let mut plugin = EventLog::default();
        assert!(matches!(
            plugin.init(json!({ "path": "x.jsonl" })),
            Err(PluginError::InvalidConfig(_))
        ));
        assert!(matches!(
            plugin.init(json!({})),
            Err(PluginError::InvalidConfig(_))
        ));
    }
}
