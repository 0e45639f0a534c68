//! [`ControlPlugins`]: the control plugins a manifest names, started before the processes (their
//! events instance made and configured, so a broken one stops the run before anything starts) and
//! stopped after them (their queued events delivered first).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::access::{ControlAccess, HandleCell};
use super::events::{self, QUEUE};
use super::outgoing::OutgoingGrants;
use super::runtime::{ControlPlugin, Parts};
use super::LoadedControl;
use crate::load::PluginHost;
use crate::sandbox::Grants;
use pilot_core::extension::{PluginEventSink, PluginStatus};
use pilot_core::manifest::Manifest;
use pilot_core::supervisor::Bus;

/// The longest the end of a run waits for a control plugin to take its last events.
const DRAIN: Duration = Duration::from_secs(5);

/// The running control plugins, by name.
#[derive(Default)]
pub struct ControlPlugins {
    plugins: BTreeMap<String, Arc<ControlPlugin>>,
    ends: std::sync::Mutex<Ends>,
}

/// How to end the lanes: a stop for each forwarder, and the lanes' ends.
#[derive(Default)]
struct Ends {
    stops: Vec<oneshot::Sender<oneshot::Sender<()>>>,
    lanes: Vec<oneshot::Receiver<()>>,
}

impl ControlPlugins {
    /// Starts the control plugins `manifest` names, in its order, from `loaded`: each one's events
    /// instance is made and configured here, and from now on it gets the events of `bus` it asked for.
    /// Its control calls reach the supervisor once `handle` is set. Returns every plugin's error.
    pub async fn start(
        host: &PluginHost,
        loaded: &[LoadedControl],
        manifest: &Manifest,
        bus: &Bus,
        handle: HandleCell,
        events: PluginEventSink,
    ) -> Result<ControlPlugins, Vec<String>> {
        let mut set = ControlPlugins::default();
        let mut errors = Vec::new();
        for name in &manifest.control_plugins {
            let Some(l) = loaded.iter().find(|l| &l.description.name == name) else {
                errors.push(format!("control plugin `{name}` is not loaded"));
                continue;
            };
            let settings = manifest.plugins.get(name).cloned().unwrap_or_default();
            let http = settings.grants.http.clone();
            let control = settings.grants.control.clone();
            // `getaddrinfo` for `allow_tcp` names blocks: on a blocking thread.
            let grants = tokio::task::spawn_blocking(move || Grants::resolve(settings, None))
                .await
                .map_err(|e| vec![format!("control plugin `{name}`: cannot start: {e}")])?;
            let plugin = Arc::new(ControlPlugin::new(Parts {
                engine: host.engine.clone(),
                pre: l.pre.clone(),
                description: l.description.clone(),
                file: l.file.display().to_string(),
                grants,
                access: ControlAccess::new(name, control, handle.clone(), events.clone(), None),
                outgoing: OutgoingGrants::new(name, http, events.clone(), None),
                events: events.clone(),
            }));
            match set.launch(plugin, bus).await {
                Ok(()) => {}
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    /// Makes `plugin`'s events instance on the plugin threads, then starts its lane and forwarder.
    async fn launch(&mut self, plugin: Arc<ControlPlugin>, bus: &Bus) -> Result<(), String> {
        let subscription = bus.subscribe();
        let (tx, rx) = oneshot::channel();
        let p = plugin.clone();
        let threads = plugin.threads();
        let started = threads.spawn(async move {
            let _ = tx.send(p.instance().await);
        });
        let first = match rx.await {
            Ok(first) if started => first,
            _ => {
                return Err(format!(
                    "{}: cannot start: the plugin threads stopped",
                    plugin.label
                ))
            }
        };
        let (live, setup) = first.map_err(|e| format!("{}: cannot start: {e}", plugin.label))?;
        *plugin.setup.lock().unwrap_or_else(|p| p.into_inner()) = Some(setup.clone());
        let (lane_tx, lane_rx) = mpsc::channel(QUEUE);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ended_tx, ended_rx) = oneshot::channel();
        let p = plugin.clone();
        let lane_setup = setup.clone();
        threads.spawn(async move {
            events::lane(p, live, lane_setup, lane_rx).await;
            let _ = ended_tx.send(());
        });
        tokio::spawn(events::forward(
            plugin.clone(),
            subscription,
            setup,
            lane_tx,
            stop_rx,
        ));
        let ends = self.ends.get_mut().unwrap_or_else(|p| p.into_inner());
        ends.stops.push(stop_tx);
        ends.lanes.push(ended_rx);
        self.plugins.insert(plugin.name.clone(), plugin);
        Ok(())
    }

    /// Returns the control plugin called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<ControlPlugin>> {
        self.plugins.get(name)
    }

    /// Returns the names of the running control plugins.
    pub fn names(&self) -> Vec<String> {
        self.plugins.keys().cloned().collect()
    }

    /// Returns what can be read about each control plugin.
    pub fn status(&self) -> Vec<PluginStatus> {
        self.plugins.values().map(|p| p.status()).collect()
    }

    /// Delivers the events each plugin still has queued (at most [`DRAIN`] in all), then ends their
    /// lanes. Requests still served finish under their own deadlines.
    pub async fn stop(&self) {
        let Ends { stops, lanes } =
            std::mem::take(&mut *self.ends.lock().unwrap_or_else(|p| p.into_inner()));
        let mut waiting = Vec::new();
        for stop in stops {
            let (done_tx, done_rx) = oneshot::channel();
            if stop.send(done_tx).is_ok() {
                waiting.push(done_rx);
            }
        }
        let all = async {
            for done in waiting {
                let _ = done.await;
            }
            for lane in lanes {
                let _ = lane.await;
            }
        };
        if tokio::time::timeout(DRAIN, all).await.is_err() {
            tracing::warn!(
                "control plugins did not take their last events within {} s; stopping them anyway",
                DRAIN.as_secs()
            );
        }
    }
}
