//! Where a control plugin's granted `control` calls go: the running supervisor, or under `plugin
//! check` the check's stand-in (see [`crate::check::world`]), which answers from a fixed world
//! and records changes without making them. Both answer in the supervisor's own types, so the
//! conversion to what the plugin gets is the same code.

use std::sync::Arc;

use crate::check::world::StandIn;
use pilot_core::extension::ProcessStats;
use pilot_core::supervisor::{ControlError, Handle, ProcessStatus, ReloadError, ReloadReport};

/// The supervisor a granted call reaches.
pub(super) enum Reach {
    /// The running supervisor.
    Supervisor(Handle),
    /// `plugin check`'s stand-in.
    StandIn(Arc<StandIn>),
}

impl Reach {
    pub(super) async fn status(&self) -> Vec<ProcessStatus> {
        match self {
            Reach::Supervisor(h) => h.status().await,
            Reach::StandIn(w) => w.status(),
        }
    }

    pub(super) async fn stats(&self) -> Vec<ProcessStats> {
        match self {
            Reach::Supervisor(h) => h.stats().await,
            Reach::StandIn(w) => w.stats(),
        }
    }

    /// Returns the manifest in effect as JSON text.
    pub(super) async fn manifest(&self) -> Result<String, ControlError> {
        match self {
            Reach::Supervisor(h) => h
                .manifest()
                .await
                .map(|m| serde_json::to_string(&m.raw).unwrap_or_default()),
            Reach::StandIn(w) => Ok(w.manifest()),
        }
    }

    /// Returns the text of the last `tail` lines of `process`.
    pub(super) async fn logs(
        &self,
        process: &str,
        tail: usize,
    ) -> Result<Vec<String>, ControlError> {
        match self {
            Reach::Supervisor(h) => h
                .logs(process, tail)
                .await
                .map(|lines| lines.into_iter().map(|l| l.text).collect()),
            Reach::StandIn(w) => w.logs(process, tail),
        }
    }

    /// Begins `call` (`start`, `stop` or `restart`) of `processes`.
    pub(super) async fn change(
        &self,
        call: &'static str,
        processes: &[String],
    ) -> Result<(), ControlError> {
        let names: Vec<&str> = processes.iter().map(String::as_str).collect();
        match (self, call) {
            (Reach::Supervisor(h), "start") => h.begin_start(&names).await,
            (Reach::Supervisor(h), "stop") => h.begin_stop(&names).await,
            (Reach::Supervisor(h), _) => h.begin_restart(&names).await,
            (Reach::StandIn(w), _) => w.change(call, processes),
        }
    }

    pub(super) async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        match self {
            Reach::Supervisor(h) => h.reload().await,
            Reach::StandIn(w) => Ok(w.reload()),
        }
    }
}
