//! Stopping through the real `pilot-host run`: stop order, grace and SIGKILL, process groups and
//! grandchildren, adopted daemons, a second Ctrl-C, and pilot-host killed with SIGKILL.

use std::time::Duration;

use crate::harness::*;

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
