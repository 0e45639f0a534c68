//! The process table the coordinator owns: one [`Entry`] per process, keyed by name, in manifest order,
//! with the dependency graph between them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::backoff::Backoff;
use super::state::Phase;
use super::ControlError;
use crate::graph::DepGraph;
use crate::manifest::{Manifest, ProcessSpec};

/// Names a request that waits for its effect; the shell keeps the reply channel under it, the core
/// answers it with [`super::coordinator::Effect::Answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Ticket(pub u64);

/// What a request that starts a process waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Until {
    /// The child is spawned.
    #[default]
    Spawned,
    /// The child is ready (by its ready strategy; at once without one).
    Ready,
}

/// What happens when a requested stop completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Then {
    /// Stay stopped, with this reason if there is one to give.
    Stay(Option<String>),
    /// Start again (a restart, or a start asked for while stopping).
    Start {
        /// Whether it counts as a restart.
        restarting: bool,
    },
}

/// A resource sample of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Sample {
    pub pid: Option<u32>,
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub max_cpu_percent: f64,
    pub max_rss_bytes: u64,
}

/// One process in the table: plain data, nothing that does input or output.
pub(super) struct Entry {
    pub name: Arc<str>,
    pub spec: Arc<ProcessSpec>,
    pub phase: Phase,
    /// Its colour in the output, kept across reloads.
    pub colour: usize,
    pub restarts: u32,
    pub backoff: Backoff,
    /// The generation of the current run or restart timer (reports of older ones are ignored).
    pub gen: u64,
    /// The current run was not told to stop yet.
    pub stoppable: bool,
    /// What to do when the requested stop completes.
    pub then: Then,
    /// No automatic start or restart (a stop plan covers it: the final stop, or a reload).
    pub held: bool,
    /// When the current child was spawned.
    pub spawned_at: Option<Instant>,
    pub last_pid: Option<u32>,
    pub last_exit: Option<String>,
    /// Requests answered at the next spawn (or with its failure).
    pub on_spawn: Vec<(Until, Ticket)>,
    /// Requests answered once ready (or when that fails).
    pub on_ready: Vec<Ticket>,
    /// Requests answered once it is down.
    pub on_down: Vec<Ticket>,
    pub sample: Option<Sample>,
    /// Escaped descendants adopted by pilot-host.
    pub adopted: Vec<u32>,
}

impl Entry {
    /// Makes the entry of `spec`, waiting for its dependencies.
    pub fn new(spec: Arc<ProcessSpec>, colour: usize) -> Entry {
        Entry {
            name: spec.name.as_str().into(),
            backoff: Backoff::new(spec.restart.clone()),
            spec,
            phase: Phase::Pending,
            colour,
            restarts: 0,
            gen: 0,
            stoppable: false,
            then: Then::Stay(None),
            held: false,
            spawned_at: None,
            last_pid: None,
            last_exit: None,
            on_spawn: Vec::new(),
            on_ready: Vec::new(),
            on_down: Vec::new(),
            sample: None,
            adopted: Vec::new(),
        }
    }

    /// Takes every waiting request, to be answered alike (a failure, or the end of waiting).
    pub fn take_waiting(&mut self) -> impl Iterator<Item = Ticket> + '_ {
        let spawn = self.on_spawn.drain(..).map(|(_, t)| t);
        spawn
            .chain(self.on_ready.drain(..))
            .chain(self.on_down.drain(..))
    }

    /// Replaces the spec (a reload): a new restart policy when it changed.
    pub fn respec(&mut self, spec: Arc<ProcessSpec>) {
        if spec.restart != self.spec.restart {
            self.backoff = Backoff::new(spec.restart.clone());
        }
        self.spec = spec;
    }
}

/// Every process, by name, in manifest order, with the dependency graph between them.
#[derive(Default)]
pub(super) struct Table {
    pub entries: HashMap<Arc<str>, Entry>,
    /// Names in manifest order.
    pub order: Vec<Arc<str>>,
    /// The dependencies between the entries.
    pub graph: DepGraph,
}

impl Table {
    /// Returns the entry of `name`, or the error naming the known ones.
    pub fn get(&self, name: &str) -> Result<&Entry, ControlError> {
        self.entries
            .get(name)
            .ok_or_else(|| ControlError::UnknownProcess {
                name: name.to_string(),
                known: self
                    .order
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Returns the entry of `name`, which must exist.
    pub fn entry(&mut self, name: &str) -> &mut Entry {
        self.entries.get_mut(name).expect("a known process")
    }

    /// Rebuilds order and graph after entries changed, in `manifest` order.
    pub fn reindex(&mut self, manifest: &Manifest) {
        self.order = manifest
            .processes
            .iter()
            .filter_map(|p| {
                self.entries
                    .get_key_value(p.name.as_str())
                    .map(|(k, _)| k.clone())
            })
            .collect();
        self.graph = DepGraph::new(self.order.iter().map(|n| {
            let deps = &self.entries[n].spec.dependencies;
            (&**n, deps)
        }));
    }

    /// Returns the direct dependents of `name`, in manifest order.
    pub fn dependents_of(&self, name: &str) -> Vec<Arc<str>> {
        self.graph.dependents(name)
    }

    /// Refuses a start of `name` while one of its dependencies is not up.
    pub fn dependencies_up(&self, name: &str) -> Result<(), ControlError> {
        let entry = self.get(name)?;
        for dep in &entry.spec.dependencies {
            let state = self.entries.get(dep.as_str()).map(|e| e.phase.state());
            if let Some(state) = state.filter(|s| !s.is_up()) {
                return Err(ControlError::DependencyDown {
                    name: name.to_string(),
                    dependency: dep.clone(),
                    state: state.as_str(),
                });
            }
        }
        Ok(())
    }
}
