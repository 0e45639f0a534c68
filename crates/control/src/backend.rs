//! The adapter between the control plane and the supervisor: every call the API makes goes through
//! [`Backend`], so that the supervisor's API can change behind it in one place.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::model::{LogLineView, ProcessDetailView, ProcessView};
use super::view::{line_view, spec_json, view};
use pilot_core::extension::PluginStatus;
use pilot_core::manifest::Manifest;
pub use pilot_core::supervisor::Until;
use pilot_core::supervisor::{
    ControlError, Handle, LogLine, ReloadError, ReloadReport, Subscription,
};
use pilot_plugins::ControlPlugins;

/// The control plane's view of a running supervisor.
#[derive(Clone)]
pub struct Backend {
    handle: Handle,
    /// Samples of every process as JSON, one per stats interval while anyone listens.
    stats: broadcast::Sender<Arc<str>>,
    /// Woken by the first receiver of the stats feed, so that nobody listening costs no wake-up.
    listening: Arc<tokio::sync::Notify>,
    stats_interval: Duration,
    controls: Arc<ControlPlugins>,
}

impl Backend {
    /// Wraps a supervisor's handle; `stats_interval` paces the samples of `/v1/events?stats=true`.
    pub fn new(handle: Handle, stats_interval: Duration) -> Backend {
        Backend {
            handle,
            stats: broadcast::channel(4).0,
            listening: Arc::new(tokio::sync::Notify::new()),
            stats_interval,
            controls: Arc::default(),
        }
    }

    /// Serves `controls` under `/plugins/<name>/` and lists them with the plugins.
    pub fn with_control_plugins(mut self, controls: Arc<ControlPlugins>) -> Backend {
        self.controls = controls;
        self
    }

    /// Returns the running control plugins.
    pub fn control_plugins(&self) -> &ControlPlugins {
        &self.controls
    }

    /// Returns a receiver of the samples `{"type": "stats", "processes": [...]}` (as JSON text).
    pub fn stats_feed(&self) -> broadcast::Receiver<Arc<str>> {
        let rx = self.stats.subscribe();
        self.listening.notify_one();
        rx
    }

    /// Sends a sample to the stats feed every stats interval while it has receivers, and sleeps
    /// until one comes while it has none; runs until aborted.
    pub async fn feed_stats(self) {
        let mut ticker = tokio::time::interval(self.stats_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.stats.receiver_count() == 0 {
                // A receiver that came meanwhile left a permit: this returns at once.
                self.listening.notified().await;
                ticker.reset_immediately();
                continue;
            }
            ticker.tick().await;
            let sample =
                serde_json::json!({ "type": "stats", "processes": self.processes().await });
            let _ = self.stats.send(Arc::from(sample.to_string()));
        }
    }

    /// Returns every process, in manifest order.
    pub async fn processes(&self) -> Vec<ProcessView> {
        self.handle.status().await.into_iter().map(view).collect()
    }

    /// Returns one process with its spec.
    pub async fn process(&self, name: &str) -> Result<ProcessDetailView, ControlError> {
        let detail = self.handle.process(name).await?;
        Ok(ProcessDetailView {
            spec: spec_json(&detail.spec),
            status: view(detail.status),
        })
    }

    /// Returns the last `tail` lines `name` printed (all kept lines without `tail`).
    pub async fn logs(
        &self,
        name: &str,
        tail: Option<usize>,
    ) -> Result<Vec<LogLineView>, ControlError> {
        let lines = self.handle.logs(name, tail.unwrap_or(usize::MAX)).await?;
        Ok(lines.into_iter().map(line_view).collect())
    }

    /// Returns the last `tail` kept lines of `name` and a receiver of the lines it prints from now on.
    pub async fn follow_logs(
        &self,
        name: &str,
        tail: Option<usize>,
    ) -> Result<(Vec<LogLineView>, broadcast::Receiver<LogLine>), ControlError> {
        let (kept, rx) = self
            .handle
            .follow_logs(name, tail.unwrap_or(usize::MAX))
            .await?;
        Ok((kept.into_iter().map(line_view).collect(), rx))
    }

    /// Returns a subscription to the event stream.
    pub fn subscribe(&self) -> Subscription {
        self.handle.subscribe()
    }

    /// Returns the manifest in effect.
    pub async fn manifest(&self) -> Result<Arc<Manifest>, ControlError> {
        self.handle.manifest().await
    }

    /// Returns what can be read about each plugin, control plugins included.
    pub fn plugins(&self) -> Vec<PluginStatus> {
        let mut all = self.handle.plugins();
        all.extend(self.controls.status());
        all
    }

    /// Starts `name` if it is not running, and answers once `until` holds.
    pub async fn start(&self, name: &str, until: Until) -> Result<(), ControlError> {
        self.handle.start_process_until(name, until).await
    }

    /// Stops `name` and answers once its process group is gone.
    pub async fn stop(&self, name: &str) -> Result<(), ControlError> {
        self.handle.stop_process(name).await
    }

    /// Restarts every named process (nothing if any name is unknown) and answers once `until` holds.
    pub async fn restart(&self, names: &[String], until: Until) -> Result<(), ControlError> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.handle.restart_processes_until(&refs, until).await
    }

    /// Reloads the manifest file.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.handle.reload().await
    }

    /// Begins the ordered stop of everything, as SIGTERM does.
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }
}
