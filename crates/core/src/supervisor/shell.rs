//! The coordinator's shell: one task that feeds the [`Core`] what happens (requests from handles,
//! reports from runs, timers) and carries out what it decides (spawning runs, telling them to stop,
//! arming timers, publishing events, answering requests, signalling groups).
//!
//! It decides nothing. What it keeps per process is what the core must not hold: the log buffer, the
//! hook queue, the prepared program and the stop channel of the current run. Read-only requests
//! (status, stats, logs) are answered from the core's snapshots without changing it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::coordinator::{Core, Effect, Input, Launch, Reading, Sweep, Targets};
use super::events::Bus;
use super::hooks::Hooks;
use super::orphans::{self, Orphan};
use super::output::{LogBuffer, Printer};
use super::pgroup::{Guard, Pgid};
use super::run::{Run, RunEvent};
use super::spawn::PreparedProgram;
use super::state::ProcessStatus;
use super::table::{Ticket, Until};
use super::{ControlError, Outcome, ProcessDetail, ReloadReport};
use crate::extension::{Extensions, ProcessStats};
use crate::manifest::{Manifest, ProcessSpec};

/// What the shell handles.
pub(super) enum Msg {
    /// A request from a handle.
    Request(Request),
    /// A report from a run.
    Run {
        name: Arc<str>,
        gen: u64,
        event: RunEvent,
    },
    /// A restart delay ran out.
    Retry { name: Arc<str>, gen: u64 },
}

/// Answered once a request took effect.
pub(super) type Waiter = oneshot::Receiver<Result<(), ControlError>>;
/// The answer to a reload.
pub(super) type ReloadReply = oneshot::Sender<Result<ReloadReport, ControlError>>;
type Answer<T> = oneshot::Sender<Result<T, ControlError>>;
type Reply = oneshot::Sender<Result<(), ControlError>>;

/// A request from a handle.
pub(super) enum Request {
    Status(oneshot::Sender<Vec<ProcessStatus>>),
    Process(String, Answer<ProcessDetail>),
    Start(String, Until, Answer<Waiter>),
    Stop(String, Answer<Waiter>),
    Restart(Vec<String>, Until, Answer<Vec<Waiter>>),
    Logs(String, Answer<Arc<LogBuffer>>),
    Manifest(oneshot::Sender<Arc<Manifest>>),
    Reload(Box<Manifest>, ReloadReply),
    Shutdown,
    KillAll,
    Stats(oneshot::Sender<Vec<ProcessStats>>),
    /// For the sampler, which has the targets of the version given (if any).
    Targets(Option<u64>, oneshot::Sender<Targets>),
    /// The readings that changed since the last sample, and the adopted descendants if they changed.
    Sampled(
        Vec<Reading>,
        Option<Vec<Orphan>>,
        /// The stats of every process after the sample, for the stat handlers (when there are).
        Option<oneshot::Sender<Vec<ProcessStats>>>,
    ),
}

/// What runs need from the supervisor, shared by all of them.
pub(super) struct Ctx {
    pub extensions: Arc<dyn Extensions>,
    pub guard: Option<Arc<Guard>>,
    pub printer: Printer,
    pub base_env: Arc<Vec<(OsString, OsString)>>,
    pub adopt: bool,
    pub log_lines: usize,
    pub bus: Bus,
}

/// A prepared program, or why it cannot be (a NUL byte somewhere).
type Program = Result<Arc<PreparedProgram>, String>;

/// What the shell keeps for one process.
struct Held {
    logs: Arc<LogBuffer>,
    /// The hook queue, and the hooks it was made for.
    hooks: Option<(Vec<String>, Hooks)>,
    /// The program prepared for this spec, for every run of it.
    program: Option<(Arc<ProcessSpec>, Program)>,
    /// Stops the current run (of this generation).
    stop: Option<(u64, oneshot::Sender<()>)>,
}

