//! Supervision core v2, through the real `pilot-host`: live reload on SIGHUP, descendants that leave
//! their process group, Process Pilot's pipe services, the crash-loop budget, stop order that waits,
//! backoff delays measured in time slept, and output that interleaves under a flood.

use std::time::Duration;

use crate::harness::*;

/// Returns the latest pid logged for `name` once it differs from `old`.
fn new_pid_of(pilot: &Pilot, name: &str, old: u32) -> u32 {
    wait_until(&format!("`{name}` has a new child"), SOON, || {
        pilot
            .logs_with(&format!("{name}: started, pid "))
            .last()
            .is_some_and(|l| !l.ends_with(&format!(" {old}")))
    });
    pilot.pid_of(name)
}

const FIRST: &str = r#"
processes:
  - { name: a, path: CHILD, args: [--name, a] }
  - { name: b, path: CHILD, args: [--name, b], dependencies: [a] }
  - { name: c, path: CHILD, args: [--name, c] }
  - { name: keep, path: CHILD, args: [--name, keep] }
"#;

#[test]
fn sighup_reloads_adds_removes_restarts_changed_and_dependents_and_keeps_the_rest() {
    let dir = Scratch::new("reload-sighup");
    let path = manifest(&dir, FIRST);
    let mut pilot = Pilot::run(&path);
    for name in ["a", "b", "c", "keep"] {
        pilot.wait_log(&format!("{name}: started, pid "), SOON);
    }
    let (a, b, c, keep) = (
        pilot.pid_of("a"),
        pilot.pid_of("b"),
        pilot.pid_of("c"),
        pilot.pid_of("keep"),
    );

    // `a` changes (so `b`, which depends on it, restarts too), `c` goes, `d` comes, `keep` stays.
    manifest(
        &dir,
        r#"
processes:
  - { name: a, path: CHILD, args: [--name, a, --tick, 50] }
  - { name: b, path: CHILD, args: [--name, b], dependencies: [a] }
  - { name: keep, path: CHILD, args: [--name, keep] }
  - { name: d, path: CHILD, args: [--name, d], dependencies: [keep] }
"#,
    );
    pilot.signal(libc::SIGHUP);
    let report = pilot.wait_log("reloaded: ", SOON);
    assert!(
        report.contains(r#"added ["d"], removed ["c"], changed ["a"], restarted with them ["b"]"#),
        "{report}"
    );
    let (a2, b2) = (new_pid_of(&pilot, "a", a), new_pid_of(&pilot, "b", b));
    // The new `a` runs with its new arguments (a program is prepared once per spec, not per run).
    wait_until("the changed `a` ticks", SOON, || {
        pilot.stdout_text().contains("a tick 1")
    });
    pilot.wait_log("d: started, pid ", SOON);
    wait_until(
        "the removed and the replaced children are gone",
        SOON,
        || !alive(a) && !alive(b) && !alive(c),
    );
    assert!(alive(a2) && alive(b2) && alive(pilot.pid_of("d")));
    assert_eq!(
        pilot.pid_of("keep"),
        keep,
        "an unchanged process was restarted"
    );
    assert!(alive(keep));
    // The dependency restarted before its dependent: `b`'s new child came after `a`'s.
    let starts = pilot.logs_with(": started, pid ");
    let at = |pid: u32| {
        starts
            .iter()
            .position(|l| l.ends_with(&format!(" {pid}")))
            .unwrap()
    };
    assert!(at(a2) < at(b2), "{starts:#?}");

    // An invalid manifest changes nothing, and every problem is logged.
    manifest(
        &dir,
        r#"
processes:
  - { name: a, path: CHILD, dependencies: [nowhere] }
  - { name: keep, path: CHILD, args: [--name, keep], restart: { max_restarts: -1 } }
"#,
    );
    pilot.signal(libc::SIGHUP);
    pilot.wait_log("reload refused", SOON);
    // Every problem is logged, after that line.
    pilot.wait_log("nowhere", SOON);
    pilot.wait_log("max_restarts", SOON);
    let err = pilot.stderr_text();
    for pid in [a2, b2, keep, pilot.pid_of("d")] {
        assert!(alive(pid), "{pid} was stopped by a refused reload\n{err}");
    }
    assert_eq!(pilot.logs_with(": started, pid ").len(), starts.len());

    pilot.signal(libc::SIGTERM);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(0));
}

/// Waits for the pid a shell wrote into `path`.
fn daemon_pid(dir: &Scratch, file: &str) -> u32 {
    read_pid(&dir.join(file))
}

