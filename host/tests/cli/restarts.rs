//! Restarts through the real `pilot-host run`: backoff slept and logged, the crash-loop budget, stable
//! runs restarted at once, and the shutdown strategies.

use crate::harness::{self, *};

#[test]
fn a_crash_loop_backs_off_then_fails() {
    let dir = Scratch::new("crash-loop");
    let manifest = manifest(
        &dir,
        r#"
processes:
  - name: crashy
    path: CHILD
    args: [--exit-after, 5, 3]
    restart: { initial_delay_sec: 0.02, factor: 2, jitter: 0, max_restarts: 4, window_sec: 60 }
"#,
    );
    let mut pilot = Pilot::run(&manifest);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(1));
    let delays: Vec<f64> = pilot
        .logs_with("crashy: exited with status 3")
        .iter()
        .filter_map(|l| l.split("restarting in ").nth(1))
        .map(|rest| rest.trim_end_matches(" s").parse().unwrap())
        .collect();
    assert_eq!(
        delays,
        vec![0.02, 0.04, 0.08, 0.16],
        "{}",
        pilot.stderr_text()
    );
    assert!(
        pilot.stderr_text().contains(
            "crashy: failed: crash loop: 5 quick exits within 60 s (last: status 3); giving up"
        ),
        "{}",
        pilot.stderr_text()
    );
}

#[test]
fn a_stable_run_is_restarted_at_once() {
    let dir = Scratch::new("stable");
    let manifest = manifest(
        &dir,
        r#"
processes:
  - name: steady
    path: CHILD
    args: [--exit-after, 150, 0]
    restart: { min_uptime_sec: 0.1, initial_delay_sec: 5 }
"#,
    );
    let pilot = Pilot::run(&manifest);
    let line = pilot.wait_log("steady: exited with status 0", SOON);
    assert!(line.ends_with("restarting in 0.000 s"), "{line}");
    wait_until("a second start", SOON, || {
        pilot.logs_with("steady: started").len() >= 2
    });
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
fn do_not_restart_leaves_a_process_stopped_and_a_failure_shows_in_the_exit_code() {
    let dir = Scratch::new("do-not-restart");
    let manifest = manifest(
        &dir,
        r#"
processes:
  - { name: ok, path: CHILD, args: [--exit-after, 50, 0], shutdown_strategy: do_not_restart }
  - { name: bad, path: CHILD, args: [--exit-after, 50, 2], shutdown_strategy: do_not_restart }
"#,
    );
    let mut pilot = Pilot::run(&manifest);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(1));
    assert_eq!(pilot.logs_with("ok: started").len(), 1);
    assert_eq!(pilot.logs_with("bad: started").len(), 1);
    assert!(pilot.stderr_text().contains(
        "1 of 2 processes did not end as configured: `bad` failed (exited with status 2)"
    ));
}

#[test]
fn shutdown_everything_stops_all_and_exits_with_the_trigger_status() {
    let dir = Scratch::new("shutdown-everything");
    let manifest = manifest(
        &dir,
        r#"
processes:
  - { name: server, path: CHILD, args: [--pid-file, DIR/server] }
  - { name: job, path: CHILD, args: [--exit-after, 100, 0], shutdown_strategy: shutdown_everything, dependencies: [server] }
"#,
    );
    let mut pilot = Pilot::run(&manifest);
    let server = read_pid(&dir.join("server"));
    assert_eq!(
        pilot.wait_exit(SOON).code(),
        Some(0),
        "{}",
        pilot.stderr_text()
    );
    assert!(!alive(server));
    let failing = harness::manifest(&dir, "processes:\n  - { name: job, path: CHILD, args: [--exit-after, 50, 4], shutdown_strategy: shutdown_everything }\n");
    let mut pilot = Pilot::run(&failing);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(1));
    assert!(
        pilot
            .stderr_text()
            .contains("`job` failed (exited with status 4)"),
        "{}",
        pilot.stderr_text()
    );
}
