//! Hostile plugins in C, Python and JavaScript: each is stopped by fuel, its deadline or its memory
//! cap with that reason in the log, and quarantined after three failures, while a tcp chain and a
//! crash loop beside it go on as usual.

use crate::guests::warm;
use crate::harness::{self, *};

/// Runs a manifest whose `victim` waits on `plugin`'s ready strategy `strategy` (under `limits`,
/// YAML), beside a healthy two-step tcp chain and a crash-looping process.
fn hostile_run(plugin_name: &str, strategy: &str, limits: &str) -> (Scratch, Pilot) {
    let dir = Scratch::new(&format!("guest-{strategy}"));
    let wasm = plugin("hostile", plugin_name);
    warm(std::slice::from_ref(&wasm));
    let plugins = plugin_dir(&dir, &[wasm]);
    let (p1, p2) = (free_port(), free_port());
    let m = harness::manifest(
        &dir,
        &format!(
            r#"
ready_check_interval_sec: 0.01
processes:
  - name: victim
    path: CHILD
    ready_strategy: {strategy}
    ready_timeout_sec: 3
  - {{ name: one, path: CHILD, args: [--listen-after, 50, {p1}], ready_strategy: tcp, ready_params: {{ port: {p1} }} }}
  - {{ name: two, path: CHILD, args: [--listen-after, 50, {p2}], ready_strategy: tcp, ready_params: {{ port: {p2} }}, dependencies: [one] }}
  - name: crashy
    path: CHILD
    args: [--exit-after, 20, 1]
    restart: {{ initial_delay_sec: 0.01, factor: 1, jitter: 0, max_restarts: 1000 }}
plugins:
  {plugin_name}: {limits}
"#
        ),
    );
    let pilot = Pilot::run_with_plugins(&m, &plugins);
    (dir, pilot)
}

/// Asserts the failure `want` of `strategy`, the quarantine, and that supervision went on meanwhile.
fn assert_contained(pilot: &Pilot, plugin_name: &str, strategy: &str, want: &str) {
    let line = pilot.wait_log(want, SOON);
    assert!(
        line.contains(&format!("ready check `{strategy}` of `victim`")),
        "{line}"
    );
    // The tcp chain gets ready as if nothing happened: each step listens after 50 ms.
    for step in ["one", "two"] {
        let (line, ms) = pilot.wait_ready(step);
        assert!(ms < 1000.0, "`{step}` was held up by the plugin: {line}");
    }
    wait_until("crashy restarts on", SOON, || {
        pilot.logs_with("crashy: started").len() >= 10
    });
    pilot.wait_log(
        &format!("plugin `{plugin_name}` 0.1.0: quarantined after 3 failed calls in a row"),
        SOON,
    );
    pilot.wait_log("victim: not ready after 3.0 s", SOON);
    let failures = pilot.logs_with(want).len();
    assert_eq!(
        failures,
        3,
        "calls after the quarantine:\n{}",
        pilot.stderr_text()
    );
}

#[test]
fn a_c_null_pointer_write_traps_out_of_bounds() {
    let (_dir, pilot) = hostile_run("hostile-c", "c-null-write", "{}");
    assert_contained(
        &pilot,
        "hostile-c",
        "c-null-write",
        "accessed memory out of bounds",
    );
}

#[test]
fn a_c_infinite_loop_is_interrupted_at_its_deadline() {
    let (_dir, pilot) = hostile_run(
        "hostile-c",
        "c-spin",
        "{ call_timeout_ms: 100, fuel: 100000000000 }",
    );
    assert_contained(
        &pilot,
        "hostile-c",
        "c-spin",
        "ran past its 100 ms deadline; interrupted",
    );
}

#[test]
fn a_python_while_true_runs_out_of_fuel() {
    let (_dir, pilot) = hostile_run("hostile-py", "py-spin", "{ fuel: 200000000 }");
    assert_contained(
        &pilot,
        "hostile-py",
        "py-spin",
        "ran out of fuel (200000000 units)",
    );
}

#[test]
fn a_javascript_allocation_loop_hits_its_memory_cap() {
    let (_dir, pilot) = hostile_run(
        "hostile-js",
        "js-alloc",
        "{ memory_mib: 96, fuel: 100000000000, call_timeout_ms: 2000 }",
    );
    assert_contained(
        &pilot,
        "hostile-js",
        "js-alloc",
        "hit its memory cap of 96 MiB",
    );
}

#[test]
fn the_well_behaved_strategies_of_each_language_answer_ready() {
    for (plugin_name, strategy) in [
        ("hostile-c", "c-ok"),
        ("hostile-py", "py-ok"),
        ("hostile-js", "js-ok"),
    ] {
        let (_dir, pilot) = hostile_run(plugin_name, strategy, "{}");
        pilot.wait_ready("victim");
        assert!(
            pilot.logs_with("quarantined").is_empty(),
            "{}",
            pilot.stderr_text()
        );
    }
}
