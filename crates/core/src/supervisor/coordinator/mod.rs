//! The coordinator: the state machine that owns the process table and decides everything, without
//! doing any of it.
//!
//! [`Core::handle`] takes one [`Input`] (a request, a run's report, a timer) at a given instant and
//! leaves what is to be done as [`Effect`]s, in order: spawn this run, stop that one, arm a timer,
//! publish an event, answer a request. It spawns nothing, reads no clock and waits for nothing, so
//! every transition is tested without processes or a runtime (`tests.rs`); the async shell
//! (`super::shell`) feeds it and carries its effects out. Inputs are handled one at a time, so there
//! is no check-then-act race: a request is answered once it took effect, and nothing starts once the
//! final stop began. A process's state changes in one place, [`Core::set`], which also publishes the
//! state event.

mod plan;
mod requests;
#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};
use std::os::unix::process::ExitStatusExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::plan::{Plan, Reload};
pub(super) use self::requests::{Reading, Sampling, Targets};
use super::backoff::Decision;
use super::events::Event;
use super::orphans::Orphan;
use super::run::{describe_exit, How, RunEnd};
use super::state::Phase;
use super::table::{Entry, Sample, Table, Then, Ticket, Until};
use super::{ControlError, Outcome, ProcessStatus, ReloadReport};
use crate::manifest::{Manifest, ProcessSpec, ShutdownStrategy};

/// Something the coordinator is told: a request, a run's report, or a timer.
#[derive(Debug)]
pub(super) enum Input {
    /// The supervision begins: start what can start.
    Begin,
    /// The run `gen` of `name` spawned its child.
    Spawned { name: Arc<str>, gen: u64, pid: u32 },
    /// The run `gen` of `name` found its child ready, `after` its spawn.
    Ready {
        name: Arc<str>,
        gen: u64,
        after: Duration,
    },
    /// The run `gen` of `name` is over; its group is gone.
    Ended {
        name: Arc<str>,
        gen: u64,
        end: RunEnd,
    },
    /// The restart delay of `name`'s generation `gen` ran out.
    Retry { name: Arc<str>, gen: u64 },
    /// Start `name`; `ticket` is answered once it got to `until`.
    Start {
        name: String,
        until: Until,
        ticket: Ticket,
    },
    /// Stop `name`; `ticket` is answered once it is down.
    Stop { name: String, ticket: Ticket },
    /// Restart each of `names` (start those not running); each ticket is answered once its process
    /// got to `until`.
    Restart {
        names: Vec<String>,
        until: Until,
        tickets: Vec<Ticket>,
    },
    /// Put an already validated manifest in effect; `ticket` gets the report.
    Reload {
        manifest: Box<Manifest>,
        ticket: Ticket,
    },
    /// Stop everything, dependents first, and end.
    Shutdown,
    /// SIGKILL every group at once (the second Ctrl-C).
    KillAll,
    /// The readings that changed since the last sample, and the adopted descendants if they changed.
    Sampled {
        readings: Vec<Reading>,
        orphans: Option<Vec<Orphan>>,
    },
}

/// Something the coordinator decided, for the shell to carry out, in order.
#[derive(Debug)]
pub(super) enum Effect {
    /// Start a run: hooks, spawn, readiness, watching the child.
    Spawn(Launch),
    /// Tell the run `gen` of `name` to stop its group.
    Stop { name: Arc<str>, gen: u64 },
    /// Give [`Input::Retry`] for `name`'s generation `gen` at `at`.
    Timer {
        name: Arc<str>,
        gen: u64,
        at: Instant,
    },
    /// Send an event to subscribers.
    Publish(Event),
    /// Answer a request that waited for its effect.
    Answer {
        ticket: Ticket,
        result: Result<(), ControlError>,
    },
    /// Answer a reload.
    Reloaded {
        ticket: Ticket,
        result: Result<ReloadReport, ControlError>,
    },
    /// SIGKILL these process groups and adopted descendants now.
    Kill { groups: Vec<u32>, pids: Vec<u32> },
    /// Have the guard kill this group (an adopted descendant's) if pilot-host dies.
    Guard { pgid: u32 },
    /// A reload changed the names: the output prefixes take this width.
    Width(usize),
    /// A reload removed `name`: what the shell keeps for it (its log buffer, hooks) can go.
    Forget(Arc<str>),
    /// Everything is down: stop the adopted descendants nobody claimed (when there is a sweep),
    /// let the hooks finish, and report `outcome`.
    Finish {
        outcome: Outcome,
        sweep: Option<Sweep>,
    },
}

