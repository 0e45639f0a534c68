//! The `control` interface as a control plugin calls it: every call checked against the plugin's
//! grants (a denial is logged and reported once per kind), changes rate-limited so that a plugin that
//! restarts on every event cannot start a restart storm, and carried out through the supervisor's
//! [`Handle`].

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::bindings::pilot::plugin::control::{self, ControlError, ProcessPhase, ProcessState};
use super::reach::Reach;
use crate::bindings::ProcessStats;
use crate::store::StoreState;
use crate::watch::{Attempt, Recorder};
use pilot_core::extension::{PluginEvent, PluginEventSink};
use pilot_core::manifest::ControlGrant;
use pilot_core::supervisor::{ControlError as Refusal, Handle, State};

/// Changes (start, stop, restart, reload) a plugin may make at once before it must wait.
pub const CHANGE_BURST: u32 = 10;

/// How often a plugin that used its burst regains one change.
pub const CHANGE_EVERY: Duration = Duration::from_secs(1);

/// The most log lines `logs` returns.
const MAX_TAIL: u32 = 1000;

/// Where a control plugin's calls reach the supervisor, once it runs.
pub type HandleCell = Arc<OnceLock<Handle>>;

/// What one control plugin may ask of the supervisor; shared by its Stores.
pub struct ControlAccess {
    plugin: String,
    grants: BTreeSet<ControlGrant>,
    handle: HandleCell,
    events: PluginEventSink,
    recorder: Option<Recorder>,
    reported: Mutex<HashSet<&'static str>>,
    bucket: Mutex<Bucket>,
}

/// A token bucket for changes.
struct Bucket {
    tokens: u32,
    since: Instant,
}

impl ControlAccess {
    /// The access of `plugin` with `grants`, reaching the supervisor through `handle` once it is set.
    pub fn new(
        plugin: &str,
        grants: BTreeSet<ControlGrant>,
        handle: HandleCell,
        events: PluginEventSink,
        recorder: Option<Recorder>,
    ) -> Arc<ControlAccess> {
        Arc::new(ControlAccess {
            plugin: plugin.to_string(),
            grants,
            handle,
            events,
            recorder,
            reported: Mutex::new(HashSet::new()),
            bucket: Mutex::new(Bucket {
                tokens: CHANGE_BURST,
                since: Instant::now(),
            }),
        })
    }

    /// Returns where the call goes if `grant` is given (and, for changes, the rate allows): the
    /// supervisor, or under `plugin check` its stand-in.
    fn allow(&self, call: &'static str, grant: ControlGrant) -> Result<Reach, ControlError> {
        if !self.grants.contains(&grant) {
            let fix = format!(
                "add `{}` to `plugins.{}.grants.control` in the manifest",
                grant.name(),
                self.plugin
            );
            self.report(
                call,
                &format!(
                    "the control call `{call}` (needs the grant `{}`)",
                    grant.name()
                ),
            );
            return Err(ControlError::Denied(format!(
                "`{call}` is not granted to plugin `{}`; {fix}",
                self.plugin
            )));
        }
        if grant != ControlGrant::Read && !self.take_token() {
            self.report("rate", "changes faster than its rate limit allows");
            return Err(ControlError::Refused(format!(
                "plugin `{}` asked for more than {CHANGE_BURST} changes at once (then one per {} s); try again later",
                self.plugin,
                CHANGE_EVERY.as_secs()
            )));
        }
        if let Some(stand_in) = self.recorder.as_ref().and_then(|r| r.stand_in()) {
            return Ok(Reach::StandIn(stand_in.clone()));
        }
        self.handle
            .get()
            .cloned()
            .map(Reach::Supervisor)
            .ok_or_else(|| {
                ControlError::Refused(
                    "the supervisor is not running yet; try again from an event".into(),
                )
            })
    }

