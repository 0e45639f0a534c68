//! The supervisor: starts the manifest's processes in dependency order, watches, restarts and stops
//! them, and offers the library API of Process Pilot (`start_process`, `stop_process`,
//! `restart_processes`, status, stats) through a [`Handle`].
//!
//! One task per process owns its child ([`process`]); one coordinator task owns the start order and the
//! shutdown; the handle only sends commands and reads published snapshots.

mod backoff;
pub mod events;
mod fine_timer;
pub mod output;
pub mod pgroup;
mod process;
mod procstat;
mod ready;
mod state;
mod stats;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use self::events::{Bus, Event, EventRecord, Missed, Subscription};
use self::output::{LogBuffer, Printer};
pub use self::output::{LogLine, Stream};
pub use self::pgroup::Guard;
pub use self::process::describe_exit;
use self::process::{Command, Event as TaskEvent, ProcessTask};
pub use self::state::{ProcessStatus, State};
use crate::extension::{Extensions, NoExtensions, ProcessStats};
use crate::graph::DepGraph;
use crate::manifest::{Manifest, ProcessSpec};

/// How to run a supervisor.
pub struct Options {
    /// The plugins' ready strategies, hooks and stat handlers.
    pub extensions: Arc<dyn Extensions>,
    /// The guard process that kills the groups if pilot-host dies, if one runs.
    pub guard: Option<Arc<Guard>>,
    /// Colour the output prefixes.
    pub colour: bool,
    /// Lines of output kept per process.
    pub log_lines: usize,
    /// Keep running when every process has ended (a control server may start them again).
    pub stay_alive: bool,
    /// The event stream to send to (plugins may report to it too).
    pub events: Bus,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            extensions: Arc::new(NoExtensions),
            guard: None,
            colour: false,
            log_lines: 1000,
            stay_alive: false,
            events: Bus::new(),
        }
    }
}

/// A control operation was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No process has that name.
    #[error("no process is called `{name}` (known: {known})")]
    UnknownProcess {
        /// The name asked for.
        name: String,
        /// The defined names.
        known: String,
    },
    /// A dependency is not up, so the process cannot start.
    #[error("cannot start `{name}`: its dependency `{dependency}` is {state}")]
    DependencyDown {
        /// The process.
        name: String,
        /// The dependency.
        dependency: String,
        /// The dependency's state.
        state: &'static str,
    },
    /// The supervisor is shutting down or gone.
    #[error("pilot-host is shutting down")]
    ShuttingDown,
}

/// How a supervisor run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The final state of every process.
    pub statuses: Vec<ProcessStatus>,
}

impl Outcome {
    /// Returns the processes that failed or were skipped.
    pub fn failed(&self) -> Vec<&ProcessStatus> {
        self.statuses
            .iter()
            .filter(|s| matches!(s.state, State::Failed | State::Skipped))
            .collect()
    }

    /// Returns whether everything ended as configured.
    pub fn success(&self) -> bool {
        self.failed().is_empty()
    }
}

struct Shared {
    names: Vec<String>,
    index: HashMap<String, usize>,
    specs: Vec<Arc<ProcessSpec>>,
    dependencies: Vec<Vec<usize>>,
    commands: Vec<mpsc::Sender<Command>>,
    statuses: Vec<watch::Receiver<ProcessStatus>>,
    logs: Vec<Arc<LogBuffer>>,
    stats: Mutex<Vec<ProcessStats>>,
    stat_handlers: BTreeSet<String>,
    extensions: Arc<dyn Extensions>,
    shutdown: watch::Sender<bool>,
    /// Set once the final stop begins: nothing may be started any more.
    closing: std::sync::atomic::AtomicBool,
    events: Bus,
}

/// A cheap, cloneable handle to a running supervisor.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

/// A running supervisor.
pub struct Supervisor {
    handle: Handle,
    coordinator: JoinHandle<Outcome>,
}

