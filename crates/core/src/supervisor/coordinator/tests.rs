//! The coordinator's transitions, without processes, threads or a runtime: a simulated shell feeds
//! it inputs at instants of its choosing and checks the effects.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{plan, Core, Effect, Input, Settings};
use crate::manifest::{from_yaml, Manifest};
use crate::supervisor::events::Event;
use crate::supervisor::run::{ChildEnd, How, RunEnd};
use crate::supervisor::state::State;
use crate::supervisor::table::{Ticket, Until};
use crate::supervisor::{ControlError, Outcome, ReloadReport};

/// A run the simulated shell started.
#[derive(Debug, Clone)]
struct SimRun {
    gen: u64,
    pid: Option<u32>,
    stop_asked: bool,
}

/// A shell that carries out nothing, but records everything and checks the invariants as it goes:
/// never two runs of one process, a stop only for a live run, every ticket answered at most once.
struct Sim {
    core: Core,
    now: Instant,
    runs: BTreeMap<String, SimRun>,
    timers: Vec<(Arc<str>, u64, Instant)>,
    events: Vec<Event>,
    answers: BTreeMap<Ticket, Result<(), ControlError>>,
    reloads: BTreeMap<Ticket, Result<ReloadReport, ControlError>>,
    accepted: BTreeSet<Ticket>,
    spawns: Vec<(String, bool)>,
    stops: Vec<String>,
    kills: Vec<(Vec<u32>, Vec<u32>)>,
    finished: Option<Outcome>,
    next_ticket: u64,
    next_pid: u32,
}

fn exit(code: i32) -> Option<ExitStatus> {
    Some(ExitStatus::from_raw(code << 8))
}

impl Sim {
    fn new(yaml: &str) -> Sim {
        Sim::with(from_yaml(yaml), Settings::default())
    }

    fn with(manifest: Manifest, settings: Settings) -> Sim {
        let mut sim = Sim {
            core: Core::new(manifest, settings),
            now: Instant::now(),
            runs: BTreeMap::new(),
            timers: Vec::new(),
            events: Vec::new(),
            answers: BTreeMap::new(),
            reloads: BTreeMap::new(),
            accepted: BTreeSet::new(),
            spawns: Vec::new(),
            stops: Vec::new(),
            kills: Vec::new(),
            finished: None,
            next_ticket: 0,
            next_pid: 100,
        };
        sim.feed(Input::Begin).unwrap();
        sim
    }

    fn feed(&mut self, input: Input) -> Result<(), ControlError> {
        if std::env::var("WALK_DEBUG").is_ok() {
            eprintln!("  {input:?}");
        }
        let tickets: Vec<Ticket> = match &input {
            Input::Start { ticket, .. }
            | Input::Stop { ticket, .. }
            | Input::Reload { ticket, .. } => vec![*ticket],
            Input::Restart { tickets, .. } => tickets.clone(),
            _ => Vec::new(),
        };
        let result = self.core.handle(self.now, input);
        if result.is_ok() {
            self.accepted.extend(tickets);
        }
        for effect in self.core.take_effects() {
            self.carry_out(effect);
        }
        result
    }

    fn carry_out(&mut self, effect: Effect) {
        if std::env::var("WALK_DEBUG").is_ok() {
            let text = format!("{effect:?}");
            eprintln!("    -> {}", &text[..text.len().min(150)]);
        }
        match effect {
            Effect::Spawn(launch) => {
                assert!(
                    self.finished.is_none(),
                    "{}: spawned after the end",
                    launch.name
                );
                let old = self.runs.insert(
                    launch.name.to_string(),
                    SimRun {
                        gen: launch.gen,
                        pid: None,
                        stop_asked: false,
                    },
                );
                assert!(
                    old.is_none(),
                    "{}: a second run beside {old:?}",
                    launch.name
                );
                self.spawns
                    .push((launch.name.to_string(), launch.restarting));
            }
            Effect::Stop { name, gen } => {
                let run = self.runs.get_mut(&*name).expect("a stop for a live run");
                assert_eq!(run.gen, gen, "{name}: a stop for another run");
                assert!(!run.stop_asked, "{name}: told to stop twice");
                run.stop_asked = true;
                self.stops.push(name.to_string());
            }
            Effect::Timer { name, gen, at } => {
                assert!(at > self.now, "{name}: a timer in the past");
                self.timers.push((name, gen, at));
            }
            Effect::Publish(event) => self.events.push(event),
            Effect::Answer { ticket, result } => {
                assert!(
                    self.accepted.contains(&ticket),
                    "{ticket:?} was not accepted"
                );
                let old = self.answers.insert(ticket, result);
                assert!(old.is_none(), "{ticket:?} answered twice");
            }
            Effect::Reloaded { ticket, result } => {
                let old = self.reloads.insert(ticket, result);
                assert!(old.is_none(), "reload {ticket:?} answered twice");
            }
            Effect::Kill { groups, pids } => self.kills.push((groups, pids)),
            Effect::Guard { .. } | Effect::Width(_) | Effect::Forget(_) => {}
            Effect::Finish { outcome, .. } => {
                assert!(self.finished.is_none(), "finished twice");
                assert!(
                    self.runs.is_empty(),
                    "finished with runs left: {:?}",
                    self.runs
                );
                self.finished = Some(outcome);
            }
        }
    }

    fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        Ticket(self.next_ticket)
    }

    fn gen(&self, name: &str) -> u64 {
        self.runs
            .get(name)
            .unwrap_or_else(|| panic!("{name}: no run"))
            .gen
    }

    /// The run of `name` spawned its child.
    fn spawned(&mut self, name: &str) -> u32 {
        self.next_pid += 1;
        let pid = self.next_pid;
        let gen = self.gen(name);
        self.runs.get_mut(name).unwrap().pid = Some(pid);
        self.feed(Input::Spawned {
            name: name.into(),
            gen,
            pid,
        })
        .unwrap();
        pid
    }

    fn ready(&mut self, name: &str) {
        let gen = self.gen(name);
        let after = Duration::from_millis(5);
        self.feed(Input::Ready {
            name: name.into(),
            gen,
            after,
        })
        .unwrap();
    }

    /// The run of `name` ended `how`; its child (if spawned) ran `uptime` and ended with `status`.
    fn ended(&mut self, name: &str, how: How, status: Option<ExitStatus>, uptime: Duration) {
        let run = self
            .runs
            .remove(name)
            .unwrap_or_else(|| panic!("{name}: no run"));
        let child = run.pid.map(|pid| ChildEnd {
            pid,
            status,
            uptime,
        });
        let end = RunEnd { how, child };
        self.feed(Input::Ended {
            name: name.into(),
            gen: run.gen,
            end,
        })
        .unwrap();
    }

    /// The child of `name` exited on its own with `code` after `uptime`.
    fn exited(&mut self, name: &str, code: i32, uptime: Duration) {
        self.ended(name, How::Exited, exit(code), uptime);
    }

    /// The run of `name` carried out its stop.
    fn stopped(&mut self, name: &str) {
        let run = &self.runs[name];
        assert!(run.stop_asked, "{name}: stopped without being told");
        let how = if run.pid.is_some() {
            How::Stopped
        } else {
            How::Cancelled
        };
        self.ended(
            name,
            how,
            Some(ExitStatus::from_raw(15)),
            Duration::from_secs(1),
        );
    }

    /// Every run told to stop carries it out.
    fn stop_all_asked(&mut self) {
        while let Some(name) = self
            .runs
            .iter()
            .find(|(_, r)| r.stop_asked)
            .map(|(n, _)| n.clone())
        {
            self.stopped(&name);
        }
    }

    /// Lets `d` pass and fires the timers due.
    fn wait(&mut self, d: Duration) {
        self.now += d;
        let due: Vec<_> = self
            .timers
            .iter()
            .filter(|t| t.2 <= self.now)
            .cloned()
            .collect();
        self.timers.retain(|t| t.2 > self.now);
        for (name, gen, _) in due {
            self.feed(Input::Retry { name, gen }).unwrap();
        }
    }

    fn start(&mut self, name: &str, until: Until) -> Result<Ticket, ControlError> {
        let ticket = self.ticket();
        let name = name.to_string();
        self.feed(Input::Start {
            name,
            until,
            ticket,
        })
        .map(|()| ticket)
    }

    fn stop(&mut self, name: &str) -> Result<Ticket, ControlError> {
        let ticket = self.ticket();
        let name = name.to_string();
        self.feed(Input::Stop { name, ticket }).map(|()| ticket)
    }

    fn restart(&mut self, names: &[&str]) -> Result<Vec<Ticket>, ControlError> {
        let tickets: Vec<Ticket> = names.iter().map(|_| self.ticket()).collect();
        let names = names.iter().map(|n| n.to_string()).collect();
        let input = Input::Restart {
            names,
            until: Until::Spawned,
            tickets: tickets.clone(),
        };
        self.feed(input).map(|()| tickets)
    }

    fn reload(&mut self, yaml: &str) -> Ticket {
        let ticket = self.ticket();
        let manifest = Box::new(from_yaml(yaml));
        self.feed(Input::Reload { manifest, ticket }).unwrap();
        ticket
    }

    fn state(&self, name: &str) -> State {
        let all = self.core.statuses(self.now);
        all.iter()
            .find(|s| s.name == name)
            .expect("a process")
            .state
    }

    fn states(&self) -> Vec<(String, State)> {
        let all = self.core.statuses(self.now);
        all.into_iter().map(|s| (s.name, s.state)).collect()
    }

    fn reason(&self, name: &str) -> Option<String> {
        let all = self.core.statuses(self.now);
        all.into_iter().find(|s| s.name == name).unwrap().reason
    }

    /// The names spawned so far, in order, and clears them.
    fn take_spawns(&mut self) -> Vec<String> {
        std::mem::take(&mut self.spawns)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    fn answer(&self, ticket: Ticket) -> Option<&Result<(), ControlError>> {
        self.answers.get(&ticket)
    }

    /// Every restart delay announced for `name`, in seconds.
    fn delays(&self, name: &str) -> Vec<f64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::RestartScheduled {
                    process, delay_sec, ..
                } if process == name => Some(*delay_sec),
                _ => None,
            })
            .collect()
    }
}

