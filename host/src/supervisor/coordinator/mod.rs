//! The coordinator: one task that owns the process table and decides everything.
//!
//! Requests from handles, reports from runs, timers and resource samples all arrive as [`Msg`]s on one
//! channel and are handled one at a time, so there is no check-then-act race: a request is answered
//! once it took effect, and nothing starts once the final stop began. A process's state changes in one
//! place, [`Coordinator::set`], which also sends the state event.

mod plan;
mod requests;

use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use self::plan::Plan;
pub(super) use self::requests::{Request, Sampling, Targets, Waiter};
use super::backoff::Decision;
use super::events::{Bus, Event};
use super::output::Printer;
use super::pgroup::Guard;
use super::run::{describe_exit, How, Run, RunEnd, RunEvent};
use super::state::Phase;
use super::table::{Entry, Table, Then};
use super::{ControlError, Outcome};
use crate::extension::Extensions;
use crate::manifest::{Manifest, ShutdownStrategy};

/// What the coordinator handles.
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

/// What runs need from the supervisor, shared by all of them.
pub(super) struct Ctx {
    pub extensions: Arc<dyn Extensions>,
    pub guard: Option<Arc<Guard>>,
    pub printer: Printer,
    pub base_env: Arc<Vec<(OsString, OsString)>>,
    pub adopt: bool,
    pub log_lines: usize,
    pub bus: Bus,
    pub stay_alive: bool,
}

/// The coordinator task's state.
pub(super) struct Coordinator {
    pub table: Table,
    pub manifest: Arc<Manifest>,
    pub ctx: Ctx,
    pub rx: mpsc::UnboundedReceiver<Msg>,
    /// For runs and timers; dropped once everything is over, so the loop ends with the last handle.
    pub tx: Option<mpsc::UnboundedSender<Msg>>,
    /// The final stop, once begun.
    pub closing: Option<Plan>,
    /// A reload waiting for its stops.
    pub reload: Option<plan::Reload>,
    /// Reloads asked for while one is under way, applied in turn.
    pub next_reloads: std::collections::VecDeque<(Manifest, requests::ReloadReply)>,
    /// Tells [`super::Supervisor::wait`] the outcome.
    pub done: Option<oneshot::Sender<Outcome>>,
    /// Adopted descendants no process claims.
    pub unowned: Vec<u32>,
    /// Adopted descendants already announced.
    pub seen_orphans: std::collections::HashSet<u32>,
    /// Whether the sampler reported once: from then on every process has stats, sampled or zero.
    pub sampled_once: bool,
    /// Raised whenever what the sampler reads may have changed (a phase, hence a pid; a reload; the
    /// end). The sampler reads it before asking for its targets, so an idle supervisor is not even
    /// woken by it; it is a hint only, the targets themselves come from the table.
    pub targets_version: Arc<AtomicU64>,
}

impl Coordinator {
    /// Builds the table of `manifest`; nothing starts until [`Coordinator::run`].
    pub fn new(
        manifest: Manifest,
        ctx: Ctx,
        rx: mpsc::UnboundedReceiver<Msg>,
        tx: mpsc::UnboundedSender<Msg>,
        done: oneshot::Sender<Outcome>,
        targets_version: Arc<AtomicU64>,
    ) -> Coordinator {
        let mut table = Table::default();
        for (i, spec) in manifest.processes.iter().enumerate() {
            let entry = Entry::new(Arc::new(spec.clone()), i, ctx.log_lines, &ctx.extensions);
            table.entries.insert(entry.name.clone(), entry);
        }
        table.reindex(&manifest);
        Coordinator {
            table,
            manifest: Arc::new(manifest),
            ctx,
            rx,
            tx: Some(tx),
            closing: None,
            reload: None,
            next_reloads: Default::default(),
            done: Some(done),
            unowned: Vec::new(),
            seen_orphans: Default::default(),
            sampled_once: false,
            targets_version,
        }
    }

    /// Starts what can start, then handles messages until the last handle is gone.
    pub async fn run(mut self) {
        let all = self.table.order.clone();
        self.kick(&all);
        if self.check_ended() {
            self.advance_plans().await;
        }
        while let Some(msg) = self.rx.recv().await {
            match msg {
                Msg::Request(request) => self.request(request),
                Msg::Run { name, gen, event } => self.on_run(&name, gen, event),
                Msg::Retry { name, gen } => self.on_retry(&name, gen),
            }
            self.advance_plans().await;
            // The final stop that begins here may already be complete (nothing runs): finish it
            // now, not at the next message (which may be the stats sampler's, a second away).
            if self.check_ended() {
                self.advance_plans().await;
            }
        }
    }

