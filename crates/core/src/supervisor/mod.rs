//! The supervisor: starts the manifest's processes in dependency order, watches, restarts and stops
//! them, reloads the manifest, and offers Process Pilot's library API (`start_process`,
//! `stop_process`, `restart_processes`, status, stats) through a [`Handle`].
//!
//! One coordinator ([`coordinator`]) owns the process table, keyed by name, and decides everything:
//! a state machine that takes requests, runs' reports and timers one at a time and returns what is to
//! be done, without doing it. Its shell ([`shell`]), one task, feeds it and carries that out; every
//! request is answered once it took effect. Each run of a child is a task of its own ([`run`]) that
//! spawns ([`spawn`]), watches and stops it and reports to the shell; the coordinator alone decides
//! what comes next. Hooks run off that path ([`hooks`]), stats are sampled on a blocking thread
//! ([`stats`]), and everything that happens goes out on one event stream ([`events`]).

mod backoff;
mod coordinator;
pub mod events;
mod fine_timer;
mod hooks;
pub mod orphans;
pub mod output;
pub mod pgroup;
mod procstat;
mod ready;
mod run;
mod shell;
pub mod spawn;
mod state;
mod stats;
mod table;

use std::ffi::OsString;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use self::coordinator::{Core, Settings};
pub use self::events::{Bus, Event, EventRecord, Missed, Subscription};
use self::output::Printer;
pub use self::output::{LogLine, Stream};
pub use self::pgroup::Guard;
pub use self::run::describe_exit;
use self::shell::{Ctx, Msg, Request, Shell};
pub use self::state::{ProcessStatus, State};
pub use self::table::Until;
use crate::extension::{Extensions, NoExtensions, PluginStatus, ProcessStats};
use crate::manifest::{Catalog, Manifest, ProcessSpec};

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
    /// The names the plugins provide, for validating a reloaded manifest.
    pub catalog: Catalog,
    /// Become a child subreaper: adopt, track, reap and stop descendants that leave their process
    /// group. For a process that owns its children (the `pilot-host` binary): it reaps children it
    /// did not spawn.
    pub adopt_orphans: bool,
    /// Marks every child's environment with this run (`PILOT_HOST_RUN`), so the guard finds escaped
    /// descendants if pilot-host dies.
    pub run_id: Option<String>,
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
            catalog: Catalog::default(),
            adopt_orphans: false,
            run_id: None,
        }
    }
}

/// A control operation was refused or could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No process has that name; nothing was changed.
    #[error("no process is called `{name}` (known: {known})")]
    UnknownProcess {
        /// The name asked for.
        name: String,
        /// The defined names.
        known: String,
    },
    /// A dependency is not up, so the process cannot start; nothing was changed.
    #[error("cannot start `{name}`: its dependency `{dependency}` is {state}")]
    DependencyDown {
        /// The process.
        name: String,
        /// The dependency.
        dependency: String,
        /// The dependency's state.
        state: &'static str,
    },
    /// A reload is replacing the process (it stops, then starts with its new settings once every
    /// process the reload stops is down); nothing was changed.
    #[error("`{name}` is being replaced by a reload; ask again once the reload is done")]
    Reloading {
        /// The process.
        name: String,
    },
    /// The supervisor is shutting down or gone; nothing was changed.
    #[error("pilot-host is shutting down")]
    ShuttingDown,
    /// The operation began but did not get where it was asked to (the process failed, exited or was
    /// stopped first).
    #[error("`{name}` did not get there: {reason}")]
    Failed {
        /// The process.
        name: String,
        /// What happened instead.
        reason: String,
    },
}

