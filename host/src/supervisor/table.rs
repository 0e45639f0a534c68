//! The process table the coordinator owns: one [`Entry`] per process, keyed by name, in manifest order,
//! with the dependency graph between them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::backoff::Backoff;
use super::hooks::Hooks;
use super::output::LogBuffer;
use super::state::Phase;
use super::ControlError;
use crate::extension::Extensions;
use crate::manifest::{Manifest, ProcessSpec};

/// The answer a request waits for once it took effect.
pub(super) type Reply = oneshot::Sender<Result<(), ControlError>>;

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
    /// Stay stopped, with this reason.
    Stay(String),
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

/// One process in the table.
pub(super) struct Entry {
    pub name: Arc<str>,
    pub spec: Arc<ProcessSpec>,
    /// Its program, prepared at its first start for every run of `spec`.
    pub program: Option<Result<Arc<super::spawn::Prepared>, String>>,
    pub phase: Phase,
    /// Its colour in the output, kept across reloads.
    pub colour: usize,
    pub restarts: u32,
    pub backoff: Backoff,
    /// The generation of the current run (messages of older runs are ignored).
    pub gen: u64,
    /// Stops the current run.
    pub stop: Option<oneshot::Sender<()>>,
    /// What to do when the requested stop completes.
    pub then: Then,
    /// No automatic start or restart (a stop plan covers it: the final stop, or a reload).
    pub held: bool,
    /// When the current child was spawned.
    pub spawned_at: Option<Instant>,
    pub last_pid: Option<u32>,
    pub last_exit: Option<String>,
    /// Requests answered at the next spawn (or with its failure).
    pub on_spawn: Vec<(Until, Reply)>,
    /// Requests answered once ready (or when that fails).
    pub on_ready: Vec<Reply>,
    /// Requests answered once it is down.
    pub on_down: Vec<Reply>,
    pub logs: Arc<LogBuffer>,
    pub hooks: Hooks,
    pub sample: Option<Sample>,
    /// Escaped descendants adopted by pilot-host.
    pub adopted: Vec<u32>,
}

impl Entry {
    /// Makes the entry of `spec`, waiting for its dependencies.
    pub fn new(
        spec: Arc<ProcessSpec>,
        colour: usize,
        log_lines: usize,
        extensions: &Arc<dyn Extensions>,
    ) -> Entry {
        Entry {
            name: spec.name.as_str().into(),
            backoff: Backoff::new(spec.restart.clone()),
            hooks: Hooks::new(&spec.lifecycle_hooks, extensions),
            spec,
            program: None,
            phase: Phase::Pending,
            colour,
            restarts: 0,
            gen: 0,
            stop: None,
            then: Then::Stay(String::new()),
            held: false,
            spawned_at: None,
            last_pid: None,
            last_exit: None,
            on_spawn: Vec::new(),
            on_ready: Vec::new(),
            on_down: Vec::new(),
            logs: Arc::new(LogBuffer::new(log_lines)),
            sample: None,
            adopted: Vec::new(),
        }
    }

    /// Answers every waiting request with `result` (a failure, or the end of waiting).
    pub fn answer_all(&mut self, result: Result<(), ControlError>) {
        for (_, reply) in self.on_spawn.drain(..) {
            let _ = reply.send(result.clone());
        }
        for reply in self.on_ready.drain(..) {
            let _ = reply.send(result.clone());
        }
        for reply in self.on_down.drain(..) {
            let _ = reply.send(result.clone());
        }
    }

    /// Replaces the spec (a reload): new hooks and restart policy when they changed.
    pub fn respec(&mut self, spec: Arc<ProcessSpec>, extensions: &Arc<dyn Extensions>) {
        if spec.lifecycle_hooks != self.spec.lifecycle_hooks {
            self.hooks = Hooks::new(&spec.lifecycle_hooks, extensions);
        }
        if spec.restart != self.spec.restart {
            self.backoff = Backoff::new(spec.restart.clone());
        }
        self.spec = spec;
        self.program = None;
    }
}

/// Every process, by name, in manifest order.
#[derive(Default)]
pub(super) struct Table {
    pub entries: HashMap<Arc<str>, Entry>,
    /// Names in manifest order.
    pub order: Vec<Arc<str>>,
    /// Direct dependents of each process.
    pub dependents: HashMap<Arc<str>, Vec<Arc<str>>>,
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

    /// Rebuilds order and dependents after entries changed, in `manifest` order.
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
        self.dependents.clear();
        for name in &self.order {
            for dep in &self.entries[name].spec.dependencies {
                if let Some((dep, _)) = self.entries.get_key_value(dep.as_str()) {
                    self.dependents
                        .entry(dep.clone())
                        .or_default()
                        .push(name.clone());
                }
            }
        }
    }

    /// Returns the direct dependents of `name`.
    pub fn dependents_of(&self, name: &str) -> Vec<Arc<str>> {
        self.dependents.get(name).cloned().unwrap_or_default()
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