const SECOND: Duration = Duration::from_secs(1);
const QUICK: Duration = Duration::from_millis(10);

const CHAIN: &str = "
processes:
  - { name: db, path: /bin/sh, ready_strategy: tcp, ready_params: { port: 5432 } }
  - { name: cache, path: /bin/sh }
  - { name: api, path: /bin/sh, dependencies: [db, cache] }
  - { name: web, path: /bin/sh, dependencies: [api] }
  - { name: lone, path: /bin/sh }
";

#[test]
fn processes_start_level_by_level_each_once_its_dependencies_are_up() {
    let mut sim = Sim::new(CHAIN);
    assert_eq!(sim.take_spawns(), ["db", "cache", "lone"]);
    sim.spawned("cache");
    sim.spawned("lone");
    assert_eq!(sim.state("cache"), State::Running);
    sim.spawned("db");
    assert_eq!(sim.state("db"), State::Starting, "db has a ready strategy");
    assert!(sim.take_spawns().is_empty(), "api waits for db to be ready");
    sim.ready("db");
    assert_eq!(sim.state("db"), State::Ready);
    assert_eq!(sim.take_spawns(), ["api"]);
    sim.spawned("api");
    assert_eq!(sim.take_spawns(), ["web"]);
    assert_eq!(sim.state("web"), State::Starting);
}

#[test]
fn a_process_not_ready_in_time_fails_and_its_dependents_are_skipped() {
    let mut sim = Sim::new(CHAIN);
    sim.spawned("db");
    let reason = "not ready after 5.0 s (connection refused)".to_string();
    sim.ended("db", How::NotReady(reason.clone()), exit(143), 5 * SECOND);
    assert_eq!(sim.state("db"), State::Failed);
    assert_eq!(sim.reason("db"), Some(reason.clone()));
    assert_eq!(sim.state("api"), State::Skipped);
    assert_eq!(
        sim.reason("web").as_deref(),
        Some("dependency `api` was skipped")
    );
    assert!(sim.events.contains(&Event::GaveUp {
        process: "db".into(),
        reason
    }));
    assert_eq!(sim.state("lone"), State::Starting, "others are left alone");
}

#[test]
fn a_process_that_cannot_start_fails_and_is_not_restarted() {
    let mut sim = Sim::new(CHAIN);
    let why = "cannot start `/bin/nope`: No such file".to_string();
    sim.ended("cache", How::CannotStart(why.clone()), None, Duration::ZERO);
    assert_eq!(sim.state("cache"), State::Failed);
    assert!(sim.timers.is_empty() && sim.take_spawns() == ["db", "cache", "lone"]);
}

const STRATEGIES: &str = "
processes:
  - { name: again, path: /bin/sh, restart: { jitter: 0 } }
  - { name: once, path: /bin/sh, shutdown_strategy: do_not_restart }
  - { name: after-once, path: /bin/sh, dependencies: [once], ready_strategy: tcp, ready_params: { port: 1 } }
  - { name: last, path: /bin/sh, shutdown_strategy: shutdown_everything }
";

#[test]
fn restart_strategy_starts_a_stable_process_again_at_once() {
    let mut sim = Sim::new(STRATEGIES);
    sim.take_spawns();
    sim.spawned("again");
    sim.exited("again", 0, 10 * SECOND);
    assert_eq!(sim.spawns, [("again".to_string(), true)]);
    assert_eq!(sim.state("again"), State::Starting);
    assert_eq!(sim.delays("again"), [0.0]);
}

#[test]
fn do_not_restart_stays_stopped_after_success_and_fails_after_an_error() {
    let mut sim = Sim::new(STRATEGIES);
    sim.spawned("once");
    sim.exited("once", 0, SECOND);
    assert_eq!(sim.state("once"), State::Stopped);
    assert_eq!(
        sim.state("after-once"),
        State::Starting,
        "it was already up"
    );

    let mut sim = Sim::new(STRATEGIES);
    sim.spawned("once");
    sim.exited("once", 3, SECOND);
    assert_eq!(sim.state("once"), State::Failed);
    assert_eq!(sim.reason("once").as_deref(), Some("exited with status 3"));
}