    /// Tells the sampler that its targets changed.
    pub fn targets_changed(&self) {
        self.targets_version.fetch_add(1, Ordering::Release);
    }

    /// Moves `name` to `phase`: the one place a process's state changes.
    pub fn set(&mut self, name: &str, phase: Phase) {
        self.targets_changed();
        let entry = self.table.entry(name);
        let (from, to) = (entry.phase.state(), phase.state());
        entry.phase = phase;
        if from != to {
            let reason = entry
                .phase
                .reason()
                .map(str::to_string)
                .filter(|_| to.is_final());
            self.ctx.bus.send(Event::State {
                process: name.to_string(),
                from,
                to,
                reason,
            });
        }
    }

    /// Starts a run of `name`.
    pub fn start_run(&mut self, name: &str, restarting: bool) {
        let Some(tx) = self.tx.clone() else { return };
        let kill_timeout = self.manifest.kill_timeout;
        let entry = self.table.entry(name);
        if restarting {
            entry.restarts += 1;
        }
        entry.gen += 1;
        entry.then = Then::Stay(String::new());
        let (stop, stop_rx) = oneshot::channel();
        entry.stop = Some(stop);
        let base_env = &self.ctx.base_env;
        let program = entry
            .program
            .get_or_insert_with(|| {
                super::run::program(&entry.spec, base_env)
                    .prepare()
                    .map_err(|e| e.to_string())
            })
            .clone();
        let run = Run {
            name: entry.name.clone(),
            gen: entry.gen,
            spec: entry.spec.clone(),
            restarting,
            restarts: entry.restarts,
            kill_timeout,
            extensions: self.ctx.extensions.clone(),
            hooks: entry.hooks.clone(),
            logs: entry.logs.clone(),
            printer: self.ctx.printer.clone(),
            colour_index: entry.colour,
            guard: self.ctx.guard.clone(),
            program,
            adopt: self.ctx.adopt,
            to: tx,
            stop: stop_rx,
        };
        tokio::spawn(run.run());
        self.set(
            name,
            Phase::Starting {
                pid: None,
                since: std::time::Instant::now(),
            },
        );
    }

    /// Asks the run of `name` to stop; `then` decides what follows.
    pub fn request_stop(&mut self, name: &str, then: Then) {
        let entry = self.table.entry(name);
        entry.then = then;
        let pid = entry.phase.pid();
        if let Some(stop) = entry.stop.take() {
            let _ = stop.send(());
            self.set(
                name,
                Phase::Stopping {
                    pid,
                    since: std::time::Instant::now(),
                },
            );
        }
    }

    fn on_run(&mut self, name: &str, gen: u64, event: RunEvent) {
        match self.table.entries.get(name) {
            Some(entry) if entry.gen == gen => {}
            _ => return,
        }
        match event {
            RunEvent::Spawned { pid } => self.on_spawned(name, pid),
            RunEvent::Ready { after } => self.on_up(name, true, after),
            RunEvent::Ended(end) => self.on_ended(name, end),
        }
    }

    fn on_spawned(&mut self, name: &str, pid: u32) {
        tracing::info!("{name}: started, pid {pid}");
        self.ctx.bus.send(Event::Spawned {
            process: name.to_string(),
            pid,
        });
        let entry = self.table.entry(name);
        let now = std::time::Instant::now();
        entry.spawned_at = Some(now);
        entry.last_pid = Some(pid);
        entry.sample = entry.sample.map(|s| super::table::Sample {
            pid: Some(pid),
            cpu_percent: 0.0,
            rss_bytes: 0,
            cpu_seconds: 0.0,
            ..s
        });
        let stopping = matches!(entry.phase, Phase::Stopping { .. });
        let has_strategy = entry.spec.ready.is_some();
        if stopping {
            // A child spawned by a run already told to stop answers nobody: those waiting asked
            // for the child that comes after this one (or are told why none came).
            self.set(
                name,
                Phase::Stopping {
                    pid: Some(pid),
                    since: now,
                },
            );
            return;
        }
        for (until, reply) in std::mem::take(&mut entry.on_spawn) {
            match until {
                super::table::Until::Spawned => {
                    let _ = reply.send(Ok(()));
                }
                super::table::Until::Ready => entry.on_ready.push(reply),
            }
        }
        self.set(
            name,
            Phase::Starting {
                pid: Some(pid),
                since: now,
            },
        );
        if !has_strategy {
            self.on_up(name, false, Duration::ZERO);
        }
    }