/// A reload could not be done; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The manifest cannot be read or is invalid; every problem is listed.
    #[error("the manifest is not valid; nothing was changed:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
    /// The plugins cannot take the new settings; every problem is listed.
    #[error("the plugins cannot take the new manifest; nothing was changed:\n  - {}", .0.join("\n  - "))]
    Plugins(Vec<String>),
    /// The supervisor refused it.
    #[error(transparent)]
    Refused(#[from] ControlError),
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Processes started by it.
    pub added: Vec<String>,
    /// Processes stopped and removed.
    pub removed: Vec<String>,
    /// Processes whose settings changed (restarted if they were running).
    pub changed: Vec<String>,
    /// Unchanged processes restarted because a dependency changed.
    pub restarted: Vec<String>,
    /// Processes left running as they were.
    pub unchanged: Vec<String>,
}

/// One process with its settings.
#[derive(Debug, Clone)]
pub struct ProcessDetail {
    /// Its status.
    pub status: ProcessStatus,
    /// Its settings in the manifest in effect.
    pub spec: Arc<ProcessSpec>,
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

/// A cheap, cloneable handle to a running supervisor.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Msg>,
    bus: Bus,
    extensions: Arc<dyn Extensions>,
    catalog: Arc<Catalog>,
}

/// A running supervisor.
pub struct Supervisor {
    handle: Handle,
    done: oneshot::Receiver<Outcome>,
}

/// Starts supervising `manifest` on the current tokio runtime, which must be multi-threaded or live as
/// long as the children (the death signal fires when the thread that spawned a child exits).
pub fn start(manifest: Manifest, options: Options) -> Supervisor {
    let width = manifest
        .processes
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0);
    // The control plane's token stays with pilot-host: a child gets it only from its own `env`.
    let mut base_env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| {
            k != pgroup::RUN_VAR && k != pgroup::PROCESS_VAR && k != crate::secrets::TOKEN_VAR
        })
        .collect();
    if let Some(id) = &options.run_id {
        base_env.push((pgroup::RUN_VAR.into(), id.into()));
    }
    if options.adopt_orphans {
        match orphans::become_subreaper() {
            Ok(()) => {
                tokio::spawn(reap_adopted());
            }
            Err(e) => tracing::warn!(
                "cannot become a child subreaper ({e}); daemons that leave their group may escape"
            ),
        }
    }
    spawn::prepare(manifest.processes.len());
    let adopt = options.adopt_orphans;
    let ctx = Ctx {
        printer: Printer::start(options.colour, width, options.events.clone()),
        extensions: options.extensions.clone(),
        guard: options.guard,
        base_env: Arc::new(base_env),
        adopt: options.adopt_orphans,
        log_lines: options.log_lines,
        bus: options.events.clone(),
    };
    let settings = Settings {
        stay_alive: options.stay_alive,
        adopt,
        seed: fastrand::u64(..),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done) = oneshot::channel();
    let handle = Handle {
        tx: tx.clone(),
        bus: options.events,
        extensions: options.extensions,
        catalog: Arc::new(options.catalog),
    };
    let targets_version = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let core = Core::new(manifest, settings);
    let shell = Shell::new(core, ctx, (tx, rx), done_tx, targets_version.clone());
    tokio::spawn(shell.run());
    stats::start(handle.clone(), adopt, targets_version);
    Supervisor { handle, done }
}

/// Reaps adopted descendants whenever a child ends (our own children are reaped through pidfds).
async fn reap_adopted() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut sigchld) = signal(SignalKind::child()) else {
        return;
    };
    while sigchld.recv().await.is_some() {
        // Most SIGCHLDs are for children pilot-host spawned, which their runs reap through pidfds:
        // a quick look (see `orphans::any_adopted`) decides whether a blocking thread is needed.
        if orphans::any_adopted() {
            let _ = tokio::task::spawn_blocking(orphans::reap).await;
        }
    }
}

impl Supervisor {
    /// Returns a handle for control operations.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Waits until every process has ended (or was stopped by a shutdown).
    pub async fn wait(self) -> Outcome {
        self.done
            .await
            .expect("the coordinator reports the outcome before it ends")
    }
}

