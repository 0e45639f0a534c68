//! The library API in-process: `supervisor::start` on manifests written into scratch folders, with real
//! `pilot-child` processes and a recording test [`Extensions`] standing in for plugins. Every test shuts
//! its supervisor down and waits for it; a test that panics kills its children's groups on the way out.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pilot_core::extension::{
    BoxFuture, Extensions, LifecycleEvent, ProcessInfo, ProcessStats, ReadyAnswer, StatAction,
};
use pilot_core::manifest::{self, Catalog, Manifest};
use pilot_core::supervisor::{
    self, Bus, ControlError, Event, EventRecord, Handle, LogLine, Missed, Options, Outcome,
    ProcessStatus, State, Subscription,
};

use crate::harness::{alive, Scratch, SOON};

/// The names [`Recorder`] provides, as a plugin would describe them.
fn catalog() -> Catalog {
    let set = |name: &str| BTreeSet::from([name.to_string()]);
    Catalog {
        loaded: true,
        plugins: set("recorder"),
        ready_strategies: set("eventually"),
        lifecycle_hooks: set("record"),
        stat_handlers: set("watchdog"),
        control_plugins: BTreeSet::new(),
        accept_any: false,
    }
}

/// Writes `yaml` (see [`crate::harness::manifest`]) and loads it against [`catalog`].
fn load(dir: &Scratch, yaml: &str) -> Manifest {
    let path = crate::harness::manifest(dir, yaml);
    match manifest::load(&path, &catalog()) {
        Ok(loaded) => loaded.manifest,
        Err(e) => panic!("the test manifest is invalid: {e}"),
    }
}

/// A test plugin: ready strategy `eventually` (not yet until the `answers`-th check from
/// `ready_params`), lifecycle hook `record`, and stat handler `watchdog` (asks once to restart each
/// process it is given, and every time to restart `bystander`, which does not name it).
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    checks: AtomicUsize,
    handler_calls: AtomicUsize,
    handler_saw: Mutex<BTreeSet<String>>,
    /// The processes `watchdog` asked to restart, with the pid it saw.
    restart_asked: Mutex<Vec<(String, u32)>>,
}

impl Recorder {
    fn record(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

impl Extensions for Recorder {
    fn ready_check<'a>(
        &'a self,
        strategy: &'a str,
        process: &'a ProcessInfo,
        params: &'a str,
    ) -> BoxFuture<'a, ReadyAnswer> {
        Box::pin(async move {
            assert_eq!(strategy, "eventually");
            let params: serde_json::Value = serde_json::from_str(params).expect("params are JSON");
            let answers = params["answers"]
                .as_u64()
                .expect("`answers` in ready_params");
            let n = self.checks.fetch_add(1, Ordering::SeqCst) as u64 + 1;
            self.record(format!("{} check {n}", process.name));
            if n >= answers {
                ReadyAnswer::Ready
            } else {
                ReadyAnswer::NotYet(format!("check {n} of {answers}"))
            }
        })
    }

    fn lifecycle<'a>(
        &'a self,
        hook: &'a str,
        event: LifecycleEvent,
        process: &'a ProcessInfo,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            assert_eq!(hook, "record");
            let detail = match event {
                LifecycleEvent::OnShutdown { exit_code, signal } => {
                    format!(" exit={exit_code:?} signal={signal:?}")
                }
                LifecycleEvent::OnRestart => format!(" restarts={}", process.restart_count),
                _ => String::new(),
            };
            self.record(format!("{} {}{detail}", process.name, event.name()));
        })
    }

    fn stats<'a>(
        &'a self,
        handler: &'a str,
        stats: &'a [ProcessStats],
    ) -> BoxFuture<'a, Vec<StatAction>> {
        Box::pin(async move {
            assert_eq!(handler, "watchdog");
            self.handler_calls.fetch_add(1, Ordering::SeqCst);
            let mut actions = Vec::new();
            for s in stats {
                self.handler_saw.lock().unwrap().insert(s.name.clone());
                let mut asked = self.restart_asked.lock().unwrap();
                if let (Some(pid), false) = (s.pid, asked.iter().any(|(n, _)| *n == s.name)) {
                    asked.push((s.name.clone(), pid));
                    actions.push(StatAction::Restart {
                        process: s.name.clone(),
                        reason: "test".into(),
                    });
                }
            }
            actions.push(StatAction::Restart {
                process: "bystander".into(),
                reason: "not mine to ask".into(),
            });
            actions
        })
    }

    fn ready_check_interval(&self) -> Duration {
        Duration::from_millis(10)
    }
}