    /// `name` is up: ready by its strategy, or spawned without one. Its waiting dependents start.
    fn on_up(&mut self, name: &str, ready: bool, after: Duration) {
        let entry = self.table.entry(name);
        let (Phase::Starting { pid: Some(pid), .. }, Some(since)) =
            (&entry.phase, entry.spawned_at)
        else {
            return;
        };
        let pid = *pid;
        for reply in entry.on_ready.drain(..) {
            let _ = reply.send(Ok(()));
        }
        if ready {
            tracing::info!("{name}: ready after {:.1} ms", after.as_secs_f64() * 1000.0);
        }
        self.ctx.bus.send(Event::Ready {
            process: name.to_string(),
            pid,
            after_ms: after.as_secs_f64() * 1000.0,
        });
        self.set(name, Phase::Up { pid, since, ready });
        let dependents = self.table.dependents_of(name);
        self.kick(&dependents);
    }

    /// Starts every process of `names` that waits for its dependencies and has them all up.
    pub fn kick(&mut self, names: &[Arc<str>]) {
        if self.closing.is_some() {
            return;
        }
        for name in names {
            let waiting = self
                .table
                .entries
                .get(name)
                .is_some_and(|e| e.phase == Phase::Pending && !e.held);
            if waiting && self.table.dependencies_up(name).is_ok() {
                self.start_run(name, false);
            }
        }
    }

    fn on_ended(&mut self, name: &str, end: RunEnd) {
        let entry = self.table.entry(name);
        entry.stop = None;
        entry.spawned_at = None;
        if let Some(child) = &end.child {
            entry.last_exit = Some(
                child
                    .status
                    .as_ref()
                    .map_or("no exit status".into(), describe_exit),
            );
            entry.sample = entry.sample.map(|s| super::table::Sample {
                pid: None,
                cpu_percent: 0.0,
                rss_bytes: 0,
                ..s
            });
            self.ctx.bus.send(Event::Exited {
                process: name.to_string(),
                pid: child.pid,
                code: child.status.and_then(|s| s.code()),
                signal: child
                    .status
                    .and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
                uptime_sec: child.uptime.as_secs_f64(),
            });
        }
        match end.how {
            How::CannotStart(reason) | How::NotReady(reason) => self.give_up(name, reason),
            How::Cancelled | How::Stopped => self.after_stop(name),
            How::Exited => self.after_exit(name, &end),
        }
    }

    /// A requested stop completed: do what was asked next.
    fn after_stop(&mut self, name: &str) {
        let entry = self.table.entry(name);
        let then = std::mem::replace(&mut entry.then, Then::Stay(String::new()));
        match then {
            Then::Start { restarting } if self.closing.is_none() && !entry.held => {
                tracing::info!("{name}: starting again");
                self.start_run(name, restarting);
            }
            then => {
                let reason = match then {
                    Then::Stay(reason) if !reason.is_empty() => Some(reason),
                    _ => None,
                };
                self.set(name, Phase::Stopped { reason });
                let entry = self.table.entry(name);
                for reply in entry.on_down.drain(..) {
                    let _ = reply.send(Ok(()));
                }
                entry.answer_all(Err(ControlError::Failed {
                    name: name.to_string(),
                    reason: "it was stopped before it got there".into(),
                }));
            }
        }
    }