/// The shell's state.
pub(super) struct Shell {
    core: Core,
    ctx: Ctx,
    rx: mpsc::UnboundedReceiver<Msg>,
    /// For runs and timers; dropped once everything is over, so the loop ends with the last handle.
    tx: Option<mpsc::UnboundedSender<Msg>>,
    /// Tells [`super::Supervisor::wait`] the outcome.
    done: Option<oneshot::Sender<Outcome>>,
    /// The core's version, for the sampler to read without asking.
    targets_version: Arc<AtomicU64>,
    held: HashMap<Arc<str>, Held>,
    replies: HashMap<Ticket, Reply>,
    reload_replies: HashMap<Ticket, ReloadReply>,
    next_ticket: u64,
}

impl Shell {
    /// Makes the shell around `core`; nothing starts until [`Shell::run`].
    pub fn new(
        core: Core,
        ctx: Ctx,
        channel: (mpsc::UnboundedSender<Msg>, mpsc::UnboundedReceiver<Msg>),
        done: oneshot::Sender<Outcome>,
        targets_version: Arc<AtomicU64>,
    ) -> Shell {
        Shell {
            core,
            ctx,
            rx: channel.1,
            tx: Some(channel.0),
            done: Some(done),
            targets_version,
            held: HashMap::new(),
            replies: HashMap::new(),
            reload_replies: HashMap::new(),
            next_ticket: 0,
        }
    }

    /// Starts what can start, then handles messages until the last handle is gone.
    pub async fn run(mut self) {
        let _ = self.feed(Input::Begin);
        while let Some(msg) = self.rx.recv().await {
            let _ = match msg {
                Msg::Request(request) => {
                    self.request(request);
                    Ok(())
                }
                Msg::Run { name, gen, event } => self.feed(match event {
                    RunEvent::Spawned { pid } => Input::Spawned { name, gen, pid },
                    RunEvent::Ready { after } => Input::Ready { name, gen, after },
                    RunEvent::Ended(end) => Input::Ended { name, gen, end },
                }),
                Msg::Retry { name, gen } => self.feed(Input::Retry { name, gen }),
            };
        }
    }

    /// Hands `input` to the core and carries out what it decided.
    fn feed(&mut self, input: Input) -> Result<(), ControlError> {
        let result = self.core.handle(Instant::now(), input);
        for effect in self.core.take_effects() {
            self.carry_out(effect);
        }
        self.targets_version
            .store(self.core.version(), Ordering::Release);
        result
    }

    fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        Ticket(self.next_ticket)
    }

    /// Feeds a request that waits for its effect; its waiter, or why it was refused.
    fn waiting(&mut self, make: impl FnOnce(Ticket) -> Input) -> Result<Waiter, ControlError> {
        let ticket = self.ticket();
        let (reply, waiter) = oneshot::channel();
        self.replies.insert(ticket, reply);
        match self.feed(make(ticket)) {
            Ok(()) => Ok(waiter),
            Err(e) => {
                self.replies.remove(&ticket);
                Err(e)
            }
        }
    }

    fn request(&mut self, request: Request) {
        let now = Instant::now();
        match request {
            Request::Status(reply) => {
                let _ = reply.send(self.core.statuses(now));
            }
            Request::Process(name, reply) => {
                let _ = reply.send(self.core.detail(now, &name));
            }
            Request::Start(name, until, reply) => {
                let waiter = self.waiting(|ticket| Input::Start {
                    name,
                    until,
                    ticket,
                });
                let _ = reply.send(waiter);
            }
            Request::Stop(name, reply) => {
                let waiter = self.waiting(|ticket| Input::Stop { name, ticket });
                let _ = reply.send(waiter);
            }
            Request::Restart(names, until, reply) => {
                let tickets: Vec<Ticket> = names.iter().map(|_| self.ticket()).collect();
                let mut waiters = Vec::with_capacity(names.len());
                for &ticket in &tickets {
                    let (tx, rx) = oneshot::channel();
                    self.replies.insert(ticket, tx);
                    waiters.push(rx);
                }
                let input = Input::Restart {
                    names,
                    until,
                    tickets: tickets.clone(),
                };
                let result = self.feed(input).map(|()| waiters);
                if result.is_err() {
                    for ticket in &tickets {
                        self.replies.remove(ticket);
                    }
                }
                let _ = reply.send(result);
            }
            Request::Logs(name, reply) => {
                let logs = self.core.known(&name).map(|n| self.held(&n).logs.clone());
                let _ = reply.send(logs);
            }
            Request::Manifest(reply) => {
                let _ = reply.send(self.core.manifest().clone());
            }
            Request::Reload(manifest, reply) => {
                let ticket = self.ticket();
                self.reload_replies.insert(ticket, reply);
                if let Err(e) = self.feed(Input::Reload { manifest, ticket }) {
                    if let Some(reply) = self.reload_replies.remove(&ticket) {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Request::Shutdown => {
                let _ = self.feed(Input::Shutdown);
            }
            Request::KillAll => {
                let _ = self.feed(Input::KillAll);
            }
            Request::Stats(reply) => {
                let _ = reply.send(self.core.stats(now));
            }
            Request::Targets(seen, reply) => {
                let _ = reply.send(self.core.targets(seen));
            }
            Request::Sampled(readings, orphans, reply) => {
                let _ = self.feed(Input::Sampled { readings, orphans });
                if let Some(reply) = reply {
                    let _ = reply.send(self.core.stats(Instant::now()));
                }
            }
        }
    }

    /// What the shell keeps for `name`, made at first use.
    fn held(&mut self, name: &Arc<str>) -> &mut Held {
        let log_lines = self.ctx.log_lines;
        self.held.entry(name.clone()).or_insert_with(|| Held {
            logs: Arc::new(LogBuffer::new(log_lines)),
            hooks: None,
            program: None,
            stop: None,
        })
    }

    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::Spawn(launch) => self.spawn(launch),
            Effect::Stop { name, gen } => {
                let held = self.held(&name);
                if let Some((g, stop)) = held.stop.take() {
                    if g == gen {
                        let _ = stop.send(());
                    } else {
                        held.stop = Some((g, stop));
                    }
                }
            }
            Effect::Timer { name, gen, at } => {
                let Some(tx) = self.tx.clone() else { return };
                let at = tokio::time::Instant::from_std(at);
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    let _ = tx.send(Msg::Retry { name, gen });
                });
            }
            Effect::Publish(event) => self.ctx.bus.send(event),
            Effect::Answer { ticket, result } => {
                if let Some(reply) = self.replies.remove(&ticket) {
                    let _ = reply.send(result);
                }
            }
            Effect::Reloaded { ticket, result } => {
                if let Some(reply) = self.reload_replies.remove(&ticket) {
                    let _ = reply.send(result);
                }
            }
            Effect::Kill { groups, pids } => {
                use nix::sys::signal::{kill, Signal};
                for pid in groups {
                    let _ = Pgid::of_child(pid).signal(Signal::SIGKILL);
                }
                for pid in pids {
                    let _ = kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
            Effect::Guard { pgid } => {
                if let Some(guard) = &self.ctx.guard {
                    guard.add(Pgid::of_child(pgid));
                }
            }
            Effect::Width(width) => self.ctx.printer.set_width(width),
            Effect::Forget(name) => {
                self.held.remove(&name);
            }
            Effect::Finish { outcome, sweep } => self.finish(outcome, sweep),
        }
    }

    /// Starts the run `launch` describes, with this process's log buffer, hooks and program.
    fn spawn(&mut self, launch: Launch) {
        let Some(tx) = self.tx.clone() else { return };
        let extensions = self.ctx.extensions.clone();
        let base_env = self.ctx.base_env.clone();
        let held = self.held(&launch.name);
        let hooks = match &held.hooks {
            Some((names, hooks)) if *names == launch.spec.lifecycle_hooks => hooks.clone(),
            _ => {
                let names = launch.spec.lifecycle_hooks.clone();
                let hooks = Hooks::new(&names, &extensions);
                held.hooks = Some((names, hooks.clone()));
                hooks
            }
        };
        let program = match &held.program {
            Some((spec, program)) if Arc::ptr_eq(spec, &launch.spec) => program.clone(),
            _ => {
                let program = super::run::program(&launch.spec, &base_env)
                    .prepare()
                    .map_err(|e| e.to_string());
                held.program = Some((launch.spec.clone(), program.clone()));
                program
            }
        };
        let (stop, stop_rx) = oneshot::channel();
        held.stop = Some((launch.gen, stop));
        let run = Run {
            name: launch.name,
            gen: launch.gen,
            spec: launch.spec,
            restarting: launch.restarting,
            restarts: launch.restarts,
            kill_timeout: launch.kill_timeout,
            extensions,
            hooks,
            logs: held.logs.clone(),
            printer: self.ctx.printer.clone(),
            colour_index: launch.colour,
            guard: self.ctx.guard.clone(),
            program,
            adopt: self.ctx.adopt,
            to: tx,
            stop: stop_rx,
        };
        tokio::spawn(run.run());
    }

    /// Everything is down: stops the adopted descendants nobody claimed, beside the loop (which goes
    /// on answering requests), lets the last hooks run, then reports the outcome.
    fn finish(&mut self, outcome: Outcome, sweep: Option<Sweep>) {
        let queues: Vec<Hooks> = self
            .held
            .values()
            .filter_map(|h| h.hooks.as_ref().map(|(_, hooks)| hooks.clone()))
            .collect();
        if let Some(done) = self.done.take() {
            tokio::spawn(async move {
                if let Some(sweep) = sweep {
                    sweep_adopted(sweep).await;
                }
                // The queues run side by side, so waiting for them in turn takes as long as the
                // slowest (each call is bounded by its plugin's limits).
                for queue in &queues {
                    queue.drained().await;
                }
                let _ = done.send(outcome);
            });
        }
        // No run or timer is left: the loop now ends with the last handle.
        self.tx = None;
    }
}

