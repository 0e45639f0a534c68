//! [`PluginSet`]: every loaded plugin, an actor for each one the manifest uses, and the tables that
//! route names to actors; swapped whole on a live reload.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::actor::Actor;
use super::bindings::Description;
use super::load::{LoadedPlugin, PluginHost};
use pilot_core::extension::{PluginEventSink, PluginStatus};
use pilot_core::manifest::{Manifest, PluginSettings};

/// A started plugin: its actor and the settings it was started with.
pub(super) struct Started {
    pub actor: Arc<Actor>,
    settings: PluginSettings,
    loaded: usize,
}

/// Which actor answers which name.
#[derive(Default)]
pub(super) struct Table {
    pub started: BTreeMap<String, Started>,
    pub ready: HashMap<String, Arc<Actor>>,
    pub hooks: HashMap<String, Arc<Actor>>,
    pub handlers: HashMap<String, Arc<Actor>>,
}

/// Every loaded plugin, with an actor for each one a manifest uses, reachable by the names it provides.
pub struct PluginSet {
    host: PluginHost,
    loaded: Vec<LoadedPlugin>,
    events: PluginEventSink,
    pub(super) table: RwLock<Arc<Table>>,
    interval_ns: AtomicU64,
    reloading: tokio::sync::Mutex<()>,
}

/// Returns whether `manifest` uses the plugin described by `d` (by a name it provides, or a
/// `plugins.<name>` section).
fn used(manifest: &Manifest, d: &Description) -> bool {
    manifest.plugins.contains_key(&d.name)
        || manifest.processes.iter().any(|p| {
            p.ready
                .as_ref()
                .is_some_and(|r| d.ready_strategies.iter().any(|s| s == r.strategy.name()))
                || p.lifecycle_hooks
                    .iter()
                    .any(|h| d.lifecycle_hooks.contains(h))
                || p.stat_handlers.iter().any(|h| d.stat_handlers.contains(h))
        })
}

impl PluginSet {
    /// Keeps every loaded plugin and starts each one `manifest` uses (by a name it provides or a
    /// `plugins.<name>` section) with its first instance, so a bad configuration is reported before
    /// anything starts; returns every plugin's error. Failures, quarantines and dropped log lines are
    /// reported to `events`.
    pub async fn start(
        host: &PluginHost,
        plugins: Vec<LoadedPlugin>,
        manifest: &Manifest,
        events: PluginEventSink,
    ) -> Result<PluginSet, Vec<String>> {
        let set = PluginSet {
            host: host.clone(),
            loaded: plugins,
            events,
            table: RwLock::new(Arc::new(Table::default())),
            interval_ns: AtomicU64::new(0),
            reloading: tokio::sync::Mutex::new(()),
        };
        set.apply(manifest).await?;
        Ok(set)
    }

    /// Starts the plugins `manifest` uses that are not started, restarts those whose settings changed
    /// (fresh instances with the new settings), and keeps the rest; on any error nothing changes.
    pub(super) async fn apply(&self, manifest: &Manifest) -> Result<(), Vec<String>> {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.snapshot();
        let mut next = Table::default();
        let mut errors = Vec::new();
        for (i, plugin) in self.loaded.iter().enumerate() {
            let d = &plugin.description;
            let old = current.started.get(&d.name);
            if !used(manifest, d) {
                // Still started plugins stay: hooks of processes being removed may still call them.
                if let Some(old) = old {
                    next.insert(i, d, old.actor.clone(), old.settings.clone());
                }
                continue;
            }
            let settings = manifest.plugins.get(&d.name).cloned().unwrap_or_default();
            match old {
                Some(old) if old.settings == settings => {
                    next.insert(i, d, old.actor.clone(), settings)
                }
                _ => match self.start_one(plugin, settings.clone()).await {
                    Ok(actor) => next.insert(i, d, Arc::new(actor), settings),
                    Err(e) => errors.push(e),
                },
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        self.interval_ns.store(
            manifest.ready_check_interval.as_nanos() as u64,
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Starts one plugin's actor and makes its first instance.
    async fn start_one(
        &self,
        plugin: &LoadedPlugin,
        settings: PluginSettings,
    ) -> Result<Actor, String> {
        let d = &plugin.description;
        let label = format!(
            "plugin `{}` {}",
            d.name,
            pilot_core::manifest::escape_controls(&d.version)
        );
        let actor = plugin
            .actor(&self.host, settings, self.events.clone(), None)
            .map_err(|e| format!("{label}: cannot start its actor: {e}"))?;
        let first = actor
            .with(|sandbox| {
                Box::pin(sandbox.call(super::call_fn(|_, _| Box::pin(async { Ok(()) }))))
            })
            .await;
        match first {
            Some(Ok(())) => Ok(actor),
            Some(Err(e)) => Err(format!("{label}: cannot start: {e}")),
            None => Err(format!("{label}: cannot start: its actor stopped")),
        }
    }

    pub(super) fn snapshot(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Returns the pause between two calls of a ready check.
    pub(super) fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns.load(Ordering::Relaxed))
    }

    /// Returns the actor of the started plugin called `name` (for tests and benchmarks).
    pub fn actor(&self, name: &str) -> Option<Arc<Actor>> {
        self.snapshot().started.get(name).map(|s| s.actor.clone())
    }

    /// Returns what can be read about each started plugin.
    pub(super) fn status(&self) -> Vec<PluginStatus> {
        let table = self.snapshot();
        table
            .started
            .values()
            .map(|s| {
                let p = &self.loaded[s.loaded];
                let d = &p.description;
                let c = &s.actor.counters;
                PluginStatus {
                    name: d.name.clone(),
                    version: d.version.clone(),
                    file: p.file.display().to_string(),
                    provides: d
                        .ready_strategies
                        .iter()
                        .chain(&d.lifecycle_hooks)
                        .chain(&d.stat_handlers)
                        .cloned()
                        .collect(),
                    calls_total: c.calls.load(Ordering::Relaxed),
                    failures_total: c.failures.load(Ordering::Relaxed),
                    quarantined: c.quarantined.load(Ordering::Relaxed),
                    fuel_consumed_total: c.fuel.load(Ordering::Relaxed),
                    last_error: c
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                }
            })
            .collect()
    }
}

impl Table {
    fn insert(
        &mut self,
        loaded: usize,
        d: &Description,
        actor: Arc<Actor>,
        settings: PluginSettings,
    ) {
        for (names, map) in [
            (&d.ready_strategies, &mut self.ready),
            (&d.lifecycle_hooks, &mut self.hooks),
            (&d.stat_handlers, &mut self.handlers),
        ] {
            map.extend(names.iter().map(|n| (n.clone(), actor.clone())));
        }
        self.started.insert(
            d.name.clone(),
            Started {
                actor,
                settings,
                loaded,
            },
        );
    }
}