#[test]
fn shutdown_everything_stops_the_others_dependents_first() {
    let mut sim = Sim::new(STRATEGIES);
    for n in ["again", "once", "last"] {
        sim.spawned(n);
    }
    sim.spawned("after-once");
    sim.take_spawns();
    sim.exited("last", 0, SECOND);
    assert!(sim.events.contains(&Event::ShuttingDown));
    assert_eq!(
        sim.stops,
        ["after-once", "again"],
        "`once` waits for its dependent"
    );
    sim.stopped("after-once");
    assert_eq!(sim.stops, ["after-once", "again", "once"]);
    sim.stop_all_asked();
    let outcome = sim.finished.as_ref().expect("the end");
    assert!(outcome.success());
    assert!(sim.take_spawns().iter().all(|n| n != "last"));
}

const CRASHY: &str = "
processes:
  - name: crashy
    path: /bin/sh
    restart: { min_uptime_sec: 1, initial_delay_sec: 0.1, factor: 2, max_delay_sec: 0.5, jitter: 0, max_restarts: 4, window_sec: 10 }
";

#[test]
fn quick_exits_back_off_exponentially_then_exhaust_the_budget() {
    let mut sim = Sim::new(CRASHY);
    for _ in 0..4 {
        sim.spawned("crashy");
        sim.exited("crashy", 1, QUICK);
        assert_eq!(sim.state("crashy"), State::BackingOff);
        assert!(sim.take_spawns().len() <= 1);
        sim.wait(SECOND);
        assert_eq!(sim.state("crashy"), State::Starting);
    }
    assert_eq!(sim.delays("crashy"), [0.1, 0.2, 0.4, 0.5]);
    sim.spawned("crashy");
    sim.exited("crashy", 1, QUICK);
    assert_eq!(sim.state("crashy"), State::Failed);
    assert!(sim
        .reason("crashy")
        .unwrap()
        .starts_with("crash loop: 5 quick exits within 10 s"));
    assert_eq!(sim.core.statuses(sim.now)[0].restarts, 4);
}

#[test]
fn a_stable_run_resets_the_backoff() {
    let mut sim = Sim::new(CRASHY);
    sim.spawned("crashy");
    sim.exited("crashy", 1, QUICK);
    sim.wait(SECOND);
    sim.spawned("crashy");
    sim.exited("crashy", 1, 5 * SECOND);
    sim.spawned("crashy");
    sim.exited("crashy", 1, QUICK);
    assert_eq!(sim.delays("crashy"), [0.1, 0.0, 0.1]);
}

#[test]
fn a_timer_of_an_older_generation_starts_nothing() {
    let mut sim = Sim::new(CRASHY);
    sim.spawned("crashy");
    sim.exited("crashy", 1, QUICK);
    let (name, gen, _) = sim.timers[0].clone();
    // A start request overtakes the timer: it starts at once, and the timer later finds a run.
    sim.start("crashy", Until::Spawned).unwrap();
    sim.take_spawns();
    sim.feed(Input::Retry { name, gen }).unwrap();
    assert!(sim.take_spawns().is_empty());
    assert_eq!(sim.state("crashy"), State::Starting);
}

#[test]
fn a_report_of_an_older_run_changes_nothing() {
    let mut sim = Sim::new(CRASHY);
    let pid = sim.spawned("crashy");
    let old = sim.gen("crashy");
    sim.restart(&["crashy"]).unwrap();
    sim.stopped("crashy");
    let before = sim.states();
    sim.feed(Input::Spawned {
        name: "crashy".into(),
        gen: old,
        pid,
    })
    .unwrap();
    assert_eq!(sim.states(), before);
}

#[test]
fn a_restart_racing_an_exit_still_restarts() {
    let mut sim = Sim::new(STRATEGIES);
    sim.spawned("once");
    let tickets = sim.restart(&["once"]).unwrap();
    assert_eq!(sim.state("once"), State::Stopping);
    // The child exited on its own before the run saw the stop.
    sim.exited("once", 0, SECOND);
    assert_eq!(sim.state("once"), State::Starting, "the restart goes on");
    assert_eq!(sim.spawns.last(), Some(&("once".to_string(), true)));
    sim.spawned("once");
    assert_eq!(sim.answer(tickets[0]), Some(&Ok(())));
}

#[test]
fn a_stop_during_start_cancels_the_run_and_answers_everyone() {
    let mut sim = Sim::new(CHAIN);
    let start = sim.start("cache", Until::Ready).unwrap();
    let stop = sim.stop("cache").unwrap();
    assert_eq!(sim.state("cache"), State::Stopping);
    assert_eq!(sim.answer(stop), None, "answered once it is down");
    sim.stopped("cache");
    assert_eq!(sim.state("cache"), State::Stopped);
    assert_eq!(sim.reason("cache").as_deref(), Some("stopped on request"));
    assert_eq!(sim.answer(stop), Some(&Ok(())));
    assert!(matches!(
        sim.answer(start),
        Some(Err(ControlError::Failed { .. }))
    ));
    assert_eq!(sim.state("api"), State::Pending, "its dependent waits");
}