/// Stops the adopted descendants left at the end, each with the grace of the process it came from.
async fn sweep_adopted(sweep: Sweep) {
    let left = tokio::task::spawn_blocking(orphans::scan)
        .await
        .unwrap_or_default();
    if left.is_empty() {
        return;
    }
    let pids: Vec<u32> = left.iter().map(|o| o.pid).collect();
    tracing::info!(
        "stopping {} adopted descendant(s): pid {pids:?}",
        left.len()
    );
    let grace_of = |o: &Orphan| -> Duration {
        let known = o.process.as_deref();
        let grace = sweep.graces.iter().find(|(n, _)| Some(n.as_str()) == known);
        grace.map_or(sweep.default_grace, |g| g.1)
    };
    let mut by_grace: Vec<(Duration, Vec<Orphan>)> = Vec::new();
    for o in left {
        let grace = grace_of(&o);
        match by_grace.iter_mut().find(|(g, _)| *g == grace) {
            Some((_, group)) => group.push(o),
            None => by_grace.push((grace, vec![o])),
        }
    }
    let stops = by_grace
        .iter()
        .map(|(grace, group)| orphans::stop(group, *grace, sweep.kill_timeout));
    let survivors: Vec<u32> = futures_util::future::join_all(stops)
        .await
        .into_iter()
        .flatten()
        .collect();
    if !survivors.is_empty() {
        tracing::error!(
            "adopted descendants {survivors:?} survived SIGKILL for {:.1} s",
            sweep.kill_timeout.as_secs_f64()
        );
    }
}
