//! Live reload through the real `pilot-host run` (SIGHUP): what is added, removed, changed, restarted
//! with a changed dependency, and kept.

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