#[test]
fn a_child_spawned_after_its_stop_was_asked_answers_nobody() {
    let mut sim = Sim::new(CHAIN);
    let start = sim.start("cache", Until::Spawned).unwrap();
    sim.stop("cache").unwrap();
    sim.spawned("cache");
    assert_eq!(sim.state("cache"), State::Stopping);
    assert_eq!(sim.answer(start), None);
    assert!(sim.take_spawns().iter().all(|n| n != "api"));
}

#[test]
fn a_start_asked_while_stopping_starts_it_again_after_the_stop() {
    let mut sim = Sim::new(CHAIN);
    sim.spawned("lone");
    let stop = sim.stop("lone").unwrap();
    let start = sim.start("lone", Until::Spawned).unwrap();
    sim.take_spawns();
    sim.stopped("lone");
    assert_eq!(sim.take_spawns(), ["lone"]);
    sim.spawned("lone");
    assert_eq!(
        sim.answer(stop),
        None,
        "the stop was overtaken by the start"
    );
    assert_eq!(sim.answer(start), Some(&Ok(())));
    assert_eq!(
        sim.core.statuses(sim.now)[4].restarts,
        0,
        "a start is no restart"
    );
}

#[test]
fn a_start_waits_for_ready_when_asked() {
    let mut sim = Sim::new(CHAIN);
    sim.stop("db").unwrap();
    sim.stopped("db");
    let t = sim.start("db", Until::Ready).unwrap();
    sim.spawned("db");
    assert_eq!(sim.answer(t), None);
    sim.ready("db");
    assert_eq!(sim.answer(t), Some(&Ok(())));
}

#[test]
fn a_start_of_a_process_whose_dependency_is_down_is_refused_and_changes_nothing() {
    let mut sim = Sim::new(CHAIN);
    let before = sim.states();
    let err = sim.start("web", Until::Spawned).unwrap_err();
    assert_eq!(
        err,
        ControlError::DependencyDown {
            name: "web".into(),
            dependency: "api".into(),
            state: "pending"
        }
    );
    assert_eq!(sim.states(), before);
    let err = sim.restart(&["lone", "nope"]).unwrap_err();
    assert!(matches!(err, ControlError::UnknownProcess { .. }));
    assert!(sim.stops.is_empty(), "all or nothing");
}

/// Brings `name` of CHAIN into `state` (from a fresh start, where every level-0 process is starting).
fn into_state(sim: &mut Sim, name: &str, state: State) {
    match state {
        State::Pending | State::Starting => {}
        State::Running | State::Ready => {
            sim.spawned(name);
            if state == State::Ready {
                sim.ready(name);
            }
        }
        State::Stopping => {
            sim.spawned(name);
            sim.stop(name).unwrap();
        }
        State::Stopped => {
            sim.stop(name).unwrap();
            sim.stopped(name);
        }
        State::BackingOff => {
            sim.spawned(name);
            sim.exited(name, 1, QUICK);
        }
        State::Failed => {
            sim.ended(name, How::CannotStart("no".into()), None, Duration::ZERO);
        }
        State::Skipped => unreachable!("made through a dependency"),
    }
}

#[test]
fn requests_in_every_state_are_answered_as_the_state_allows() {
    use State::*;
    // (state, start accepted, stop answered at once, restart accepted)
    let table = [
        (Starting, true, false, true),
        (Running, true, false, true),
        (Ready, true, false, true),
        (Stopping, true, false, true),
        (Stopped, true, true, true),
        (BackingOff, true, true, true),
        (Failed, true, true, true),
    ];
    for (state, start_ok, stop_at_once, restart_ok) in table {
        let name = if matches!(state, Ready) {
            "db"
        } else {
            "cache"
        };
        for request in ["start", "stop", "restart"] {
            let mut sim = Sim::new(CHAIN);
            into_state(&mut sim, name, state);
            assert_eq!(sim.state(name), state);
            match request {
                "start" => assert_eq!(sim.start(name, Until::Spawned).is_ok(), start_ok),
                "stop" => {
                    let t = sim.stop(name).unwrap();
                    assert_eq!(sim.answer(t).is_some(), stop_at_once, "stop in {state:?}");
                    assert!(
                        matches!(sim.state(name), Stopping | Stopped | Failed),
                        "stop in {state:?}: {:?}",
                        sim.state(name)
                    );
                }
                _ => assert_eq!(sim.restart(&[name]).is_ok(), restart_ok),
            }
            if request != "stop" {
                assert!(
                    matches!(sim.state(name), Starting | Stopping | Running | Ready),
                    "{request} in {state:?}: {:?}",
                    sim.state(name)
                );
            }
        }
    }
    // Pending and skipped: a dependency is not up, so a start is refused; a stop stops it.
    let mut sim = Sim::new(CHAIN);
    assert_eq!(sim.state("api"), Pending);
    assert!(sim.start("api", Until::Spawned).is_err());
    assert!(sim.restart(&["api"]).is_err());
    let t = sim.stop("api").unwrap();
    assert_eq!(sim.answer(t), Some(&Ok(())));
    assert_eq!(
        sim.reason("api").as_deref(),
        Some("stopped before it started")
    );
    into_state(&mut sim, "cache", Failed);
    assert_eq!(
        sim.state("web"),
        Pending,
        "api was stopped by hand: web waits"
    );
    let mut sim = Sim::new(CHAIN);
    into_state(&mut sim, "cache", Failed);
    assert_eq!(sim.state("web"), Skipped);
    assert!(sim.start("web", Until::Spawned).is_err());
}

