//! The world a control plugin reaches during `plugin check`, in place of a running pilot-host: a fixed
//! supervisor (six processes in various states, with stats, log lines and the manifest they come from)
//! that answers the `control` calls its grants allow, and a network that answers each granted outgoing
//! HTTP request with a canned `200` and an empty body.
//!
//! Contract: nothing here starts, stops or signals a process, and no request leaves the machine. A
//! change (`start`, `stop`, `restart`, `reload`) is checked as the supervisor checks it (an unknown
//! name is refused, naming the known ones) and then only recorded; the world never changes, so every
//! call of a check sees the same processes. Every call and request made within the grants is listed
//! ([`StandIn::used`]); those beyond the grants never get here (see `plugin::control`) and are
//! findings.

use std::sync::Mutex;

use serde::Serialize;

use pilot_core::extension::ProcessStats;
use pilot_core::manifest::raw::RawManifest;
use pilot_core::supervisor::{ControlError, ProcessStatus, ReloadReport, State};

/// The manifest the stand-in supervisor runs, as `control.manifest` returns it (the same shape a
/// running pilot-host gives).
const MANIFEST: &str = r#"
processes:
  - { name: db, path: /usr/lib/postgresql/15/bin/postgres, ready_strategy: tcp, ready_params: { port: 5432 } }
  - { name: web, path: ./bin/web, args: [--port, "8080"], dependencies: [db], ready_strategy: tcp, ready_params: { port: 8080 } }
  - { name: web-admin, path: ./bin/web, args: [--admin, --port, "8081"], dependencies: [db] }
  - { name: worker, path: ./bin/worker, dependencies: [db] }
  - { name: nightly, path: ./bin/report, shutdown_strategy: do_not_restart }
  - { name: migrate, path: ./bin/migrate, dependencies: [db], shutdown_strategy: do_not_restart }
"#;

/// One process of the stand-in: name, state, pid, restarts, uptime, how its last run ended, why.
type Row = (
    &'static str,
    State,
    Option<u32>,
    u32,
    f64,
    Option<&'static str>,
    Option<&'static str>,
);

/// The processes of [`MANIFEST`], each in a state a plugin should be ready for.
const PROCESSES: [Row; 6] = [
    ("db", State::Ready, Some(4101), 0, 3600.0, None, None),
    (
        "web",
        State::Ready,
        Some(4102),
        1,
        1800.0,
        Some("status 1"),
        None,
    ),
    (
        "web-admin",
        State::Running,
        Some(4103),
        0,
        3590.0,
        None,
        None,
    ),
    (
        "worker",
        State::BackingOff,
        None,
        3,
        0.0,
        Some("status 2"),
        None,
    ),
    (
        "nightly",
        State::Stopped,
        None,
        0,
        0.0,
        Some("status 0"),
        Some("stopped by request"),
    ),
    (
        "migrate",
        State::Failed,
        None,
        5,
        0.0,
        Some("signal 9 (SIGKILL)"),
        Some("crash loop: 5 restarts within 60 s"),
    ),
];

/// A control call or an outgoing request a plugin made within its grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Use {
    /// `control` or `http`.
    pub kind: &'static str,
    /// The control call (`processes`, `restart`, ...) or the request's `host:port`.
    pub target: String,
    /// What it asked and what the check did, e.g. ``restart [`web`]: recorded, not carried out``.
    pub detail: String,
}

impl std::fmt::Display for Use {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let detail = pilot_core::manifest::escape_controls(&self.detail);
        match self.kind {
            "http" => write!(f, "HTTP request {detail}"),
            _ => write!(f, "control call {detail}"),
        }
    }
}

/// The stand-in supervisor and network of one check.
#[derive(Debug, Default)]
pub struct StandIn {
    used: Mutex<Vec<Use>>,
}

