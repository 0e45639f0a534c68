//! `pilot-host run` with real child processes: start order, readiness, failures, restarts, stops.

use std::time::Duration;

use crate::harness::{self, *};

#[test]
fn a_ready_chain_over_file_pipe_and_tcp_starts_in_order_and_stops_cleanly() {
    let dir = Scratch::new("chain");
    let port = free_port();
    let manifest = manifest(
        &dir,
        &format!(
            r#"
processes:
  - name: disk
    path: CHILD
    args: [--name, disk, --append-start, DIR/starts, --touch-after, 100, DIR/disk.ready]
    ready_strategy: file
    ready_params: {{ path: DIR/disk.ready }}
  - name: queue
    path: CHILD
    args: [--name, queue, --append-start, DIR/starts, --pipe-after, 100, DIR/queue.fifo]
    dependencies: [disk]
    ready_strategy: pipe
    ready_params: {{ path: DIR/queue.fifo }}
  - name: api
    path: CHILD
    args: [--name, api, --append-start, DIR/starts, --listen-after, 100, {port}]
    dependencies: [queue]
    ready_strategy: tcp
    ready_params: {{ port: {port} }}
  - name: web
    path: CHILD
    args: [--name, web, --append-start, DIR/starts]
    dependencies: [api]
"#
        ),
    );
    let mut pilot = Pilot::run(&manifest);
    wait_until("all four children started", SOON, || {
        read_times(&dir.join("starts")).len() == 4
    });
    for name in ["disk", "queue", "api"] {
        pilot.wait_log(&format!("{name}: ready after"), SOON);
    }
    // A child may record its start before pilot-host logs its pid.
    pilot.wait_log("web: started, pid", SOON);
    let starts: Vec<String> = read_times(&dir.join("starts"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(starts, ["disk", "queue", "api", "web"]);
    // Each process started only after the one before it was ready: at least 100 ms apart.
    let times: Vec<u128> = read_times(&dir.join("starts"))
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 100_000_000,
            "started too early: {times:?}"
        );
    }
    assert!(
        !dir.join("queue.fifo").exists(),
        "the FIFO pilot-host created is removed once ready"
    );
    let pids: Vec<u32> = ["disk", "queue", "api", "web"]
        .iter()
        .map(|n| pilot.pid_of(n))
        .collect();
    pilot.signal(libc::SIGTERM);
    let status = pilot.wait_exit(SOON);
    assert_eq!(status.code(), Some(0), "{}", pilot.stderr_text());
    for pid in pids {
        assert!(!alive(pid), "child {pid} outlived pilot-host");
    }
}