#[test]
fn requests_after_the_final_stop_began_are_refused() {
    let mut sim = Sim::new(CHAIN);
    sim.spawned("cache");
    let waiting = sim.start("db", Until::Ready).unwrap();
    sim.feed(Input::Shutdown).unwrap();
    assert_eq!(sim.answer(waiting), Some(&Err(ControlError::ShuttingDown)));
    assert_eq!(
        sim.start("lone", Until::Spawned),
        Err(ControlError::ShuttingDown)
    );
    assert_eq!(sim.restart(&["lone"]), Err(ControlError::ShuttingDown));
    let reload = sim.ticket();
    let manifest = Box::new(from_yaml(CHAIN));
    let refused = sim.feed(Input::Reload {
        manifest,
        ticket: reload,
    });
    assert_eq!(refused, Err(ControlError::ShuttingDown));
    assert_eq!(sim.state("api"), State::Stopped);
    assert_eq!(
        sim.reason("api").as_deref(),
        Some("shut down before it started")
    );
}

#[test]
fn the_final_stop_goes_dependents_first_and_ends_once_everything_is_down() {
    let mut sim = Sim::new(CHAIN);
    for n in ["db", "cache", "lone"] {
        sim.spawned(n);
    }
    sim.ready("db");
    sim.spawned("api");
    sim.spawned("web");
    sim.feed(Input::Shutdown).unwrap();
    assert_eq!(sim.stops, ["lone", "web"]);
    sim.stopped("web");
    assert_eq!(sim.stops, ["lone", "web", "api"]);
    sim.stopped("api");
    assert_eq!(sim.stops, ["lone", "web", "api", "cache", "db"]);
    assert!(sim.finished.is_none());
    sim.stop_all_asked();
    let outcome = sim.finished.as_ref().expect("the end");
    assert!(outcome.statuses.iter().all(|s| s.state == State::Stopped));
    assert!(sim.core.targets(None).is_over());
}

#[test]
fn the_final_stop_ends_even_when_a_run_exits_on_its_own_meanwhile() {
    let mut sim = Sim::new(CRASHY);
    sim.spawned("crashy");
    sim.feed(Input::Shutdown).unwrap();
    sim.exited("crashy", 1, QUICK);
    assert_eq!(sim.state("crashy"), State::Stopped);
    assert!(sim.finished.is_some());
    assert!(sim.timers.is_empty(), "no restart once stopping");
}

#[test]
fn a_backing_off_process_is_stopped_at_once_by_the_final_stop() {
    let mut sim = Sim::new(CRASHY);
    sim.spawned("crashy");
    sim.exited("crashy", 1, QUICK);
    sim.feed(Input::Shutdown).unwrap();
    assert_eq!(
        sim.reason("crashy").as_deref(),
        Some("stopped while backing off")
    );
    assert!(sim.finished.is_some());
    sim.wait(SECOND);
    assert!(sim.spawns.len() == 1, "the timer starts nothing");
}

#[test]
fn with_stay_alive_the_end_of_every_process_does_not_end_the_supervision() {
    let settings = Settings {
        stay_alive: true,
        ..Settings::default()
    };
    let mut sim = Sim::with(from_yaml(STRATEGIES), settings);
    sim.spawned("once");
    sim.exited("once", 0, SECOND);
    let mut plain =
        Sim::new("processes: [{ name: once, path: /bin/sh, shutdown_strategy: do_not_restart }]");
    plain.spawned("once");
    plain.exited("once", 0, SECOND);
    assert!(plain.finished.is_some());
    let mut alone = Sim::with(
        from_yaml("processes: [{ name: once, path: /bin/sh, shutdown_strategy: do_not_restart }]"),
        settings,
    );
    alone.spawned("once");
    alone.exited("once", 0, SECOND);
    assert!(alone.finished.is_none());
    assert!(alone.start("once", Until::Spawned).is_ok());
}

#[test]
fn kill_all_signals_every_live_group_and_adopted_descendant() {
    let mut sim = Sim::new(CHAIN);
    let a = sim.spawned("cache");
    let b = sim.spawned("lone");
    sim.feed(Input::KillAll).unwrap();
    assert_eq!(sim.kills, [(vec![a, b], vec![])]);
}