impl StandIn {
    /// Returns what the plugin used, in order, each once.
    pub fn used(&self) -> Vec<Use> {
        self.used.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn note(&self, kind: &'static str, target: &str, detail: String) {
        let entry = Use {
            kind,
            target: target.to_string(),
            detail,
        };
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if !used.contains(&entry) {
            used.push(entry);
        }
    }

    /// Answers `processes`.
    pub fn status(&self) -> Vec<ProcessStatus> {
        self.note("control", "processes", "processes: answered".into());
        statuses()
    }

    /// Answers `stats`: figures for the processes that run.
    pub fn stats(&self) -> Vec<ProcessStats> {
        self.note("control", "stats", "stats: answered".into());
        statuses()
            .into_iter()
            .filter_map(|p| {
                let pid = p.pid?;
                let n = f64::from(pid % 100);
                Some(ProcessStats {
                    name: p.name,
                    pid: Some(pid),
                    cpu_percent: n / 4.0,
                    max_cpu_percent: n / 2.0,
                    rss_bytes: (pid as u64 % 100) << 20,
                    max_rss_bytes: (pid as u64 % 100 + 16) << 20,
                    restarts: p.restarts,
                    uptime_sec: p.uptime_sec,
                })
            })
            .collect()
    }

    /// Answers `manifest`, as JSON text.
    pub fn manifest(&self) -> String {
        self.note("control", "manifest", "manifest: answered".into());
        serde_json::to_string(&raw_manifest()).unwrap_or_default()
    }

    /// Answers `logs`: a few lines of a known process.
    pub fn logs(&self, process: &str, tail: usize) -> Result<Vec<String>, ControlError> {
        self.note("control", "logs", format!("logs of `{process}`: answered"));
        known(&[process])?;
        let lines: Vec<String> = (1..=3)
            .map(|i| format!("{process}: line {i} of its output"))
            .collect();
        Ok(lines[lines.len().saturating_sub(tail)..].to_vec())
    }

    /// Takes a change (`start`, `stop`, `restart`): refused for an unknown name, else recorded.
    pub fn change(&self, call: &'static str, processes: &[String]) -> Result<(), ControlError> {
        let names: Vec<&str> = processes.iter().map(String::as_str).collect();
        let shown: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        let result = known(&names);
        let what = match &result {
            Ok(()) => "recorded, not carried out".to_string(),
            Err(e) => format!("refused: {e}"),
        };
        self.note(
            "control",
            call,
            format!("{call} [{}]: {what}", shown.join(", ")),
        );
        result
    }

    /// Takes `reload`: recorded; answers that nothing changed.
    pub fn reload(&self) -> ReloadReport {
        self.note(
            "control",
            "reload",
            "reload: recorded, not carried out".into(),
        );
        ReloadReport {
            unchanged: PROCESSES.iter().map(|p| p.0.to_string()).collect(),
            ..ReloadReport::default()
        }
    }

    /// Takes a granted outgoing request to `uri`: recorded, to be answered `200` without sending it.
    pub fn request(&self, method: &http::Method, uri: &http::Uri) {
        let host = uri.host().unwrap_or_default();
        let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        self.note(
            "http",
            &format!("{host}:{port}"),
            format!("{method} {uri}: answered 200 by the check, not sent"),
        );
    }
}

fn statuses() -> Vec<ProcessStatus> {
    let raw = raw_manifest();
    PROCESSES
        .iter()
        .map(
            |&(name, state, pid, restarts, uptime_sec, last_exit, reason)| {
                let dependencies = raw
                    .processes
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name))
                    .and_then(|p| p.dependencies.clone())
                    .unwrap_or_default();
                ProcessStatus {
                    name: name.to_string(),
                    state,
                    ready: state.is_up(),
                    pid,
                    restarts,
                    last_pid: pid.or(Some(4000 + restarts)),
                    started: None,
                    start_time: pid.map(|_| 1_700_000_000.0 - uptime_sec),
                    uptime_sec,
                    last_exit: last_exit.map(str::to_string),
                    reason: reason.map(str::to_string),
                    retry_in_sec: (state == State::BackingOff).then_some(1.5),
                    dependencies,
                    cpu_percent: 0.0,
                    rss_bytes: 0,
                    cpu_seconds_total: 0.0,
                    adopted: Vec::new(),
                }
            },
        )
        .collect()
}

fn raw_manifest() -> RawManifest {
    serde_yaml::from_str(MANIFEST).expect("the stand-in's manifest is a valid manifest")
}

/// Fails naming the first of `names` that is not a process, as the supervisor does.
fn known(names: &[&str]) -> Result<(), ControlError> {
    match names.iter().find(|n| !PROCESSES.iter().any(|p| p.0 == **n)) {
        None => Ok(()),
        Some(name) => Err(ControlError::UnknownProcess {
            name: name.to_string(),
            known: PROCESSES
                .iter()
                .map(|p| format!("`{}`", p.0))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_processes_are_those_of_the_manifest_in_several_states() {
        let raw = raw_manifest();
        let named: Vec<&str> = raw
            .processes
            .iter()
            .flatten()
            .filter_map(|p| p.name.as_deref())
            .collect();
        let listed: Vec<String> = statuses().into_iter().map(|p| p.name).collect();
        assert_eq!(named, listed);
        let up = statuses().iter().filter(|p| p.ready).count();
        assert!(up >= 2 && up < PROCESSES.len());
        assert_eq!(StandIn::default().stats().len(), 3, "the running ones");
    }

    #[test]
    fn changes_are_refused_for_unknown_names_and_only_recorded() {
        let world = StandIn::default();
        assert!(world.change("restart", &["web".into()]).is_ok());
        let e = world.change("stop", &["web".into(), "nope".into()]);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("no process is called `nope`"));
        let used = world.used();
        assert_eq!(used[0].detail, "restart [`web`]: recorded, not carried out");
        assert!(used[1].detail.starts_with("stop [`web`, `nope`]: refused"));
        assert_eq!(statuses()[1].state, State::Ready, "nothing changed");
    }
}