/// A run to start.
#[derive(Debug, Clone)]
pub(super) struct Launch {
    pub name: Arc<str>,
    pub gen: u64,
    pub spec: Arc<ProcessSpec>,
    /// Whether it counts as a restart (the `on_restart` hook runs).
    pub restarting: bool,
    pub restarts: u32,
    pub colour: usize,
    pub kill_timeout: Duration,
}

/// How the final sweep stops adopted descendants.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sweep {
    /// Grace between SIGTERM and SIGKILL for a descendant of each process: its `timeout`.
    pub graces: Vec<(String, Duration)>,
    /// Grace for a descendant whose process is unknown: the longest of them.
    pub default_grace: Duration,
    pub kill_timeout: Duration,
}

/// How the coordinator behaves, beyond the manifest.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Settings {
    /// Keep running when every process has ended.
    pub stay_alive: bool,
    /// pilot-host adopts escaped descendants: sweep them at the end.
    pub adopt: bool,
    /// Seeds the restart jitter.
    pub seed: u64,
}

/// The coordinator's state.
pub(super) struct Core {
    table: Table,
    manifest: Arc<Manifest>,
    settings: Settings,
    /// The final stop, once begun.
    closing: Option<Plan>,
    /// A reload waiting for its stops.
    reload: Option<Reload>,
    /// Reloads asked for while one is under way, applied in turn.
    next_reloads: VecDeque<(Manifest, Ticket)>,
    /// The outcome was reported: nothing is left to do.
    finished: bool,
    /// Adopted descendants no process claims.
    unowned: Vec<u32>,
    /// Adopted descendants already announced.
    seen_orphans: HashSet<u32>,
    /// Whether the sampler reported once: from then on every process has stats, sampled or zero.
    sampled_once: bool,
    /// Moves whenever what the sampler reads may have changed (a phase, hence a pid; a reload; the
    /// end).
    version: u64,
    rng: fastrand::Rng,
    out: Vec<Effect>,
}

impl Core {
    /// Builds the table of `manifest`; nothing starts until [`Input::Begin`].
    pub fn new(manifest: Manifest, settings: Settings) -> Core {
        let mut table = Table::default();
        for (i, spec) in manifest.processes.iter().enumerate() {
            let entry = Entry::new(Arc::new(spec.clone()), i);
            table.entries.insert(entry.name.clone(), entry);
        }
        table.reindex(&manifest);
        Core {
            table,
            manifest: Arc::new(manifest),
            settings,
            closing: None,
            reload: None,
            next_reloads: VecDeque::new(),
            finished: false,
            unowned: Vec::new(),
            seen_orphans: HashSet::new(),
            sampled_once: false,
            version: 0,
            rng: fastrand::Rng::with_seed(settings.seed),
            out: Vec::new(),
        }
    }