const BEFORE: &str = "
processes:
  - { name: db, path: /bin/sh }
  - { name: api, path: /bin/sh, dependencies: [db] }
  - { name: web, path: /bin/sh, dependencies: [api] }
  - { name: worker, path: /bin/sh, dependencies: [db] }
  - { name: old, path: /bin/sh }
  - { name: calm, path: /bin/sh }
";

const AFTER: &str = "
processes:
  - { name: db, path: /bin/sh, args: [--new] }
  - { name: api, path: /bin/sh, dependencies: [db] }
  - { name: web, path: /bin/sh, dependencies: [api] }
  - { name: worker, path: /bin/sh, dependencies: [db] }
  - { name: calm, path: /bin/sh }
  - { name: new, path: /bin/sh, dependencies: [calm] }
";

#[test]
fn a_reload_diff_follows_the_dependency_graph() {
    let before = from_yaml(BEFORE);
    let report = plan::diff(&before.processes, &from_yaml(AFTER));
    assert_eq!(report.removed, ["old"]);
    assert_eq!(report.changed, ["db"]);
    assert_eq!(report.restarted, ["api", "web", "worker"]);
    assert_eq!(report.added, ["new"]);
    assert_eq!(report.unchanged, ["calm"]);
    let same = plan::diff(&before.processes, &before);
    assert_eq!(same.unchanged.len(), 6);
    assert!(same.changed.is_empty() && same.restarted.is_empty() && same.removed.is_empty());
}

#[test]
fn a_reload_stops_dependents_first_then_starts_the_new_manifest() {
    let mut sim = Sim::new(BEFORE);
    for n in ["db", "old", "calm"] {
        sim.spawned(n);
    }
    for n in ["api", "worker"] {
        sim.spawned(n);
    }
    sim.spawned("web");
    sim.take_spawns();
    let ticket = sim.reload(AFTER);
    assert_eq!(sim.stops, ["old", "web", "worker"]);
    sim.stopped("web");
    assert_eq!(sim.stops, ["old", "web", "worker", "api"]);
    for n in ["worker", "old", "api"] {
        sim.stopped(n);
    }
    assert_eq!(sim.stops.last().map(String::as_str), Some("db"));
    assert_eq!(sim.reloads.get(&ticket), None, "db is still to stop");
    assert_eq!(sim.state("calm"), State::Running);
    sim.stopped("db");
    let report = sim.reloads[&ticket].as_ref().unwrap();
    assert_eq!(report.removed, ["old"]);
    assert_eq!(sim.take_spawns(), ["db", "new"]);
    assert!(sim.states().iter().all(|(n, _)| n != "old"));
    sim.spawned("db");
    assert_eq!(sim.take_spawns(), ["api", "worker"]);
    assert_eq!(sim.state("calm"), State::Running, "unchanged: left running");
}

#[test]
fn reloads_asked_during_a_reload_are_applied_in_turn() {
    let mut sim = Sim::new(BEFORE);
    sim.spawned("db");
    let first = sim.reload(AFTER);
    let second = sim.reload(BEFORE);
    sim.stop_all_asked();
    assert!(sim.reloads[&first].is_ok());
    // The second begins as soon as the first is applied, without waiting for another input.
    let second = sim.reloads[&second].as_ref().unwrap();
    assert_eq!(second.added, ["old"]);
    assert_eq!(second.removed, ["new"]);
}

impl super::Targets {
    fn is_over(&self) -> bool {
        matches!(self, super::Targets::Over)
    }
}

/// A random manifest of 2 to 6 processes, each depending on some of the earlier ones.
fn random_manifest(rng: &mut fastrand::Rng) -> String {
    let n = rng.usize(2..=6);
    let mut yaml = String::from("processes:\n");
    for i in 0..n {
        let deps: Vec<String> = (0..i)
            .filter(|_| rng.u8(..4) == 0)
            .map(|d| format!("p{d}"))
            .collect();
        let strategy = ["restart", "do_not_restart", "shutdown_everything"][rng.usize(..3)];
        let strategy = if rng.bool() { "restart" } else { strategy };
        let ready = if rng.bool() {
            ", ready_strategy: tcp, ready_params: { port: 1 }"
        } else {
            ""
        };
        yaml.push_str(&format!(
            "  - {{ name: p{i}, path: /bin/sh, args: [{}], dependencies: [{}], shutdown_strategy: {strategy}, restart: {{ max_restarts: 3, window_sec: 5 }}{ready} }}\n",
            rng.u8(..3),
            deps.join(", ")
        ));
    }
    yaml
}