/// Starts supervising `manifest` on the current tokio runtime (which must be multi-threaded or live as
/// long as the children: see [`pgroup::spawn`]).
pub fn start(manifest: Manifest, options: Options) -> Supervisor {
    let n = manifest.processes.len();
    let names: Vec<String> = manifest.processes.iter().map(|p| p.name.clone()).collect();
    let index: HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    let graph = DepGraph::new(
        manifest
            .processes
            .iter()
            .map(|p| (p.name.as_str(), &p.dependencies)),
    );
    let dependencies: Vec<Vec<usize>> = names
        .iter()
        .map(|n| graph.dependencies(n).iter().map(|d| index[d]).collect())
        .collect();
    let dependents: Vec<Vec<usize>> = names
        .iter()
        .map(|n| graph.dependents(n).iter().map(|d| index[d]).collect())
        .collect();
    let width = names.iter().map(String::len).max().unwrap_or(0);
    let printer = Printer::start(options.colour, width);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let mut commands = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut logs = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for (i, spec) in manifest.processes.iter().enumerate() {
        let (tx, rx) = mpsc::channel(16);
        let (status_tx, status_rx) = watch::channel(ProcessStatus::pending(&spec.name));
        let buffer = Arc::new(LogBuffer::new(options.log_lines));
        tasks.push(ProcessTask {
            index: i,
            spec: Arc::new(spec.clone()),
            kill_timeout: manifest.kill_timeout,
            extensions: options.extensions.clone(),
            commands: rx,
            events: events_tx.clone(),
            status: status_tx,
            logs: buffer.clone(),
            printer: printer.clone(),
            guard: options.guard.clone(),
            bus: options.events.clone(),
        });
        commands.push(tx);
        statuses.push(status_rx);
        logs.push(buffer);
    }
    let specs: Vec<Arc<ProcessSpec>> = tasks.iter().map(|t| t.spec.clone()).collect();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        stat_handlers: specs
            .iter()
            .flat_map(|s| s.stat_handlers.iter().cloned())
            .collect(),
        names,
        index,
        specs,
        dependencies,
        commands,
        statuses,
        logs,
        stats: Mutex::new(Vec::new()),
        extensions: options.extensions.clone(),
        shutdown,
        closing: std::sync::atomic::AtomicBool::new(false),
        events: options.events.clone(),
    });
    for task in tasks {
        tokio::spawn(task.run());
    }
    let handle = Handle { shared };
    let sampler = tokio::spawn(stats::sample_loop(handle.clone(), manifest.stats_interval));
    let coordinator = Coordinator {
        handle: handle.clone(),
        dependents,
        events: events_rx,
        shutdown: shutdown_rx,
        stay_alive: options.stay_alive,
    };
    let coordinator = tokio::spawn(async move {
        let outcome = coordinator.run().await;
        sampler.abort();
        outcome
    });
    Supervisor {
        handle,
        coordinator,
    }
}