/// Descendants that leave their group: one `setsid`, one double-forked out of its parent (and out of
/// the group too). Both are orphaned at once (their parent shell execs or exits).
const DAEMONS: &str = r#"
stats_interval_sec: 0.2
processes:
  - name: setsid
    path: /bin/sh
    args: [-c, "setsid sleep 1001 & echo $! > DIR/setsid.pid; exec sleep 1003"]
  - name: double
    path: /bin/sh
    args: [-c, "(setsid sleep 1002 & echo $! > DIR/double.tmp; mv DIR/double.tmp DIR/double.pid); exec sleep 1004"]
"#;

fn sid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(3)?.parse().ok()
}

#[test]
fn descendants_that_left_their_group_are_adopted_shown_and_stopped_with_their_process() {
    let dir = Scratch::new("daemons");
    let path = manifest(&dir, DAEMONS);
    let mut pilot = Pilot::run(&path);
    let (setsid, double) = (
        daemon_pid(&dir, "setsid.pid"),
        daemon_pid(&dir, "double.pid"),
    );
    assert!(alive(setsid) && alive(double));
    // They really left: a session of their own, so no process group of ours holds them (the shell
    // writes the pid as soon as it forks, maybe before `setsid` ran).
    wait_until("both daemons lead a session of their own", SOON, || {
        sid_of(setsid) == Some(setsid) && sid_of(double) == Some(double)
    });
    // The double-forked one was orphaned and reparented to pilot-host, the subreaper.
    wait_until(
        "the double-forked daemon is pilot-host's child",
        SOON,
        || {
            std::fs::read_to_string(format!("/proc/{double}/stat"))
                .ok()
                .and_then(|s| {
                    s[s.rfind(')').unwrap() + 2..]
                        .split(' ')
                        .nth(1)
                        .map(str::to_string)
                })
                .is_some_and(|ppid| ppid == pilot.pid().to_string())
        },
    );
    pilot.wait_log(&format!("adopted pid {double} (from `double`)"), SOON);

    pilot.signal(libc::SIGTERM);
    assert_eq!(
        pilot.wait_exit(SOON).code(),
        Some(0),
        "{}",
        pilot.stderr_text()
    );
    wait_until("no daemon is left", Duration::from_secs(2), || {
        !alive(setsid) && !alive(double)
    });
}

#[test]
fn sigkill_of_pilot_host_takes_daemons_that_left_their_group_along() {
    let dir = Scratch::new("daemons-kill");
    let path = manifest(&dir, DAEMONS);
    let mut pilot = Pilot::run(&path);
    let (setsid, double) = (
        daemon_pid(&dir, "setsid.pid"),
        daemon_pid(&dir, "double.pid"),
    );
    pilot.wait_log("setsid: started, pid ", SOON);
    pilot.wait_log("double: started, pid ", SOON);
    let shells = [pilot.pid_of("setsid"), pilot.pid_of("double")];
    assert!(alive(setsid) && alive(double));
    pilot.signal(libc::SIGKILL);
    pilot.wait_exit(SOON);
    wait_until("no daemon and no child is left", SOON, || {
        !alive(setsid) && !alive(double) && shells.iter().all(|p| !alive(*p))
    });
}

#[test]
fn pipe_readiness_works_for_a_service_that_makes_its_own_fifo_and_one_that_writes_to_ours() {
    let dir = Scratch::new("pipe-services");
    let path = manifest(
        &dir,
        r#"
processes:
  - name: own
    path: CHILD
    args: [--own-fifo-after, 30, DIR/own.fifo]
    ready_strategy: pipe
    ready_params: { path: DIR/own.fifo }
    ready_timeout_sec: 5
  - name: ours
    path: CHILD
    args: [--pipe-after, 30, DIR/ours.fifo]
    ready_strategy: pipe
    ready_params: { path: DIR/ours.fifo }
    ready_timeout_sec: 5
  - { name: after, path: CHILD, dependencies: [own, ours] }
"#,
    );
    let pilot = Pilot::run(&path);
    pilot.wait_ready("own");
    pilot.wait_ready("ours");
    pilot.wait_log("after: started, pid ", SOON);
    assert!(
        !pilot.stderr_text().contains("not ready"),
        "{}",
        pilot.stderr_text()
    );
}