/// One random step: a run reports, time passes, or a request arrives.
fn random_step(sim: &mut Sim, rng: &mut fastrand::Rng, names: &[String]) {
    let runs: Vec<(String, SimRun)> = sim
        .runs
        .iter()
        .map(|(n, r)| (n.clone(), r.clone()))
        .collect();
    let name = &names[rng.usize(..names.len())];
    match rng.u8(..14) {
        0..=5 if !runs.is_empty() => {
            let (name, run) = &runs[rng.usize(..runs.len())];
            match (run.pid, run.stop_asked, rng.u8(..4)) {
                (_, true, 0..=1) => sim.stopped(name),
                (None, _, 0) => {
                    sim.ended(name, How::CannotStart("no".into()), None, Duration::ZERO)
                }
                (None, _, _) => {
                    sim.spawned(name);
                }
                (Some(_), _, 0) => sim.ready(name),
                (Some(_), _, 1) => sim.ended(name, How::NotReady("late".into()), exit(143), SECOND),
                (Some(_), _, _) => {
                    let uptime = if rng.bool() { QUICK } else { 2 * SECOND };
                    sim.exited(name, rng.i32(0..2), uptime);
                }
            }
        }
        6 | 7 => sim.wait(Duration::from_millis(rng.u64(1..2000))),
        8 => {
            let until = if rng.bool() {
                Until::Spawned
            } else {
                Until::Ready
            };
            let _ = sim.start(name, until);
        }
        9 => {
            let _ = sim.stop(name);
        }
        10 => {
            let other = &names[rng.usize(..names.len())];
            let _ = sim.restart(&[name, other]);
        }
        11 if rng.u8(..4) == 0 => {
            let yaml = random_manifest(rng);
            let ticket = sim.ticket();
            let manifest = Box::new(from_yaml(&yaml));
            let _ = sim.feed(Input::Reload { manifest, ticket });
        }
        12 if rng.u8(..8) == 0 => {
            sim.feed(Input::Shutdown).unwrap();
        }
        _ => {
            let _ = sim.core.statuses(sim.now);
        }
    }
}

#[test]
fn random_walks_keep_the_invariants() {
    // `WALK_SEEDS=20000` walks further, e.g. after changing a transition.
    let seeds = std::env::var("WALK_SEEDS").map_or(400, |s| s.parse().expect("a number"));
    for seed in 0..seeds {
        if std::env::var("WALK_DEBUG").is_ok() {
            eprintln!("seed {seed}");
        }
        let mut rng = fastrand::Rng::with_seed(seed);
        let yaml = random_manifest(&mut rng);
        let settings = Settings {
            stay_alive: rng.bool(),
            adopt: false,
            seed,
        };
        let mut sim = Sim::with(from_yaml(&yaml), settings);
        let names: Vec<String> = (0..6).map(|i| format!("p{i}")).collect();
        for _ in 0..rng.usize(0..300) {
            random_step(&mut sim, &mut rng, &names);
            if sim.finished.is_some() {
                break;
            }
        }
        // The final stop always ends: every run carries out its stop (or ends on its own), timers fire.
        sim.feed(Input::Shutdown).unwrap();
        let mut steps = 0;
        while sim.finished.is_none() {
            steps += 1;
            assert!(
                steps < 1000,
                "seed {seed}: the final stop does not end: {:?}",
                sim.runs
            );
            let runs: Vec<(String, SimRun)> = sim
                .runs
                .iter()
                .map(|(n, r)| (n.clone(), r.clone()))
                .collect();
            match runs.iter().find(|(_, r)| r.stop_asked) {
                Some((name, _)) => sim.stopped(name),
                None if !runs.is_empty() => {
                    let (name, run) = &runs[rng.usize(..runs.len())];
                    match run.pid {
                        None => {
                            sim.spawned(name);
                        }
                        Some(_) => sim.exited(name, 0, QUICK),
                    }
                }
                None => sim.wait(SECOND),
            }
        }
        let unanswered: Vec<&Ticket> = sim
            .accepted
            .iter()
            .filter(|t| !sim.answers.contains_key(t) && !sim.reloads.contains_key(t))
            .collect();
        assert!(
            unanswered.is_empty(),
            "seed {seed}: never answered: {unanswered:?}"
        );
        let outcome = sim.finished.as_ref().unwrap();
        assert!(
            outcome.statuses.iter().all(|s| s.state.is_final()),
            "seed {seed}: {:?}",
            sim.states()
        );
    }
}

#[test]
fn a_start_of_a_process_a_reload_holds_is_refused_until_the_reload_is_done() {
    // Found by the random walk: a restart of a held process started a run that the reload's end
    // then put back to pending, so a second run began beside the first.
    let mut sim = Sim::new(BEFORE);
    sim.spawned("db");
    sim.reload(AFTER);
    let refused = sim.restart(&["db"]).unwrap_err();
    assert_eq!(refused, ControlError::Reloading { name: "db".into() });
    assert_eq!(
        sim.start("api", Until::Spawned),
        Err(ControlError::Reloading { name: "api".into() })
    );
    assert!(
        sim.start("calm", Until::Spawned).is_ok(),
        "unchanged: not held"
    );
    sim.stop_all_asked();
    assert_eq!(sim.state("db"), State::Starting);
    assert!(sim.restart(&["db"]).is_ok());
}