    fn take_token(&self) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let earned = (b.since.elapsed().as_millis() / CHANGE_EVERY.as_millis().max(1)) as u32;
        if earned > 0 {
            b.tokens = (b.tokens + earned).min(CHANGE_BURST);
            b.since = Instant::now();
        }
        if b.tokens == 0 {
            return false;
        }
        b.tokens -= 1;
        true
    }

    /// Logs and reports `what` the first time a call of `kind` is refused.
    fn report(&self, kind: &'static str, what: &str) {
        if let Some(recorder) = &self.recorder {
            recorder.record(Attempt {
                kind: "control",
                target: kind.to_string(),
            });
        }
        let first = self
            .reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kind);
        if first {
            tracing::warn!("plugin `{}`: denied {what}", self.plugin);
            (self.events)(PluginEvent::Denied {
                plugin: self.plugin.clone(),
                what: what.to_string(),
            });
        }
    }
}

/// Maps the supervisor's refusal to the plugin's error.
fn refusal(e: Refusal) -> ControlError {
    match e {
        Refusal::UnknownProcess { .. } => ControlError::UnknownProcess(e.to_string()),
        other => ControlError::Refused(other.to_string()),
    }
}

fn phase(state: State) -> ProcessPhase {
    match state {
        State::Pending => ProcessPhase::Pending,
        State::Starting => ProcessPhase::Starting,
        State::Ready => ProcessPhase::Ready,
        State::Running => ProcessPhase::Running,
        State::Stopping => ProcessPhase::Stopping,
        State::Stopped => ProcessPhase::Stopped,
        State::BackingOff => ProcessPhase::BackingOff,
        State::Failed => ProcessPhase::Failed,
        State::Skipped => ProcessPhase::Skipped,
    }
}

type Answer<T> = wasmtime::Result<Result<T, ControlError>>;

impl StoreState {
    fn access(&self, call: &'static str, grant: ControlGrant) -> Result<Reach, ControlError> {
        match &self.control {
            Some(access) => access.allow(call, grant),
            None => Err(ControlError::Denied(
                "only control plugins may call `control`".into(),
            )),
        }
    }
}

impl control::Host for StoreState {
    async fn processes(&mut self) -> Answer<Vec<ProcessState>> {
        let handle = match self.access("processes", ControlGrant::Read) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        let list = handle.status().await;
        Ok(Ok(list
            .into_iter()
            .map(|p| ProcessState {
                phase: phase(p.state),
                up: p.ready,
                pid: p.pid,
                restarts: p.restarts,
                uptime_sec: p.pid.map(|_| p.uptime_sec),
                last_exit: p.last_exit,
                reason: p.reason,
                name: p.name,
            })
            .collect()))
    }

    async fn stats(&mut self) -> Answer<Vec<ProcessStats>> {
        let handle = match self.access("stats", ControlGrant::Read) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(handle
            .stats()
            .await
            .iter()
            .map(crate::extensions::stats)
            .collect()))
    }

    async fn manifest(&mut self) -> Answer<String> {
        let handle = match self.access("manifest", ControlGrant::Read) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        Ok(handle.manifest().await.map_err(refusal))
    }

    async fn logs(&mut self, process: String, tail: u32) -> Answer<Vec<String>> {
        let handle = match self.access("logs", ControlGrant::Read) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        Ok(handle
            .logs(&process, tail.min(MAX_TAIL) as usize)
            .await
            .map_err(refusal))
    }

    async fn start(&mut self, processes: Vec<String>) -> Answer<()> {
        let handle = match self.access("start", ControlGrant::Start) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        Ok(handle.change("start", &processes).await.map_err(refusal))
    }

    async fn stop(&mut self, processes: Vec<String>) -> Answer<()> {
        let handle = match self.access("stop", ControlGrant::Stop) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        Ok(handle.change("stop", &processes).await.map_err(refusal))
    }

    async fn restart(&mut self, processes: Vec<String>) -> Answer<()> {
        let handle = match self.access("restart", ControlGrant::Restart) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        Ok(handle.change("restart", &processes).await.map_err(refusal))
    }

    async fn reload(&mut self) -> Answer<String> {
        let handle = match self.access("reload", ControlGrant::Reload) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        Ok(match handle.reload().await {
            Ok(report) => Ok(serde_json::to_string(&report).unwrap_or_default()),
            Err(e) => Err(ControlError::Refused(e.to_string())),
        })
    }
}