impl Handle {
    /// Sends `request` without waiting for it; false once the coordinator is gone.
    fn tell(&self, request: Request) -> bool {
        self.tx.send(Msg::Request(request)).is_ok()
    }

    /// [`Handle::ask`] from a thread outside the runtime.
    fn ask_blocking<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Request(make(tx))).ok()?;
        rx.blocking_recv().ok()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Request(make(tx))).ok()?;
        rx.await.ok()
    }

    async fn settle(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<shell::Waiter, ControlError>>) -> Request,
    ) -> Result<(), ControlError> {
        let waiter = self.ask(make).await.ok_or(ControlError::ShuttingDown)??;
        waiter.await.unwrap_or(Err(ControlError::ShuttingDown))
    }

    /// Returns a subscription to the event stream, from now on.
    pub fn subscribe(&self) -> Subscription {
        self.bus.subscribe()
    }

    /// Returns a snapshot of every process, in manifest order (empty once the supervisor is gone).
    pub async fn status(&self) -> Vec<ProcessStatus> {
        self.ask(Request::Status).await.unwrap_or_default()
    }

    /// Returns one process's status and settings.
    pub async fn process(&self, name: &str) -> Result<ProcessDetail, ControlError> {
        self.ask(|tx| Request::Process(name.to_string(), tx))
            .await
            .unwrap_or(Err(ControlError::ShuttingDown))
    }

    /// Returns the latest resource sample of every process, in manifest order (empty before the first).
    pub async fn stats(&self) -> Vec<ProcessStats> {
        self.ask(Request::Stats).await.unwrap_or_default()
    }

    /// Returns the last lines `name` printed, at most `tail` of them.
    pub async fn logs(&self, name: &str, tail: usize) -> Result<Vec<LogLine>, ControlError> {
        let buffer = self
            .ask(|tx| Request::Logs(name.to_string(), tx))
            .await
            .unwrap_or(Err(ControlError::ShuttingDown))?;
        Ok(buffer.tail(tail))
    }

    /// Returns the last lines `name` printed (at most `tail`) and a receiver of the lines that follow.
    pub async fn follow_logs(
        &self,
        name: &str,
        tail: usize,
    ) -> Result<(Vec<LogLine>, broadcast::Receiver<LogLine>), ControlError> {
        let buffer = self
            .ask(|tx| Request::Logs(name.to_string(), tx))
            .await
            .unwrap_or(Err(ControlError::ShuttingDown))?;
        Ok(buffer.follow(tail))
    }

    /// Returns the manifest in effect.
    pub async fn manifest(&self) -> Result<Arc<Manifest>, ControlError> {
        self.ask(Request::Manifest)
            .await
            .ok_or(ControlError::ShuttingDown)
    }

    /// Returns what can be read about each plugin.
    pub fn plugins(&self) -> Vec<PluginStatus> {
        self.extensions.plugins()
    }

    /// Starts `name` if it is not running (its dependencies must be up); answers once it is spawned.
    pub async fn start_process(&self, name: &str) -> Result<(), ControlError> {
        self.start_process_until(name, Until::Spawned).await
    }

    /// Starts `name` if it is not running; answers once it got to `until`.
    pub async fn start_process_until(&self, name: &str, until: Until) -> Result<(), ControlError> {
        self.settle(|tx| Request::Start(name.to_string(), until, tx))
            .await
    }

    /// Stops `name` (SIGTERM, grace, SIGKILL to its group) and answers once its group is gone.
    pub async fn stop_process(&self, name: &str) -> Result<(), ControlError> {
        self.settle(|tx| Request::Stop(name.to_string(), tx)).await
    }

    /// Restarts every named process (one that is not running is started) and answers once each has a
    /// new child. If any name is unknown, or a process that is not running has a dependency that is
    /// not up, nothing is restarted.
    pub async fn restart_processes(&self, names: &[&str]) -> Result<(), ControlError> {
        self.restart_processes_until(names, Until::Spawned).await
    }

    /// Restarts every named process, answering once each got to `until`.
    pub async fn restart_processes_until(
        &self,
        names: &[&str],
        until: Until,
    ) -> Result<(), ControlError> {
        let names = names.iter().map(|n| n.to_string()).collect();
        let waiters = self
            .ask(|tx| Request::Restart(names, until, tx))
            .await
            .ok_or(ControlError::ShuttingDown)??;
        let mut result = Ok(());
        for waiter in waiters {
            let r = waiter.await.unwrap_or(Err(ControlError::ShuttingDown));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Asks for each named process to start (those running are left alone) and returns once the
    /// supervisor accepted every request, not when they took effect. If any name is unknown, nothing
    /// starts.
    pub async fn begin_start(&self, names: &[&str]) -> Result<(), ControlError> {
        self.known(names).await?;
        for name in names {
            self.ask(|tx| Request::Start(name.to_string(), Until::Spawned, tx))
                .await
                .ok_or(ControlError::ShuttingDown)??;
        }
        Ok(())
    }

    /// Asks for each named process to stop and returns once the supervisor accepted every request.
    /// If any name is unknown, nothing stops.
    pub async fn begin_stop(&self, names: &[&str]) -> Result<(), ControlError> {
        self.known(names).await?;
        for name in names {
            self.ask(|tx| Request::Stop(name.to_string(), tx))
                .await
                .ok_or(ControlError::ShuttingDown)??;
        }
        Ok(())
    }

    /// Asks for the named processes to restart and returns once the supervisor accepted it (all or
    /// nothing, as [`Handle::restart_processes`]).
    pub async fn begin_restart(&self, names: &[&str]) -> Result<(), ControlError> {
        let names = names.iter().map(|n| n.to_string()).collect();
        self.ask(|tx| Request::Restart(names, Until::Spawned, tx))
            .await
            .ok_or(ControlError::ShuttingDown)??;
        Ok(())
    }

    /// Fails naming the first of `names` that is not a process.
    async fn known(&self, names: &[&str]) -> Result<(), ControlError> {
        let all = self.status().await;
        if all.is_empty() {
            return Err(ControlError::ShuttingDown);
        }
        match names.iter().find(|n| !all.iter().any(|p| p.name == **n)) {
            None => Ok(()),
            Some(name) => Err(ControlError::UnknownProcess {
                name: name.to_string(),
                known: all
                    .iter()
                    .map(|p| format!("`{}`", p.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Re-reads the manifest file, validates it in full, prepares the plugins, and applies it: added
    /// processes start, removed ones stop, changed ones (and their dependents) restart, the rest keep
    /// running. Invalid: nothing changes, and every problem is returned.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let source = self.manifest().await?.source.clone();
        let catalog = self.catalog.clone();
        let loaded = tokio::task::spawn_blocking(move || crate::manifest::load(&source, &catalog))
            .await
            .map_err(|e| ReloadError::Invalid(vec![e.to_string()]))?
            .map_err(|e| ReloadError::Invalid(e.problem_lines()))?;
        for warning in &loaded.warnings {
            tracing::warn!("reload: {warning}");
        }
        self.extensions
            .reload(&loaded.manifest)
            .await
            .map_err(ReloadError::Plugins)?;
        Ok(self.apply(loaded.manifest).await?)
    }

    /// Applies an already validated manifest (see [`Handle::reload`]).
    pub async fn apply(&self, manifest: Manifest) -> Result<ReloadReport, ControlError> {
        self.ask(|tx| Request::Reload(Box::new(manifest), tx))
            .await
            .unwrap_or(Err(ControlError::ShuttingDown))
    }

    /// Asks for an orderly shutdown: every process is stopped, dependents before their dependencies.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Msg::Request(Request::Shutdown));
    }

    /// Sends SIGKILL to every running process group at once (the second Ctrl-C).
    pub fn kill_all(&self) {
        let _ = self.tx.send(Msg::Request(Request::KillAll));
    }
}