/// A supervisor under test, with a subscription to its events from the start; dropped without
/// [`Running::finish`] (a failed test), it kills every group.
struct Running {
    handle: Handle,
    supervisor: Option<supervisor::Supervisor>,
    events: Subscription,
    /// Every event received so far, whoever waited for it.
    seen: Vec<Arc<EventRecord>>,
}

impl Running {
    fn start(manifest: Manifest, extensions: Arc<dyn Extensions>) -> Running {
        let bus = Bus::new();
        let events = bus.subscribe();
        let supervisor = supervisor::start(
            manifest,
            Options {
                extensions,
                events: bus,
                ..Options::default()
            },
        );
        Running {
            handle: supervisor.handle(),
            supervisor: Some(supervisor),
            events,
            seen: Vec::new(),
        }
    }

    /// Receives the next event, and keeps it in [`Running::seen`].
    async fn next(&mut self) -> Result<Arc<EventRecord>, Missed> {
        let record = self.events.recv().await?;
        self.seen.push(record.clone());
        Ok(record)
    }

    /// Returns the first event since the start matching `pred`, received already (while waiting
    /// for something else) or awaited; fails past [`SOON`] naming `what`.
    async fn event_since_start(
        &mut self,
        what: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> Arc<EventRecord> {
        match self.seen.iter().find(|r| pred(&r.event)) {
            Some(record) => record.clone(),
            None => self.event(what, pred).await,
        }
    }

    /// Waits for the next event matching `pred`; fails past [`SOON`] naming `what`.
    async fn event(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Arc<EventRecord> {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Ok(record)) if pred(&record.event) => return record,
                Ok(Ok(_)) => {}
                Ok(Err(Missed::Lagged(n))) => panic!("the test missed {n} events"),
                Ok(Err(Missed::Closed)) => panic!("the event stream ended waiting for {what}"),
                Err(_) => panic!("no event {what} within {SOON:?}"),
            }
        }
    }

    /// Waits until `cond` holds of the statuses, re-checking after each event.
    async fn until_status(
        &mut self,
        what: &str,
        cond: impl Fn(&[ProcessStatus]) -> bool,
    ) -> Vec<ProcessStatus> {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            let all = self.handle.status().await;
            if cond(&all) {
                return all;
            }
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Ok(_) | Err(Missed::Lagged(_))) => {}
                Ok(Err(Missed::Closed)) => panic!("the event stream ended waiting until {what}"),
                Err(_) => panic!("timed out after {SOON:?} waiting until {what}; got {all:#?}"),
            }
        }
    }

    /// Waits until every named process is up with a pid, and returns their pids in that order.
    async fn up(&mut self, names: &[&str]) -> Vec<u32> {
        let statuses = self
            .until_status(&format!("{names:?} are up"), |all| {
                names.iter().all(|n| {
                    all.iter()
                        .any(|s| s.name == *n && s.state.is_up() && s.pid.is_some())
                })
            })
            .await;
        names
            .iter()
            .map(|n| statuses.iter().find(|s| s.name == *n).unwrap().pid.unwrap())
            .collect()
    }

    /// Shuts down and waits until every child is stopped.
    async fn finish(mut self) -> Outcome {
        self.handle.shutdown();
        let supervisor = self.supervisor.take().expect("finished once");
        match tokio::time::timeout(SOON, supervisor.wait()).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.handle.kill_all();
                panic!("the supervisor did not stop within {SOON:?}");
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.supervisor.is_some() {
            self.handle.kill_all();
        }
    }
}