#[test]
fn independent_processes_start_together() {
    let dir = Scratch::new("parallel");
    let manifest = manifest(
        &dir,
        r#"
processes:
  - { name: a, path: CHILD, args: [--touch-after, 300, DIR/a], ready_strategy: file, ready_params: { path: DIR/a } }
  - { name: b, path: CHILD, args: [--touch-after, 300, DIR/b], ready_strategy: file, ready_params: { path: DIR/b } }
  - { name: c, path: CHILD, dependencies: [a, b] }
"#,
    );
    let pilot = Pilot::run(&manifest);
    pilot.wait_log("c: started", SOON);
    let log = pilot.stderr_text();
    let pos = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` in\n{log}"))
    };
    assert!(
        pos("a: started") < pos("b: ready") && pos("b: started") < pos("a: ready"),
        "{log}"
    );
    assert!(
        pos("a: ready") < pos("c: started") && pos("b: ready") < pos("c: started"),
        "{log}"
    );
}

#[test]
fn a_dependency_that_never_gets_ready_fails_and_its_dependents_are_skipped() {
    let dir = Scratch::new("never-ready");
    let manifest = manifest(
        &dir,
        r#"
processes:
  - name: db
    path: CHILD
    ready_strategy: file
    ready_timeout_sec: 0.3
    ready_params: { path: DIR/never }
  - { name: api, path: CHILD, dependencies: [db] }
  - { name: web, path: CHILD, dependencies: [api] }
  - { name: side, path: CHILD, args: [--print, 1, --exit-after, 600, 0], shutdown_strategy: do_not_restart }
"#,
    );
    let mut pilot = Pilot::run(&manifest);
    let status = pilot.wait_exit(SOON);
    assert_eq!(status.code(), Some(1));
    let log = pilot.stderr_text();
    assert!(log.contains("db: not ready after 0.3 s"), "{log}");
    assert!(
        log.contains("api: skipped: dependency `db` failed: not ready after 0.3 s"),
        "{log}"
    );
    assert!(
        log.contains("web: skipped: dependency `db` failed")
            || log.contains("web: skipped: dependency `api` was skipped"),
        "{log}"
    );
    assert!(
        log.contains("side: exited with status 0"),
        "the independent process ran on:\n{log}"
    );
    assert!(pilot.stdout_text().contains("side | out 0"));
    assert!(pilot.logs_with("api: started").is_empty());
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_after_its_timeout() {
    let dir = Scratch::new("ignore-term");
    let manifest = manifest(
        &dir,
        r#"
processes:
  - { name: stubborn, path: CHILD, args: [--ignore-term, --pid-file, DIR/pid], timeout: 0.3 }
"#,
    );
    let mut pilot = Pilot::run(&manifest);
    let pid = read_pid(&dir.join("pid"));
    pilot.wait_log("stubborn: started", SOON);
    pilot.signal(libc::SIGTERM);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(0));
    assert!(
        pilot.stderr_text().contains(
            "stubborn: did not stop within 0.3 s of SIGTERM; killed (signal 9 (SIGKILL))"
        ),
        "{}",
        pilot.stderr_text()
    );
    assert!(!alive(pid));
}

#[test]
fn a_grandchild_goes_with_its_parent_on_stop() {
    let dir = Scratch::new("grandchild");
    let manifest = manifest(&dir, "processes:\n  - { name: parent, path: CHILD, args: [--grandchild, DIR/gc, --pid-file, DIR/pid] }\n");
    let mut pilot = Pilot::run(&manifest);
    let grandchild = read_pid(&dir.join("gc"));
    let child = read_pid(&dir.join("pid"));
    assert!(alive(grandchild) && alive(child));
    pilot.signal(libc::SIGTERM);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(0));
    assert!(!alive(child), "child survived");
    assert!(!alive(grandchild), "grandchild survived");
}

#[test]
fn sigkill_of_pilot_host_takes_children_and_grandchildren_along() {
    let dir = Scratch::new("sigkill");
    let manifest = manifest(
        &dir,
        r#"
processes:
  - { name: a, path: CHILD, args: [--pid-file, DIR/a, --ignore-term] }
  - { name: b, path: CHILD, args: [--pid-file, DIR/b, --grandchild, DIR/gc] }
"#,
    );
    let mut pilot = Pilot::run(&manifest);
    let pids = [
        read_pid(&dir.join("a")),
        read_pid(&dir.join("b")),
        read_pid(&dir.join("gc")),
    ];
    pilot.wait_log("b: started", SOON);
    pilot.signal(libc::SIGKILL);
    pilot.wait_exit(SOON);
    wait_until(
        "every child and grandchild is gone",
        Duration::from_secs(1),
        || pids.iter().all(|p| !alive(*p)),
    );
}

#[test]
fn stop_order_is_the_reverse_of_the_dependency_order() {
    let dir = Scratch::new("stop-order");
    let manifest = manifest(
        &dir,
        r#"
processes:
  - { name: db, path: CHILD, args: [--name, db, --record-stop, DIR/stops, --pid-file, DIR/db.pid] }
  - { name: api, path: CHILD, args: [--name, api, --record-stop, DIR/stops, --pid-file, DIR/api.pid], dependencies: [db] }
  - { name: web, path: CHILD, args: [--name, web, --record-stop, DIR/stops, --pid-file, DIR/web.pid], dependencies: [api] }
  - { name: cron, path: CHILD, args: [--name, cron, --record-stop, DIR/stops, --pid-file, DIR/cron.pid], dependencies: [db] }
"#,
    );
    let mut pilot = Pilot::run(&manifest);
    for name in ["db", "api", "web", "cron"] {
        // The pid file is written once the child is listening for SIGTERM.
        read_pid(&dir.join(&format!("{name}.pid")));
    }
    pilot.signal(libc::SIGINT);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(0));
    let stops = read_times(&dir.join("stops"));
    let when = |name: &str| {
        stops
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} not stopped: {stops:?}"))
            .1
    };
    assert!(when("web") < when("api"), "{stops:?}");
    assert!(
        when("api") < when("db") && when("cron") < when("db"),
        "{stops:?}"
    );
}

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
fn env_working_directory_and_affinity_are_seen_by_the_child() {
    let dir = Scratch::new("env");
    std::fs::create_dir(dir.join("wd")).unwrap();
    let manifest = manifest(
        &dir,
        r#"
processes:
  - name: probe
    path: CHILD
    args: [--print-env, GREETING, --print-env, HOME, --print-cwd, --print-affinity]
    env: { GREETING: hello, NUMBER: 7 }
    working_directory: DIR/wd
    affinity: [0]
  - name: default-dir
    path: CHILD
    args: [--print-cwd]
"#,
    );
    let pilot = Pilot::run(&manifest);
    pilot.wait_out("probe       | GREETING=hello", SOON);
    pilot.wait_out(
        &format!(
            "probe       | HOME={}",
            std::env::var("HOME").unwrap_or_else(|_| "<unset>".into())
        ),
        SOON,
    );
    pilot.wait_out(
        &format!("probe       | cwd={}", dir.join("wd").display()),
        SOON,
    );
    pilot.wait_out("probe       | affinity=0", SOON);
    let child_dir = pilot_child().parent().unwrap().to_path_buf();
    pilot.wait_out(&format!("default-dir | cwd={}", child_dir.display()), SOON);
    // pilot-host raises its own open-file limit; the child gets the limit pilot-host was started with.
    let open_files = |pid: &str| {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        let fields: Vec<String> = line
            .split_whitespace()
            .skip(3)
            .take(2)
            .map(String::from)
            .collect();
        (fields[0].clone(), fields[1].clone())
    };
    // The child can print before pilot-host's "started" line reaches us.
    pilot.wait_log("probe: started, pid ", SOON);
    let (mine, hard) = open_files("self");
    assert_eq!(
        open_files(&pilot.pid_of("probe").to_string()).0,
        mine,
        "the child's soft limit"
    );
    assert_eq!(
        open_files(&pilot.pid().to_string()).0,
        hard,
        "pilot-host's own soft limit is raised"
    );
}

#[test]
fn output_is_prefixed_and_a_flood_or_a_huge_line_blocks_nothing() {
    let dir = Scratch::new("flood");
    let manifest = manifest(
        &dir,
        r#"
processes:
  - { name: flood, path: CHILD, args: [--print, 50000, --long-line, 1000000, --touch-after, 0, DIR/flooded] }
  - { name: calm, path: CHILD, args: [--name, calm, --tick, 20] }
"#,
    );
    let pilot = Pilot::run(&manifest);
    // Lines printed while the flood fills the printer's queue may be dropped from the printout (never
    // from the buffer); the calm process's ticks must go on being printed all the same.
    wait_until("calm ticks on through the flood", SOON, || {
        pilot.stdout_text().lines().any(|l| {
            l.strip_prefix("calm  | calm tick ")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 3)
        })
    });
    wait_until("the flooding child got past its output", SOON, || {
        dir.join("flooded").exists()
    });
    // The child is past its output; pilot-host's printer and our reader may still be behind.
    wait_until("a prefixed line of the flood is printed", SOON, || {
        let out = pilot.stdout_text();
        out.contains("flood | out 0\n") || out.contains("flood | err 0\n")
    });
    wait_until("the long line is printed, cut", SOON, || {
        pilot
            .stdout_text()
            .lines()
            .any(|l| l.starts_with("flood | xxxx") && l.ends_with("…[line cut at 16 KiB]"))
    });
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
fn a_second_sigint_kills_at_once() {
    let dir = Scratch::new("second-sigint");
    let manifest = manifest(&dir, "processes:\n  - { name: stubborn, path: CHILD, args: [--ignore-term, --pid-file, DIR/pid], timeout: 60 }\n");
    let mut pilot = Pilot::run(&manifest);
    let pid = read_pid(&dir.join("pid"));
    pilot.wait_log("stubborn: started", SOON);
    pilot.signal(libc::SIGINT);
    pilot.wait_log("SIGINT received", SOON);
    pilot.signal(libc::SIGINT);
    pilot.wait_exit(SOON);
    assert!(pilot
        .stderr_text()
        .contains("second SIGINT: killing every process group now"));
    assert!(!alive(pid));
}

#[test]
fn a_stale_ready_file_does_not_make_a_new_run_look_ready() {
    let dir = Scratch::new("stale");
    dir.write("ready", "from an old run");
    let manifest = manifest(
        &dir,
        r#"
processes:
  - { name: slow, path: CHILD, args: [--touch-after, 200, DIR/ready], ready_strategy: file, ready_params: { path: DIR/ready } }
"#,
    );
    let pilot = Pilot::run(&manifest);
    let (_, ms) = pilot.wait_ready("slow");
    // The child writes the file 200 ms after its own start, which pilot-host may note a little late; a
    // stale file would make it ready within a few milliseconds.
    assert!(
        ms >= 150.0,
        "ready after {ms} ms, before the child wrote the file"
    );
}

#[test]
fn an_invalid_manifest_starts_nothing_and_exits_2() {
    let dir = Scratch::new("invalid-run");
    let manifest = manifest(&dir, "processes:\n  - { name: a, path: CHILD, args: [--pid-file, DIR/pid], dependencies: [ghost] }\n");
    let mut pilot = Pilot::run(&manifest);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(2));
    assert!(pilot.stderr_text().contains("`ghost` is not defined"));
    assert!(!dir.join("pid").exists());
}
