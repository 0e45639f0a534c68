//! The adapter between the control plane and the supervisor: every call the API makes goes through
//! [`Backend`], so that the supervisor's API can change behind it in one place.
//!
//! Shims until the supervision core's v2 API lands (each marked `SHIM`): the process views join
//! `Handle::status()` with `Handle::stats()` and the manifest kept at start; CPU seconds are read from
//! `/proc`; start and restart wait for their effect on the event stream; reload is not supported yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::model::{LogLineView, ProcessDetail, ProcessView};
use super::view::{cpu_seconds, line_view, spec_json, unix_now};
use crate::extension::{Extensions, PluginStatus};
use crate::manifest::Manifest;
use crate::supervisor::{ControlError, Event, Handle, LogLine, Missed, State, Subscription};

/// How long a start or restart waits for its effect to show, on top of the ready timeout.
const WAIT_MARGIN: Duration = Duration::from_secs(10);

/// What a start or restart waits for before it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The new child was spawned.
    Spawned,
    /// The new child is ready (by its ready strategy, or at once without one).
    Ready,
}

/// Why a control operation did not take effect.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    /// The supervisor refused it; nothing changed.
    #[error(transparent)]
    Refused(#[from] ControlError),
    /// It was carried out, but the process failed or ended on the way.
    #[error("`{name}` {what}: {reason}")]
    Failed {
        /// The process.
        name: String,
        /// What it did not get to, e.g. "did not become ready".
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The operation is not supported yet.
    #[error("{0}")]
    Unsupported(String),
}

/// The control plane's view of a running supervisor.
#[derive(Clone)]
pub struct Backend {
    handle: Handle,
    manifest: Arc<Manifest>,
    extensions: Arc<dyn Extensions>,
    /// Samples of every process as JSON, one per stats interval while anyone listens.
    stats: broadcast::Sender<Arc<str>>,
}

impl Backend {
    /// Wraps a supervisor's handle, the manifest it runs and its plugins.
    pub fn new(
        handle: Handle,
        manifest: Arc<Manifest>,
        extensions: Arc<dyn Extensions>,
    ) -> Backend {
        Backend {
            handle,
            manifest,
            extensions,
            stats: broadcast::channel(4).0,
        }
    }

    /// Returns a receiver of the samples `{"type": "stats", "processes": [...]}` (as JSON text).
    pub fn stats_feed(&self) -> broadcast::Receiver<Arc<str>> {
        self.stats.subscribe()
    }

    /// Sends a sample to the stats feed every stats interval while it has receivers; runs until
    /// aborted.
    pub async fn feed_stats(self) {
        let mut ticker = tokio::time::interval(self.manifest.stats_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if self.stats.receiver_count() == 0 {
                continue;
            }
            let sample =
                serde_json::json!({ "type": "stats", "processes": self.processes().await });
            let _ = self.stats.send(Arc::from(sample.to_string()));
        }
    }

    /// Returns every process, in manifest order.
    pub async fn processes(&self) -> Vec<ProcessView> {
        // SHIM: v2's `status().await` carries CPU, RSS, dependencies and start time itself.
        let stats = self.handle.stats();
        self.handle
            .status()
            .into_iter()
            .map(|s| {
                let sample = stats.iter().find(|x| x.name == s.name && x.pid == s.pid);
                let spec = self.manifest.process(&s.name);
                let running = s.pid.is_some();
                let uptime = s.uptime_sec();
                ProcessView {
                    ready: s.state.is_up(),
                    state: s.state.as_str().to_string(),
                    pid: s.pid,
                    uptime_sec: uptime,
                    restarts: s.restarts,
                    last_exit: s.last_exit,
                    reason: s.reason,
                    cpu_percent: sample.map_or(0.0, |x| x.cpu_percent),
                    rss_bytes: sample.map_or(0, |x| x.rss_bytes),
                    cpu_seconds_total: s.pid.map_or(0.0, cpu_seconds),
                    start_time: (running && s.started.is_some()).then(|| unix_now() - uptime),
                    dependencies: spec.map(|p| p.dependencies.clone()).unwrap_or_default(),
                    name: s.name,
                }
            })
            .collect()
    }

    /// Returns one process with its spec.
    pub async fn process(&self, name: &str) -> Result<ProcessDetail, ControlError> {
        let status = self
            .processes()
            .await
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| self.unknown(name))?;
        let spec = self
            .manifest
            .process(name)
            .ok_or_else(|| self.unknown(name))?;
        Ok(ProcessDetail {
            status,
            spec: spec_json(spec),
        })
    }

    fn unknown(&self, name: &str) -> ControlError {
        ControlError::UnknownProcess {
            name: name.to_string(),
            known: self
                .manifest
                .processes
                .iter()
                .map(|p| format!("`{}`", p.name))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Returns the last `tail` lines `name` printed (all kept lines without `tail`).
    pub async fn logs(
        &self,
        name: &str,
        tail: Option<usize>,
    ) -> Result<Vec<LogLineView>, ControlError> {
        // SHIM: v2's `logs(name, tail).await`.
        let lines = self.handle.logs(name)?;
        let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
        Ok(lines.into_iter().skip(skip).map(line_view).collect())
    }

    /// Returns the kept lines of `name` and a receiver of the lines it prints from now on.
    pub fn follow_logs(
        &self,
        name: &str,
    ) -> Result<(Vec<LogLineView>, broadcast::Receiver<LogLine>), ControlError> {
        let (kept, rx) = self.handle.follow_logs(name)?;
        Ok((kept.into_iter().map(line_view).collect(), rx))
    }

    /// Returns a subscription to the event stream.
    pub fn subscribe(&self) -> Subscription {
        self.handle.subscribe()
    }

    /// Returns the manifest in effect.
    pub fn manifest(&self) -> Arc<Manifest> {
        self.manifest.clone()
    }

    /// Returns what can be read about each plugin.
    pub fn plugins(&self) -> Vec<PluginStatus> {
        self.extensions.plugins()
    }

    /// Starts `name` if it is not running, and answers once `until` holds.
    pub async fn start(&self, name: &str, until: Until) -> Result<(), ActionError> {
        // SHIM: v2's `start_process_until(name, until)`.
        let mut events = self.handle.subscribe();
        let before = self.status_of(name)?;
        let started = Instant::now();
        self.handle.start_process(name).await?;
        let up_already = before.state.is_up() || before.state == State::Starting;
        let pid = match before.pid {
            Some(pid) if up_already => pid,
            _ => self.wait_spawn(&mut events, name, None, started).await?,
        };
        if until == Until::Ready {
            self.wait_ready(&mut events, name, pid, started).await?;
        }
        Ok(())
    }

    /// Stops `name` and answers once its process group is gone.
    pub async fn stop(&self, name: &str) -> Result<(), ActionError> {
        Ok(self.handle.stop_process(name).await?)
    }

    /// Restarts every named process (nothing if any name is unknown) and answers once `until` holds.
    pub async fn restart(&self, names: &[String], until: Until) -> Result<(), ActionError> {
        // SHIM: v2's `restart_processes_until(names, until)`.
        let mut events = self.handle.subscribe();
        let started = Instant::now();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.handle.restart_processes(&refs).await?;
        for name in names {
            let status = self.status_of(name)?;
            let Some(pid) = status.pid else {
                return Err(ActionError::Failed {
                    name: name.clone(),
                    what: "did not start again",
                    reason: status
                        .reason
                        .unwrap_or_else(|| status.state.as_str().to_string()),
                });
            };
            if until == Until::Ready {
                self.wait_ready(&mut events, name, pid, started).await?;
            }
        }
        Ok(())
    }

    /// Reloads the manifest file.
    pub async fn reload(&self) -> Result<serde_json::Value, ActionError> {
        // SHIM: v2's `reload()` answers a `ReloadReport` or a `ReloadError` with every problem.
        Err(ActionError::Unsupported(
            "reloading the manifest is not supported by this pilot-host yet; restart pilot-host to apply a changed manifest".into(),
        ))
    }

    /// Begins the ordered stop of everything, as SIGTERM does.
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }

    fn status_of(&self, name: &str) -> Result<crate::supervisor::ProcessStatus, ControlError> {
        self.handle
            .status()
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| self.unknown(name))
    }

    fn deadline(&self, name: &str, started: Instant) -> Instant {
        let ready = self
            .manifest
            .process(name)
            .and_then(|p| p.ready.as_ref())
            .map_or(Duration::ZERO, |r| r.timeout);
        started + ready + WAIT_MARGIN
    }

    /// Waits for a spawn of `name` (other than `old`); returns its pid.
    async fn wait_spawn(
        &self,
        events: &mut Subscription,
        name: &str,
        old: Option<u32>,
        started: Instant,
    ) -> Result<u32, ActionError> {
        let deadline = self.deadline(name, started);
        self.wait(events, name, deadline, "did not start", |e| match e {
            Event::Spawned { process, pid } if process == name && Some(*pid) != old => Some(*pid),
            _ => None,
        })
        .await
    }

    /// Waits until `name`'s child `pid` is ready.
    async fn wait_ready(
        &self,
        events: &mut Subscription,
        name: &str,
        pid: u32,
        started: Instant,
    ) -> Result<(), ActionError> {
        let now = self.status_of(name)?;
        if now.pid == Some(pid) && now.state.is_up() {
            return Ok(());
        }
        let deadline = self.deadline(name, started);
        self.wait(
            events,
            name,
            deadline,
            "did not become ready",
            |e| match e {
                Event::Ready {
                    process, pid: p, ..
                } if process == name && *p == pid => Some(()),
                _ => None,
            },
        )
        .await
    }

    /// Waits for the event `want` picks, failing when `name` ends up failed, stopped or skipped.
    async fn wait<T>(
        &self,
        events: &mut Subscription,
        name: &str,
        deadline: Instant,
        what: &'static str,
        want: impl Fn(&Event) -> Option<T>,
    ) -> Result<T, ActionError> {
        let failed = |reason: String| ActionError::Failed {
            name: name.to_string(),
            what,
            reason,
        };
        loop {
            let next = tokio::time::timeout_at(deadline.into(), events.recv()).await;
            let record = match next {
                Err(_) => return Err(failed("no answer from the supervisor in time".into())),
                Ok(Err(Missed::Closed)) => return Err(ControlError::ShuttingDown.into()),
                // Events were lost: the state tells whether it already ended.
                Ok(Err(Missed::Lagged(_))) => {
                    let s = self.status_of(name)?;
                    if s.state.is_final() {
                        return Err(failed(s.reason.unwrap_or_else(|| s.state.as_str().into())));
                    }
                    continue;
                }
                Ok(Ok(record)) => record,
            };
            if let Some(found) = want(&record.event) {
                return Ok(found);
            }
            if let Event::State {
                process,
                to,
                reason,
                ..
            } = &record.event
            {
                if process == name && to.is_final() {
                    return Err(failed(reason.clone().unwrap_or_else(|| to.as_str().into())));
                }
            }
        }
    }
}