    /// Handles `input` at `now`. A refused request returns why, and nothing changed; what is to be
    /// done is left for [`Core::take_effects`].
    pub fn handle(&mut self, now: Instant, input: Input) -> Result<(), ControlError> {
        let result = match input {
            Input::Begin => {
                let all = self.table.order.clone();
                self.kick(now, &all);
                Ok(())
            }
            Input::Spawned { name, gen, pid } => {
                if self.current(&name, gen) {
                    self.on_spawned(now, &name, pid);
                }
                Ok(())
            }
            Input::Ready { name, gen, after } => {
                if self.current(&name, gen) {
                    self.on_up(now, &name, true, after);
                }
                Ok(())
            }
            Input::Ended { name, gen, end } => {
                if self.current(&name, gen) {
                    self.on_ended(now, &name, end);
                }
                Ok(())
            }
            Input::Retry { name, gen } => {
                self.on_retry(now, &name, gen);
                Ok(())
            }
            Input::Start {
                name,
                until,
                ticket,
            } => self.start(now, &name, until, ticket),
            Input::Stop { name, ticket } => self.stop(now, &name, ticket),
            Input::Restart {
                names,
                until,
                tickets,
            } => self.restart(now, &names, until, &tickets),
            Input::Reload { manifest, ticket } => {
                if self.closing.is_some() {
                    Err(ControlError::ShuttingDown)
                } else {
                    self.next_reloads.push_back((*manifest, ticket));
                    Ok(())
                }
            }
            Input::Shutdown => {
                self.begin_closing();
                Ok(())
            }
            Input::KillAll => {
                self.kill_all();
                Ok(())
            }
            Input::Sampled { readings, orphans } => {
                self.sampled(readings, orphans);
                Ok(())
            }
        };
        self.settle(now);
        result
    }