impl Supervisor {
    /// Returns a handle for control operations.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Waits until every process has ended (or was stopped by a shutdown).
    pub async fn wait(self) -> Outcome {
        match self.coordinator.await {
            Ok(outcome) => outcome,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

impl Handle {
    fn lookup(&self, name: &str) -> Result<usize, ControlError> {
        self.shared
            .index
            .get(name)
            .copied()
            .ok_or_else(|| ControlError::UnknownProcess {
                name: name.to_string(),
                known: self
                    .shared
                    .names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Returns a subscription to the event stream, from now on.
    pub fn subscribe(&self) -> Subscription {
        self.shared.events.subscribe()
    }

    /// Returns a snapshot of every process, in manifest order.
    pub fn status(&self) -> Vec<ProcessStatus> {
        self.shared
            .statuses
            .iter()
            .map(|s| s.borrow().clone())
            .collect()
    }

    /// Returns the latest resource sample of every process, in manifest order (empty before the first).
    pub fn stats(&self) -> Vec<ProcessStats> {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Returns the last lines `name` printed.
    pub fn logs(&self, name: &str) -> Result<Vec<LogLine>, ControlError> {
        Ok(self.shared.logs[self.lookup(name)?].snapshot())
    }

    /// Returns the kept lines of `name` and a receiver of the lines it prints from now on.
    pub fn follow_logs(
        &self,
        name: &str,
    ) -> Result<(Vec<LogLine>, tokio::sync::broadcast::Receiver<LogLine>), ControlError> {
        Ok(self.shared.logs[self.lookup(name)?].follow())
    }

    /// Returns whether process `i` has no child and none is on its way (so a start would spawn one).
    fn idle(&self, i: usize) -> bool {
        let state = self.shared.statuses[i].borrow().state;
        state.is_final() || state == State::Pending
    }

    /// Refuses to start process `i` while one of its dependencies is not up.
    fn dependencies_up(&self, i: usize) -> Result<(), ControlError> {
        for &d in &self.shared.dependencies[i] {
            let dep_state = self.shared.statuses[d].borrow().state;
            if !dep_state.is_up() {
                return Err(ControlError::DependencyDown {
                    name: self.shared.names[i].clone(),
                    dependency: self.shared.names[d].clone(),
                    state: dep_state.as_str(),
                });
            }
        }
        Ok(())
    }

    /// Refuses operations that would start a process once the final stop has begun.
    fn open(&self) -> Result<(), ControlError> {
        if self
            .shared
            .closing
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            Err(ControlError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Starts `name` if it is not running; its dependencies must be up.
    pub async fn start_process(&self, name: &str) -> Result<(), ControlError> {
        let i = self.lookup(name)?;
        self.open()?;
        if !self.idle(i) {
            return Ok(());
        }
        self.dependencies_up(i)?;
        self.shared.commands[i]
            .send(Command::Start)
            .await
            .map_err(|_| ControlError::ShuttingDown)
    }

    /// Stops `name` (SIGTERM, grace, SIGKILL to its group) and waits until it is stopped.
    pub async fn stop_process(&self, name: &str) -> Result<(), ControlError> {
        let i = self.lookup(name)?;
        let (tx, rx) = oneshot::channel();
        self.shared.commands[i]
            .send(Command::Stop(tx))
            .await
            .map_err(|_| ControlError::ShuttingDown)?;
        rx.await.map_err(|_| ControlError::ShuttingDown)
    }

    /// Restarts every named process (one that is not running is started) and returns once each has a
    /// new child (or failed to get one). If any name is unknown, or a process that is not running has a
    /// dependency that is not up, nothing is restarted.
    pub async fn restart_processes(&self, names: &[&str]) -> Result<(), ControlError> {
        let indices = names
            .iter()
            .map(|n| self.lookup(n))
            .collect::<Result<Vec<_>, _>>()?;
        self.open()?;
        for &i in &indices {
            if self.idle(i) {
                self.dependencies_up(i)?;
            }
        }
        let mut replies = Vec::with_capacity(indices.len());
        for i in indices {
            let (tx, rx) = oneshot::channel();
            self.shared.commands[i]
                .send(Command::Restart(tx))
                .await
                .map_err(|_| ControlError::ShuttingDown)?;
            replies.push(rx);
        }
        for rx in replies {
            rx.await.map_err(|_| ControlError::ShuttingDown)?;
        }
        Ok(())
    }

    /// Asks for an orderly shutdown: every process is stopped, dependents before their dependencies.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Sends SIGKILL to every running process group at once (the second Ctrl-C).
    pub fn kill_all(&self) {
        for status in self.status() {
            if let Some(pid) = status.pid {
                let _ = pgroup::Pgid::of_child(pid).signal(libc::SIGKILL);
            }
        }
    }
}

/// Owns the start order and the shutdown.
struct Coordinator {
    handle: Handle,
    dependents: Vec<Vec<usize>>,
    events: mpsc::UnboundedReceiver<(usize, TaskEvent)>,
    shutdown: watch::Receiver<bool>,
    stay_alive: bool,
}

impl Coordinator {
    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    fn state(&self, i: usize) -> State {
        self.shared().statuses[i].borrow().state
    }

    async fn send(&self, i: usize, command: Command) {
        let _ = self.shared().commands[i].send(command).await;
    }

    async fn run(mut self) -> Outcome {
        let n = self.shared().names.len();
        let mut started = vec![false; n];
        for (i, flag) in started.iter_mut().enumerate() {
            if self.shared().dependencies[i].is_empty() {
                *flag = true;
                self.send(i, Command::Start).await;
            }
        }
        loop {
            if !self.stay_alive && (0..n).all(|i| self.state(i).is_final()) {
                tracing::info!("every process has ended");
                break;
            }
            let event = tokio::select! {
                event = self.events.recv() => event,
                _ = self.shutdown.wait_for(|&stop| stop) => {
                    tracing::info!("shutting down: stopping every process, dependents first");
                    break;
                }
            };
            let Some((i, event)) = event else { break };
            match event {
                TaskEvent::Up => {
                    for d in self.dependents[i].clone() {
                        let deps_up = self.shared().dependencies[d]
                            .iter()
                            .all(|&x| self.state(x).is_up());
                        // A process stopped on request before it started stays stopped.
                        if !started[d] && deps_up && self.state(d) == State::Pending {
                            started[d] = true;
                            self.send(d, Command::Start).await;
                        }
                    }
                }
                TaskEvent::Ended => self.skip_dependents(i, &mut started).await,
                TaskEvent::Stopped => {}
                TaskEvent::ShutdownEverything => {
                    let name = &self.shared().names[i];
                    tracing::info!("{name}: ended, and its shutdown strategy is shutdown_everything; stopping everything");
                    self.skip_dependents(i, &mut started).await;
                    break;
                }
            }
        }
        self.ordered_stop().await;
        Outcome {
            statuses: self.handle.status(),
        }
    }

    /// Marks the not-yet-started dependents of `i` (and theirs) skipped.
    async fn skip_dependents(&self, i: usize, started: &mut [bool]) {
        let mut stack = vec![(i, self.describe_end(i))];
        while let Some((j, reason)) = stack.pop() {
            for &d in &self.dependents[j] {
                if !started[d] {
                    started[d] = true;
                    let name = &self.shared().names[d];
                    stack.push((d, format!("dependency `{name}` was skipped")));
                    self.send(d, Command::Skip(reason.clone())).await;
                }
            }
        }
    }

    fn describe_end(&self, i: usize) -> String {
        let status = self.shared().statuses[i].borrow().clone();
        let name = &status.name;
        match (status.state, status.reason) {
            (State::Failed, Some(reason)) => format!("dependency `{name}` failed: {reason}"),
            (State::Failed, None) => format!("dependency `{name}` failed"),
            (_, _) => format!("dependency `{name}` ended before it was ready"),
        }
    }

    /// Stops every process once all its dependents are stopped; independent processes in parallel.
    async fn ordered_stop(&self) {
        self.shared()
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared().events.send(events::Event::ShuttingDown);
        let n = self.shared().names.len();
        let (done_tx, done_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| watch::channel(false)).unzip();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, done) in done_tx.into_iter().enumerate() {
            let waits: Vec<watch::Receiver<bool>> = self.dependents[i]
                .iter()
                .map(|&d| done_rx[d].clone())
                .collect();
            let handle = self.handle.clone();
            let name = self.shared().names[i].clone();
            tasks.spawn(async move {
                for mut rx in waits {
                    let _ = rx.wait_for(|&stopped| stopped).await;
                }
                let _ = handle.stop_process(&name).await;
                let _ = done.send(true);
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}