async fn status_of(handle: &Handle, name: &str) -> ProcessStatus {
    handle
        .status()
        .await
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no process `{name}`"))
}

async fn stats_of(handle: &Handle, name: &str) -> Option<ProcessStats> {
    handle.stats().await.into_iter().find(|s| s.name == name)
}

/// Waits until `cond` holds of what `got` reads (for what no event announces: resource samples, a
/// test plugin's records), checking every 2 ms; past [`SOON`], fails showing the last reading.
async fn until<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    what: &str,
    mut got: impl FnMut() -> F,
    mut cond: impl FnMut(&T) -> bool,
) -> T {
    let deadline = Instant::now() + SOON;
    loop {
        let value = got().await;
        if cond(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {SOON:?} waiting until {what}; got {value:#?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_an_unknown_name_changes_nothing_and_a_restart_replaces_the_child() {
    let dir = Scratch::new("lib-restart");
    let m = load(
        &dir,
        "processes:\n  - { name: a, path: CHILD }\n  - { name: b, path: CHILD }\n",
    );
    let mut run = Running::start(m, Arc::new(Recorder::default()));
    let h = run.handle.clone();
    let pids = run.up(&["a", "b"]).await;

    let err = h.restart_processes(&["a", "nope"]).await.unwrap_err();
    assert!(
        matches!(&err, ControlError::UnknownProcess { name, .. } if name == "nope"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`nope`"), "{err}");
    for (name, pid) in [("a", pids[0]), ("b", pids[1])] {
        let s = status_of(&h, name).await;
        assert_eq!((s.pid, s.restarts), (Some(pid), 0), "{s:?}");
        assert!(alive(pid));
    }

    // The reply comes once the new child is spawned, and the old one is gone before that.
    h.restart_processes(&["a"]).await.unwrap();
    let a = status_of(&h, "a").await;
    assert_eq!(a.restarts, 1, "{a:?}");
    let new = a.pid.expect("a new child right after the restart");
    assert_ne!(new, pids[0]);
    assert!(!alive(pids[0]), "the old child {} still lives", pids[0]);
    assert!(alive(new));
    let b = status_of(&h, "b").await;
    assert_eq!((b.pid, b.restarts), (Some(pids[1]), 0), "{b:?}");
    // Subscribers see the same restart: `a` left running, and its new child was announced.
    run.event(
        "a leaves running",
        |e| matches!(e, Event::State { process, from: State::Running, .. } if process == "a"),
    )
    .await;
    let spawned = run
        .event(
            "a new child of a is announced",
            |e| matches!(e, Event::Spawned { process, .. } if process == "a"),
        )
        .await;
    assert!(
        matches!(spawned.event, Event::Spawned { pid, .. } if pid == new),
        "{spawned:?}"
    );

    let outcome = run.finish().await;
    assert!(outcome.success(), "{:?}", outcome.statuses);
    assert!(!alive(new) && !alive(pids[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_start_one_process_and_refuse_a_start_while_its_dependency_is_down() {
    let dir = Scratch::new("lib-stop-start");
    let m = load(
        &dir,
        r#"
processes:
  - { name: db, path: CHILD }
  - { name: api, path: CHILD, dependencies: [db] }
  - { name: side, path: CHILD }
"#,
    );
    let mut run = Running::start(m, Arc::new(Recorder::default()));
    let h = run.handle.clone();
    let pids = run.up(&["db", "api", "side"]).await;

    h.stop_process("api").await.unwrap();
    let api = status_of(&h, "api").await;
    assert_eq!((api.state, api.pid), (State::Stopped, None), "{api:?}");
    assert!(!alive(pids[1]));
    assert_eq!(run.up(&["db", "side"]).await, [pids[0], pids[2]]);

    h.start_process("api").await.unwrap();
    let api_pid = run.up(&["api"]).await[0];
    assert_ne!(api_pid, pids[1]);

    h.stop_process("db").await.unwrap();
    h.stop_process("api").await.unwrap();
    let want = ControlError::DependencyDown {
        name: "api".into(),
        dependency: "db".into(),
        state: "stopped",
    };
    assert_eq!(h.start_process("api").await, Err(want.clone()));
    assert_eq!(h.restart_processes(&["api"]).await, Err(want));
    assert_eq!(status_of(&h, "api").await.state, State::Stopped);
    assert!(matches!(
        h.stop_process("nope").await,
        Err(ControlError::UnknownProcess { .. })
    ));
    assert!(matches!(
        h.start_process("nope").await,
        Err(ControlError::UnknownProcess { .. })
    ));

    h.start_process("db").await.unwrap();
    run.up(&["db"]).await;
    h.start_process("api").await.unwrap();
    run.up(&["api"]).await;

    let outcome = run.finish().await;
    assert!(outcome.success(), "{:?}", outcome.statuses);
    // Once the supervisor has stopped everything, nothing can be started behind its back.
    assert_eq!(
        h.start_process("side").await,
        Err(ControlError::ShuttingDown)
    );
    assert_eq!(
        h.restart_processes(&["db"]).await,
        Err(ControlError::ShuttingDown)
    );
    assert_eq!(status_of(&h, "side").await.state, State::Stopped);
}

/// Returns the live (non-zombie) children of this test process whose arguments include `marker`.
fn live_children_with(marker: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            ppid == me
                && state != "Z"
                && state != "X"
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == marker.as_bytes()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_racing_crashes_never_leave_two_children() {
    let dir = Scratch::new("lib-race");
    let marker = format!("race-{}", std::process::id());
    let m = load(
        &dir,
        &format!(
            r#"
processes:
  - name: flaky
    path: CHILD
    args: [--name, {marker}, --exit-after, 3, 1]
    restart: {{ min_uptime_sec: 0, max_restarts: 1000000, window_sec: 1 }}
"#
        ),
    );
    let run = Running::start(m, Arc::new(Recorder::default()));
    let h = run.handle.clone();

    // Sample the children on a thread of its own while two tasks restart as fast as they can.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let marker = marker.clone();
        std::thread::spawn(move || {
            let (mut samples, mut most, mut seen) = (0, 0, BTreeSet::new());
            while !stop.load(Ordering::Relaxed) {
                let live = live_children_with(&marker);
                if live.len() > most {
                    most = live.len();
                    seen = live.iter().copied().collect();
                }
                samples += 1;
            }
            (samples, most, seen)
        })
    };
    let hammer = |h: Handle| async move {
        for _ in 0..100 {
            h.restart_processes(&["flaky"]).await.unwrap();
        }
    };
    let (one, two) = tokio::join!(
        tokio::spawn(hammer(h.clone())),
        tokio::spawn(hammer(h.clone()))
    );
    one.unwrap();
    two.unwrap();
    stop.store(true, Ordering::Relaxed);
    let (samples, most, seen) = sampler.join().unwrap();
    assert!(samples > 10, "only {samples} samples were taken");
    assert!(
        most <= 1,
        "{most} children of `flaky` were alive at once: {seen:?}"
    );
    let flaky = status_of(&h, "flaky").await;
    // Requests that arrive while a restart is under way are answered by it (each still gets a child
    // spawned after it asked), so the two tasks make at least 100 restarts, not 200.
    assert!(flaky.restarts >= 100, "{flaky:?}");
    assert_ne!(flaky.state, State::Failed, "{flaky:?}");

    run.finish().await;
    assert_eq!(live_children_with(&marker), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_cpu_rss_maxima_and_restarts() {
    let dir = Scratch::new("lib-stats");
    let m = load(
        &dir,
        r#"
stats_interval_sec: 0.2
processes:
  - { name: busy, path: CHILD, args: [--busy] }
  - { name: idle, path: CHILD }
"#,
    );
    let mut run = Running::start(m, Arc::new(Recorder::default()));
    let h = run.handle.clone();
    let pids = run.up(&["busy", "idle"]).await;
    // CPU % needs two samples of the same process: wait for one where the busy child shows.
    let sample = until(
        "the busy child shows > 50 % CPU and the idle one < 5 %",
        || async { (stats_of(&h, "busy").await, stats_of(&h, "idle").await) },
        |(busy, idle)| {
            busy.as_ref().is_some_and(|b| b.cpu_percent > 50.0)
                && idle.as_ref().is_some_and(|i| i.cpu_percent < 5.0)
        },
    )
    .await;
    let (busy, idle) = (sample.0.unwrap(), sample.1.unwrap());
    for (s, pid) in [(&busy, pids[0]), (&idle, pids[1])] {
        assert_eq!(s.pid, Some(pid), "{s:?}");
        assert!(s.rss_bytes > 0 && s.max_rss_bytes >= s.rss_bytes, "{s:?}");
        assert!(s.max_cpu_percent >= s.cpu_percent, "{s:?}");
        assert!(s.uptime_sec > 0.0, "{s:?}");
        assert_eq!(s.restarts, 0, "{s:?}");
    }
    assert!(busy.cpu_percent <= 100.0 * 2.5, "{busy:?}");

    h.restart_processes(&["idle"]).await.unwrap();
    let new = status_of(&h, "idle").await.pid;
    let idle = until(
        "the stats show the restarted idle child",
        || stats_of(&h, "idle"),
        |s| s.as_ref().is_some_and(|s| s.pid == new && s.rss_bytes > 0),
    )
    .await
    .unwrap();
    assert_eq!(idle.restarts, 1, "{idle:?}");
    assert!(idle.max_rss_bytes >= idle.rss_bytes, "{idle:?}");
    let busy = stats_of(&h, "busy").await.unwrap();
    assert!(busy.max_cpu_percent > 50.0, "{busy:?}");

    run.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_hooks_are_called_in_order() {
    let dir = Scratch::new("lib-hooks");
    let m = load(
        &dir,
        r#"
processes:
  - name: hooked
    path: CHILD
    args: [--pid-file, DIR/pid, --exit-after, 300, 3]
    lifecycle_hooks: [record]
    restart: { min_uptime_sec: 0.1 }
"#,
    );
    let recorder = Arc::new(Recorder::default());
    let run = Running::start(m, recorder.clone());
    let h = run.handle.clone();
    let pid_file = dir.join("pid");
    // Waits for the `n`th child to write its pid file, which it does once it handles SIGTERM (exit 0).
    let nth_child_handles_sigterm = |n: usize| {
        let (recorder, h, pid_file) = (recorder.clone(), h.clone(), pid_file.clone());
        async move {
            until(
                &format!("child {n} is running and handles SIGTERM"),
                || async {
                    let starts = recorder
                        .events()
                        .iter()
                        .filter(|e| *e == "hooked post_start")
                        .count();
                    let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
                    (starts, status_of(&h, "hooked").await.pid, written)
                },
                |(starts, pid, written)| {
                    *starts == n && pid.is_some_and(|p| p.to_string() == *written)
                },
            )
            .await;
        }
    };
    // The first child exits with 3 and is restarted at once (it ran longer than min_uptime).
    nth_child_handles_sigterm(2).await;
    // A restart on request stops the second child.
    h.restart_processes(&["hooked"]).await.unwrap();
    nth_child_handles_sigterm(3).await;
    run.finish().await;
    assert_eq!(
        recorder.events(),
        [
            "hooked pre_start",
            "hooked post_start",
            "hooked on_shutdown exit=Some(3) signal=None",
            "hooked on_restart restarts=1",
            "hooked pre_start",
            "hooked post_start",
            "hooked on_shutdown exit=Some(0) signal=None",
            "hooked on_restart restarts=2",
            "hooked pre_start",
            "hooked post_start",
            "hooked on_shutdown exit=Some(0) signal=None",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_ready_strategy_gates_the_dependent() {
    let dir = Scratch::new("lib-ready");
    let m = load(
        &dir,
        r#"
processes:
  - name: slow
    path: CHILD
    ready_strategy: eventually
    ready_params: { answers: 3 }
    lifecycle_hooks: [record]
  - { name: after, path: CHILD, dependencies: [slow], lifecycle_hooks: [record] }
"#,
    );
    let recorder = Arc::new(Recorder::default());
    let mut run = Running::start(m, recorder.clone());
    let h = run.handle.clone();
    run.up(&["slow", "after"]).await;
    assert_eq!(status_of(&h, "slow").await.state, State::Ready);
    assert_eq!(status_of(&h, "after").await.state, State::Running);
    // Hooks run off the supervision path: `after` is up before its post_start hook is recorded.
    let events = until(
        "the post_start hook of `after` ran",
        || async { recorder.events() },
        |e| e.len() == 7,
    )
    .await;
    assert_eq!(
        events,
        [
            "slow pre_start",
            "slow post_start",
            "slow check 1",
            "slow check 2",
            "slow check 3",
            "after pre_start",
            "after post_start",
        ]
    );
    run.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stat_handler_acts_only_on_processes_that_name_it() {
    let dir = Scratch::new("lib-handler");
    let m = load(
        &dir,
        r#"
stats_interval_sec: 0.05
processes:
  - { name: watched, path: CHILD, stat_handlers: [watchdog] }
  - { name: bystander, path: CHILD }
"#,
    );
    let recorder = Arc::new(Recorder::default());
    let mut run = Running::start(m, recorder.clone());
    let h = run.handle.clone();
    let bystander_pid = run.up(&["watched", "bystander"]).await[1];
    let asked = until(
        "the handler asked to restart `watched`",
        || async { recorder.restart_asked.lock().unwrap().clone() },
        |asked| !asked.is_empty(),
    )
    .await;
    assert_eq!(asked[0].0, "watched");
    until(
        "the handler's restart of `watched` is applied",
        || status_of(&h, "watched"),
        |s| s.restarts == 1 && s.state.is_up() && s.pid.is_some_and(|p| p != asked[0].1),
    )
    .await;
    // Every call also asks to restart `bystander`; let a few more calls pass.
    let calls = recorder.handler_calls.load(Ordering::SeqCst);
    until(
        "three more handler calls",
        || async { recorder.handler_calls.load(Ordering::SeqCst) },
        |&n| n >= calls + 3,
    )
    .await;
    let bystander = status_of(&h, "bystander").await;
    assert_eq!(
        (bystander.pid, bystander.restarts),
        (Some(bystander_pid), 0),
        "{bystander:?}"
    );
    assert_eq!(
        *recorder.handler_saw.lock().unwrap(),
        BTreeSet::from(["watched".to_string()])
    );
    assert_eq!(status_of(&h, "watched").await.restarts, 1);
    run.finish().await;
}

/// Lifecycle hook `record` that holds every `on_shutdown` call until the test opens the gate.
struct HeldHooks {
    gate: tokio::sync::Semaphore,
    held: AtomicUsize,
}

impl Extensions for HeldHooks {
    fn ready_check<'a>(
        &'a self,
        _: &'a str,
        _: &'a ProcessInfo,
        _: &'a str,
    ) -> BoxFuture<'a, ReadyAnswer> {
        Box::pin(async { ReadyAnswer::Ready })
    }

    fn lifecycle<'a>(
        &'a self,
        _: &'a str,
        event: LifecycleEvent,
        _: &'a ProcessInfo,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if matches!(event, LifecycleEvent::OnShutdown { .. }) {
                self.held.fetch_add(1, Ordering::SeqCst);
                self.gate.acquire().await.unwrap().forget();
            }
        })
    }

    fn stats<'a>(&'a self, _: &'a str, _: &'a [ProcessStats]) -> BoxFuture<'a, Vec<StatAction>> {
        Box::pin(async { Vec::new() })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_hangs_blocks_neither_a_stop_nor_the_reaction_to_an_exit() {
    let dir = Scratch::new("lib-held-hooks");
    let m = load(
        &dir,
        r#"
processes:
  - { name: held, path: CHILD, lifecycle_hooks: [record] }
  - name: crashy
    path: CHILD
    args: [--exit-after, 0, 3]
    lifecycle_hooks: [record]
    restart: { initial_delay_sec: 0.01, jitter: 0, max_restarts: 1000, window_sec: 60 }
"#,
    );
    let hooks = Arc::new(HeldHooks {
        gate: tokio::sync::Semaphore::new(0),
        held: AtomicUsize::new(0),
    });
    let mut run = Running::start(m, hooks.clone());
    let h = run.handle.clone();
    let pid = run.up(&["held"]).await[0];

    // The stop is answered once the child is gone, while its `on_shutdown` hook still hangs.
    tokio::time::timeout(SOON, h.stop_process("held"))
        .await
        .expect("the stop waited for a hanging hook")
        .unwrap();
    assert!(!alive(pid));
    assert_eq!(status_of(&h, "held").await.state, State::Stopped);

    // A crash is reacted to while its `on_shutdown` hook hangs: the exit is seen, a restart is
    // scheduled, and a stop is answered at once (the next start's `pre_start` would run after the
    // hanging hook, as hooks of one process run in order; a plugin's call deadline bounds that).
    // Both may have come while `held` was awaited: crashy starts beside it.
    run.event_since_start(
        "crashy's first child exits",
        |e| matches!(e, Event::Exited { process, .. } if process == "crashy"),
    )
    .await;
    run.event_since_start(
        "crashy's restart is scheduled",
        |e| matches!(e, Event::RestartScheduled { process, .. } if process == "crashy"),
    )
    .await;
    tokio::time::timeout(SOON, h.stop_process("crashy"))
        .await
        .expect("the stop waited for a hanging hook")
        .unwrap();
    assert_eq!(status_of(&h, "crashy").await.state, State::Stopped);
    assert_eq!(hooks.held.load(Ordering::SeqCst), 2);

    hooks.gate.add_permits(1_000_000);
    run.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_keep_the_last_1000_lines_in_order_and_tail_returns_the_newest() {
    let dir = Scratch::new("lib-logs");
    let m = load(
        &dir,
        r#"
processes:
  - { name: talker, path: /bin/sh, args: [-c, "seq 1 1500; exec sleep 1000"] }
  - { name: grumbler, path: /bin/sh, args: [-c, "echo err >&2; exec sleep 1000"] }
  - { name: quiet, path: CHILD }
"#,
    );
    let mut run = Running::start(m, Arc::new(Recorder::default()));
    let h = run.handle.clone();
    run.up(&["talker", "grumbler", "quiet"]).await;
    // Stdout and stderr are two pipes read apart, so their relative order is not defined: a
    // stderr line read early would be pushed out by the 1500 stdout lines. The eviction is checked
    // on stdout alone, the stream label on a process of its own.
    until(
        "talker printed all it prints",
        || h.logs("talker", usize::MAX),
        |lines| lines.as_ref().unwrap().iter().any(|l| l.text == "1500"),
    )
    .await
    .unwrap();

    let all = h.logs("talker", usize::MAX).await.unwrap();
    assert_eq!(all.len(), 1000, "the buffer keeps the last 1000 lines");
    assert!(all.iter().all(|l| l.stream == supervisor::Stream::Stdout));
    let out: Vec<String> = all.iter().map(|l| l.text.clone()).collect();
    let want: Vec<String> = (501..=1500).map(|n| n.to_string()).collect();
    assert_eq!(out, want, "the newest 1000 lines, in order");
    let err = until(
        "grumbler's stderr line is kept",
        || h.logs("grumbler", usize::MAX),
        |lines| !lines.as_ref().unwrap().is_empty(),
    )
    .await
    .unwrap();
    assert_eq!(
        err,
        vec![LogLine {
            stream: supervisor::Stream::Stderr,
            text: "err".into()
        }]
    );
    let tail = h.logs("talker", 10).await.unwrap();
    assert_eq!(tail, all[990..].to_vec());
    assert!(h.logs("quiet", 10).await.unwrap().is_empty());
    let e = h.logs("nope", 10).await.unwrap_err();
    assert!(matches!(e, ControlError::UnknownProcess { .. }), "{e:?}");

    run.finish().await;
}