    /// The child exited on its own: restart, back off, give up or stop everything, as configured.
    fn after_exit(&mut self, name: &str, end: &RunEnd) {
        let child = end.child.expect("an exit has a child");
        let exit = child
            .status
            .as_ref()
            .map_or("no exit status".into(), describe_exit);
        let failed = !child.status.is_some_and(|s| s.success());
        let uptime = child.uptime.as_secs_f64();
        let entry = self.table.entry(name);
        entry.answer_all(Err(ControlError::Failed {
            name: name.to_string(),
            reason: format!("it exited with {exit}"),
        }));
        let strategy = entry.spec.shutdown_strategy;
        if self.closing.is_some() || entry.held {
            tracing::info!("{name}: exited with {exit} after {uptime:.2} s");
            let reason = format!("exited with {exit} while stopping");
            return self.set(
                name,
                Phase::Stopped {
                    reason: Some(reason),
                },
            );
        }
        if strategy != ShutdownStrategy::Restart {
            tracing::info!(
                "{name}: exited with {exit} after {uptime:.2} s; not restarting ({})",
                strategy.as_str()
            );
            let phase = if failed {
                Phase::Failed {
                    reason: format!("exited with {exit}"),
                }
            } else {
                Phase::Stopped { reason: None }
            };
            self.set(name, phase);
            self.skip_dependents(name);
            if strategy == ShutdownStrategy::ShutdownEverything {
                tracing::info!("{name}: ended, and its shutdown strategy is shutdown_everything; stopping everything");
                self.begin_closing();
            }
            return;
        }
        match entry
            .backoff
            .on_exit(std::time::Instant::now(), child.uptime, fastrand::f64())
        {
            Decision::GiveUp { exits, window } => self.give_up(
                name,
                format!(
                    "crash loop: {exits} quick exits within {} s (last: {exit}); giving up",
                    window.as_secs_f64()
                ),
            ),
            Decision::RestartAfter(delay) => {
                let restarts = entry.restarts;
                tracing::info!(
                    "{name}: exited with {exit} after {uptime:.2} s; restarting in {:.3} s",
                    delay.as_secs_f64()
                );
                self.ctx.bus.send(Event::RestartScheduled {
                    process: name.to_string(),
                    delay_sec: delay.as_secs_f64(),
                    restarts,
                });
                self.restart_after(name, delay);
            }
        }
    }

    /// Starts `name` again after `delay` (at once when zero: no timer, which would round up to 1 ms).
    fn restart_after(&mut self, name: &str, delay: Duration) {
        if delay.is_zero() {
            return self.start_run(name, true);
        }
        let Some(tx) = self.tx.clone() else { return };
        let entry = self.table.entry(name);
        entry.gen += 1;
        let (gen, name_arc) = (entry.gen, entry.name.clone());
        let until = Instant::now() + delay;
        tokio::spawn(async move {
            tokio::time::sleep_until(until).await;
            let _ = tx.send(Msg::Retry {
                name: name_arc,
                gen,
            });
        });
        self.set(
            name,
            Phase::BackingOff {
                until: until.into_std(),
            },
        );
    }

    fn on_retry(&mut self, name: &str, gen: u64) {
        let due = self
            .table
            .entries
            .get(name)
            .is_some_and(|e| e.gen == gen && matches!(e.phase, Phase::BackingOff { .. }));
        if due {
            if self.table.entry(name).held || self.closing.is_some() {
                self.set(name, Phase::Stopped { reason: None });
            } else {
                self.start_run(name, true);
            }
        }
    }

    /// Marks `name` failed for `reason`, and its waiting dependents skipped.
    fn give_up(&mut self, name: &str, reason: String) {
        tracing::error!("{name}: failed: {reason}");
        self.ctx.bus.send(Event::GaveUp {
            process: name.to_string(),
            reason: reason.clone(),
        });
        self.table.entry(name).answer_all(Err(ControlError::Failed {
            name: name.to_string(),
            reason: reason.clone(),
        }));
        self.set(name, Phase::Failed { reason });
        self.skip_dependents(name);
    }

    /// Marks the dependents of `name` that wait to start (and theirs) skipped.
    fn skip_dependents(&mut self, name: &str) {
        let why = match &self.table.entry(name).phase {
            Phase::Failed { reason } => format!("dependency `{name}` failed: {reason}"),
            Phase::Skipped { .. } => format!("dependency `{name}` was skipped"),
            _ => format!("dependency `{name}` ended before it was ready"),
        };
        let mut stack = vec![(Arc::<str>::from(name), why)];
        while let Some((n, reason)) = stack.pop() {
            for d in self.table.dependents_of(&n) {
                if self.table.entries[&d].phase == Phase::Pending {
                    tracing::warn!("{d}: skipped: {reason}");
                    self.set(
                        &d,
                        Phase::Skipped {
                            reason: reason.clone(),
                        },
                    );
                    stack.push((d.clone(), format!("dependency `{d}` was skipped")));
                }
            }
        }
    }

    /// Begins the final stop unless asked to stay when every process has ended.
    /// Begins the final stop once every process has ended (unless told to stay alive); returns
    /// whether it began.
    fn check_ended(&mut self) -> bool {
        if self.closing.is_some() || self.ctx.stay_alive || self.reload.is_some() {
            return false;
        }
        let all_final = self
            .table
            .entries
            .values()
            .all(|e| e.phase.state().is_final());
        if all_final {
            tracing::info!("every process has ended");
            self.begin_closing();
        }
        all_final
    }
}