    /// Takes what is to be done, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.out)
    }

    /// Returns a number that moves whenever the sampler's targets may have changed.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Returns the manifest in effect.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// Fails naming the known processes unless `name` is one.
    pub fn known(&self, name: &str) -> Result<Arc<str>, ControlError> {
        self.table.get(name).map(|e| e.name.clone())
    }

    /// Moves the plans on and begins the final stop once everything ended.
    fn settle(&mut self, now: Instant) {
        self.advance_plans(now);
        // The final stop that begins here may already be complete (nothing runs): finish it now.
        if self.check_ended() {
            self.advance_plans(now);
        }
    }

    fn current(&self, name: &str, gen: u64) -> bool {
        self.table.entries.get(name).is_some_and(|e| e.gen == gen)
    }

    fn publish(&mut self, event: Event) {
        self.out.push(Effect::Publish(event));
    }

    fn answer(&mut self, ticket: Ticket, result: Result<(), ControlError>) {
        self.out.push(Effect::Answer { ticket, result });
    }

    /// Answers every request waiting on `name` with `result`.
    fn answer_all(&mut self, name: &str, result: Result<(), ControlError>) {
        let tickets: Vec<Ticket> = self.table.entry(name).take_waiting().collect();
        for ticket in tickets {
            self.answer(ticket, result.clone());
        }
    }

    /// Moves `name` to `phase`: the one place a process's state changes.
    fn set(&mut self, name: &str, phase: Phase) {
        self.version += 1;
        let entry = self.table.entry(name);
        let (from, to) = (entry.phase.state(), phase.state());
        entry.phase = phase;
        if from != to {
            let reason = entry
                .phase
                .reason()
                .map(str::to_string)
                .filter(|_| to.is_final());
            self.publish(Event::State {
                process: name.to_string(),
                from,
                to,
                reason,
            });
        }
    }

    /// Starts a run of `name`.
    fn start_run(&mut self, now: Instant, name: &str, restarting: bool) {
        let kill_timeout = self.manifest.kill_timeout;
        let entry = self.table.entry(name);
        if restarting {
            entry.restarts += 1;
        }
        entry.gen += 1;
        entry.then = Then::Stay(None);
        entry.stoppable = true;
        let launch = Launch {
            name: entry.name.clone(),
            gen: entry.gen,
            spec: entry.spec.clone(),
            restarting,
            restarts: entry.restarts,
            colour: entry.colour,
            kill_timeout,
        };
        self.out.push(Effect::Spawn(launch));
        self.set(
            name,
            Phase::Starting {
                pid: None,
                since: now,
            },
        );
    }

    /// Asks the run of `name` to stop; `then` decides what follows.
    fn request_stop(&mut self, now: Instant, name: &str, then: Then) {
        let entry = self.table.entry(name);
        entry.then = then;
        let pid = entry.phase.pid();
        if std::mem::take(&mut entry.stoppable) {
            let stop = Effect::Stop {
                name: entry.name.clone(),
                gen: entry.gen,
            };
            self.out.push(stop);
            self.set(name, Phase::Stopping { pid, since: now });
        }
    }

    fn on_spawned(&mut self, now: Instant, name: &str, pid: u32) {
        tracing::info!("{name}: started, pid {pid}");
        self.publish(Event::Spawned {
            process: name.to_string(),
            pid,
        });
        let entry = self.table.entry(name);
        entry.spawned_at = Some(now);
        entry.last_pid = Some(pid);
        entry.sample = entry.sample.map(|s| Sample {
            pid: Some(pid),
            cpu_percent: 0.0,
            rss_bytes: 0,
            cpu_seconds: 0.0,
            ..s
        });
        if matches!(entry.phase, Phase::Stopping { .. }) {
            // A child spawned by a run already told to stop answers nobody: those waiting asked
            // for the child that comes after this one (or are told why none came).
            let pid = Some(pid);
            return self.set(name, Phase::Stopping { pid, since: now });
        }
        let has_strategy = entry.spec.ready.is_some();
        let mut spawned = Vec::new();
        for (until, ticket) in std::mem::take(&mut entry.on_spawn) {
            match until {
                Until::Spawned => spawned.push(ticket),
                Until::Ready => entry.on_ready.push(ticket),
            }
        }
        for ticket in spawned {
            self.answer(ticket, Ok(()));
        }
        let pid = Some(pid);
        self.set(name, Phase::Starting { pid, since: now });
        if !has_strategy {
            self.on_up(now, name, false, Duration::ZERO);
        }
    }

    /// `name` is up: ready by its strategy, or spawned without one. Its waiting dependents start.
    fn on_up(&mut self, now: Instant, name: &str, ready: bool, after: Duration) {
        let entry = self.table.entry(name);
        let (Phase::Starting { pid: Some(pid), .. }, Some(since)) =
            (&entry.phase, entry.spawned_at)
        else {
            return;
        };
        let pid = *pid;
        let waiting = std::mem::take(&mut entry.on_ready);
        for ticket in waiting {
            self.answer(ticket, Ok(()));
        }
        if ready {
            tracing::info!("{name}: ready after {:.1} ms", after.as_secs_f64() * 1000.0);
        }
        self.publish(Event::Ready {
            process: name.to_string(),
            pid,
            after_ms: after.as_secs_f64() * 1000.0,
        });
        self.set(name, Phase::Up { pid, since, ready });
        let dependents = self.table.dependents_of(name);
        self.kick(now, &dependents);
    }

    /// Starts every process of `names` that waits for its dependencies and has them all up.
    fn kick(&mut self, now: Instant, names: &[Arc<str>]) {
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
                self.start_run(now, name, false);
            }
        }
    }

    fn on_ended(&mut self, now: Instant, name: &str, end: RunEnd) {
        let entry = self.table.entry(name);
        entry.stoppable = false;
        entry.spawned_at = None;
        if let Some(child) = &end.child {
            entry.last_exit = Some(
                child
                    .status
                    .as_ref()
                    .map_or("no exit status".into(), describe_exit),
            );
            entry.sample = entry.sample.map(|s| Sample {
                pid: None,
                cpu_percent: 0.0,
                rss_bytes: 0,
                ..s
            });
            self.publish(Event::Exited {
                process: name.to_string(),
                pid: child.pid,
                code: child.status.and_then(|s| s.code()),
                signal: child.status.and_then(|s| s.signal()),
                uptime_sec: child.uptime.as_secs_f64(),
            });
        }
        let entry = self.table.entry(name);
        // A restart whose stop came too late for a child that exited on its own meanwhile still
        // restarts: the exit is the stop it asked for.
        let restart_asked = matches!(entry.phase, Phase::Stopping { .. })
            && matches!(entry.then, Then::Start { .. });
        match end.how {
            How::CannotStart(reason) | How::NotReady(reason) => self.give_up(name, reason),
            How::Cancelled | How::Stopped => self.after_stop(now, name),
            How::Exited if restart_asked => self.after_stop(now, name),
            How::Exited => self.after_exit(now, name, &end),
        }
    }

    /// A requested stop completed: do what was asked next.
    fn after_stop(&mut self, now: Instant, name: &str) {
        let entry = self.table.entry(name);
        let then = std::mem::replace(&mut entry.then, Then::Stay(None));
        match then {
            Then::Start { restarting } if self.closing.is_none() && !entry.held => {
                tracing::info!("{name}: starting again");
                self.start_run(now, name, restarting);
            }
            then => {
                let reason = match then {
                    Then::Stay(reason) => reason,
                    Then::Start { .. } => None,
                };
                self.set(name, Phase::Stopped { reason });
                let down = std::mem::take(&mut self.table.entry(name).on_down);
                for ticket in down {
                    self.answer(ticket, Ok(()));
                }
                self.answer_all(
                    name,
                    Err(ControlError::Failed {
                        name: name.to_string(),
                        reason: "it was stopped before it got there".into(),
                    }),
                );
            }
        }
    }

    /// The child exited on its own: restart, back off, give up or stop everything, as configured.
    fn after_exit(&mut self, now: Instant, name: &str, end: &RunEnd) {
        let child = end.child.expect("an exit has a child");
        let exit = child
            .status
            .as_ref()
            .map_or("no exit status".into(), describe_exit);
        let failed = !child.status.is_some_and(|s| s.success());
        let uptime = child.uptime.as_secs_f64();
        self.answer_all(
            name,
            Err(ControlError::Failed {
                name: name.to_string(),
                reason: format!("it exited with {exit}"),
            }),
        );
        let entry = self.table.entry(name);
        let strategy = entry.spec.shutdown_strategy;
        if self.closing.is_some() || entry.held {
            tracing::info!("{name}: exited with {exit} after {uptime:.2} s");
            let reason = Some(format!("exited with {exit} while stopping"));
            return self.set(name, Phase::Stopped { reason });
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
        match entry.backoff.on_exit(now, child.uptime, self.rng.f64()) {
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
                self.publish(Event::RestartScheduled {
                    process: name.to_string(),
                    delay_sec: delay.as_secs_f64(),
                    restarts,
                });
                self.restart_after(now, name, delay);
            }
        }
    }

    /// Starts `name` again after `delay` (at once when zero: no timer, which would round up to 1 ms).
    fn restart_after(&mut self, now: Instant, name: &str, delay: Duration) {
        if delay.is_zero() {
            return self.start_run(now, name, true);
        }
        let entry = self.table.entry(name);
        entry.gen += 1;
        let at = now + delay;
        let timer = Effect::Timer {
            name: entry.name.clone(),
            gen: entry.gen,
            at,
        };
        self.out.push(timer);
        self.set(name, Phase::BackingOff { until: at });
    }

    fn on_retry(&mut self, now: Instant, name: &str, gen: u64) {
        let Some(entry) = self.table.entries.get(name) else {
            return;
        };
        if entry.gen != gen || !matches!(entry.phase, Phase::BackingOff { .. }) {
            return;
        }
        if entry.held || self.closing.is_some() {
            self.set(name, Phase::Stopped { reason: None });
        } else {
            self.start_run(now, name, true);
        }
    }

    /// Marks `name` failed for `reason`, and its waiting dependents skipped.
    fn give_up(&mut self, name: &str, reason: String) {
        tracing::error!("{name}: failed: {reason}");
        self.publish(Event::GaveUp {
            process: name.to_string(),
            reason: reason.clone(),
        });
        self.answer_all(
            name,
            Err(ControlError::Failed {
                name: name.to_string(),
                reason: reason.clone(),
            }),
        );
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
                    let why = format!("dependency `{d}` was skipped");
                    let reason = reason.clone();
                    self.set(&d, Phase::Skipped { reason });
                    stack.push((d, why));
                }
            }
        }
    }

    /// Begins the final stop once every process has ended (unless told to stay alive); returns
    /// whether it began.
    fn check_ended(&mut self) -> bool {
        if self.closing.is_some() || self.settings.stay_alive || self.reload.is_some() {
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

    /// Returns the snapshot of every process at `now`, in manifest order.
    pub fn statuses(&self, now: Instant) -> Vec<ProcessStatus> {
        self.table
            .order
            .iter()
            .map(|n| self.status(now, n))
            .collect()
    }
}
