//! Readiness through the real `pilot-host run`: the file, pipe and tcp strategies in a chain, independent
//! processes starting together, a dependency that never gets ready, stale ready files, and Process
//! Pilot's pipe services.

use crate::harness::*;

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