#[test]
fn a_process_killed_again_and_again_after_stable_runs_keeps_being_restarted() {
    let dir = Scratch::new("kill-budget");
    // Four quick exits would fail it; it is killed twelve times, each time after a stable run.
    let path = manifest(
        &dir,
        r#"
processes:
  - name: victim
    path: CHILD
    args: [--pid-file-after, 120, DIR/victim.pid]
    restart: { min_uptime_sec: 0.05, initial_delay_sec: 0.01, max_restarts: 3, window_sec: 60 }
"#,
    );
    let pilot = Pilot::run(&path);
    let pid_file = dir.join("victim.pid");
    let mut last = 0;
    for kill in 1..=12 {
        // The pid file comes 120 ms into a run, past `min_uptime_sec`.
        let pid = read_pid(&pid_file);
        assert_ne!(pid, last, "kill {kill}: the pid file was not replaced");
        std::fs::remove_file(&pid_file).unwrap();
        // SAFETY: a plain kill of a child pilot-host started for this test.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        last = pid;
    }
    let pid = read_pid(&pid_file);
    assert!(
        alive(pid),
        "not restarted after 12 kills:\n{}",
        pilot.stderr_text()
    );
    assert!(
        !pilot.stderr_text().contains("victim: failed"),
        "{}",
        pilot.stderr_text()
    );
}

#[test]
fn stop_waits_for_dependents_to_exit_before_stopping_their_dependency() {
    let dir = Scratch::new("stop-waits");
    let path = manifest(
        &dir,
        r#"
processes:
  - { name: db, path: CHILD, args: [--name, db, --record-stop, DIR/term, --pid-file, DIR/db.pid] }
  - name: api
    path: CHILD
    args: [--name, api, --record-stop, DIR/term, --linger, 300, --record-exit, DIR/exit, --pid-file, DIR/api.pid]
    dependencies: [db]
"#,
    );
    let mut pilot = Pilot::run(&path);
    read_pid(&dir.join("db.pid"));
    read_pid(&dir.join("api.pid"));
    pilot.signal(libc::SIGTERM);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(0));
    let term = read_times(&dir.join("term"));
    let exit = read_times(&dir.join("exit"));
    let db_term = term
        .iter()
        .find(|(n, _)| n == "db")
        .expect("db got SIGTERM")
        .1;
    let api_exit = exit.iter().find(|(n, _)| n == "api").expect("api exited").1;
    // `api` lingers 300 ms after its SIGTERM; `db` must not hear of the stop before `api` is gone.
    assert!(
        db_term >= api_exit,
        "db got SIGTERM {} ms before api exited",
        (api_exit - db_term) as f64 / 1e6
    );
}

#[test]
fn crash_loop_delays_are_slept_not_only_logged() {
    let dir = Scratch::new("crash-delays");
    let path = manifest(
        &dir,
        r#"
processes:
  - name: crashy
    path: CHILD
    args: [--name, crashy, --append-start, DIR/starts, --exit-after, 0, 3]
    restart: { initial_delay_sec: 0.05, factor: 2, jitter: 0, max_restarts: 4, window_sec: 60 }
"#,
    );
    let mut pilot = Pilot::run(&path);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(1));
    let starts: Vec<u128> = read_times(&dir.join("starts"))
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(starts.len(), 5, "{starts:?}");
    for (i, want) in [50u128, 100, 200, 400].into_iter().enumerate() {
        let gap_ms = (starts[i + 1] - starts[i]) / 1_000_000;
        assert!(
            gap_ms >= want,
            "start {} came {gap_ms} ms after the one before, under the {want} ms delay",
            i + 2
        );
    }
}

#[test]
fn a_calm_process_is_printed_all_through_a_flood() {
    let dir = Scratch::new("flood-interleave");
    let path = manifest(
        &dir,
        r#"
processes:
  - { name: flood, path: CHILD, args: [--flood, 1500] }
  - { name: calm, path: CHILD, args: [--name, calm, --tick, 20] }
"#,
    );
    let pilot = Pilot::run(&path);
    // The flood lasts 1.5 s; 40 ticks take 0.8 s, so they come while it runs unless they are held.
    wait_until("40 calm ticks are printed", SOON, || {
        pilot
            .stdout_text()
            .lines()
            .filter(|l| l.starts_with("calm  | calm tick "))
            .count()
            >= 40
    });
    // Calm ticks must appear between flood lines, not only before or after the flood.
    let out = pilot.stdout_text();
    let lines: Vec<&str> = out.lines().collect();
    let first_flood = lines.iter().position(|l| l.starts_with("flood | "));
    let last_flood = lines.iter().rposition(|l| l.starts_with("flood | "));
    let (Some(first), Some(last)) = (first_flood, last_flood) else {
        panic!("no flood line printed");
    };
    let between = lines[first..last]
        .iter()
        .filter(|l| l.starts_with("calm  | calm tick "))
        .count();
    assert!(
        between >= 10,
        "only {between} calm ticks were printed among the flood's lines"
    );
}
