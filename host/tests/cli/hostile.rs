//! Nine hostile plugins beside a tcp ready chain and a crash loop: supervision keeps its pace
//! (the scenario is in `scenario.rs`; `cargo xtask bench` measures it precisely).

use std::time::Duration;

use crate::harness::{pilot_child, plugin, Scratch};
use crate::scenario::{self, median, Paths, Shape};

fn paths(dir: &Scratch, run: &str) -> Paths {
    Paths {
        host: env!("CARGO_BIN_EXE_pilot-host").into(),
        child: pilot_child(),
        plugins: plugin("hostile-set", "h-spin")
            .parent()
            .unwrap()
            .to_path_buf(),
        control: plugin("control", "control-probe")
            .parent()
            .unwrap()
            .to_path_buf(),
        scratch: dir.join(run),
    }
}

#[test]
fn hostile_plugins_do_not_slow_supervision() {
    let dir = Scratch::new("hostile-scenario");
    let paths = |run: &str| paths(&dir, run);
    let window = Duration::from_secs(3);
    let calm = scenario::run(&paths("calm"), false, window).unwrap();
    let hostile = scenario::run(&paths("hostile"), true, window).unwrap();
    // The plugins did misbehave the whole time, each its own way.
    let missing: Vec<&str> = [
        "plugin `h-spin` 0.1.0: ready check `h-spin` of `v-h-spin`: ran past its 100 ms deadline",
        "plugin `h-sleep` 0.1.0: ready check `h-sleep` of `v-h-sleep`: did not return within its 100 ms limit",
        "plugin `h-socket` 0.1.0: ready check `h-socket` of `v-h-socket`: ",
        "plugin `h-membomb` 0.1.0: ready check `h-membomb` of `v-h-membomb`: ",
        "plugin `h-recurse` 0.1.0: ready check `h-recurse` of `v-h-recurse`: ",
        "plugin `h-trap` 0.1.0: ready check `h-trap` of `v-h-trap`: panicked",
        "plugin `h-huge` 0.1.0: ready check `h-huge` of `v-h-huge`: passed more than",
        "plugin `h-flood`: ",
    ]
    .into_iter()
    .filter(|want| !hostile.log.contains(want))
    .collect();
    let h_lines: Vec<&str> = hostile
        .log
        .lines()
        .filter(|l| !l.contains("h-trap"))
        .collect();
    assert!(
        missing.is_empty(),
        "missing from the log: {missing:?}; its lines but h-trap's (last 40):\n{}",
        h_lines[h_lines.len().saturating_sub(40)..].join("\n")
    );
    let (calm_ms, hostile_ms) = (median(&calm.handoffs_ms), median(&hostile.handoffs_ms));
    eprintln!(
        "hand-off median {hostile_ms:.2} ms hostile, {calm_ms:.2} ms calm; restarts {} hostile, {} calm",
        hostile.restarts, calm.restarts
    );
    // Loose bounds for a noisy shared machine; the benchmark holds the target (2x calm + 1 ms, 95 %).
    assert!(
        hostile_ms <= 3.0 * calm_ms + 5.0,
        "chain hand-off: {hostile_ms:.2} ms beside hostile plugins against {calm_ms:.2} ms calm ({:?} against {:?})",
        hostile.handoffs_ms,
        calm.handoffs_ms
    );
    assert!(
        hostile.restarts as f64 >= 0.8 * calm.restarts as f64,
        "crash loop: {} restarts in {window:?} beside hostile plugins against {} calm",
        hostile.restarts,
        calm.restarts
    );
}

/// Every kind at once: the nine hostile ready checks, a control plugin whose handler spins (kept busy
/// by clients, alternating with 64 MiB answers) and one restarting on every event without a grant.
#[test]
fn hostile_ready_checks_and_control_plugins_do_not_slow_supervision() {
    let dir = Scratch::new("mixed-scenario");
    let window = Duration::from_secs(3);
    let calm = scenario::run_shape(&paths(&dir, "calm"), &Shape::calm(), window).unwrap();
    let mixed = scenario::run_shape(&paths(&dir, "mixed"), &Shape::mixed(), window).unwrap();
    let (made, answered) = mixed.control_requests;
    assert!(
        made > 10 && answered > 0,
        "the clients made {made} requests to the spinning plugin, {answered} answered"
    );
    for want in [
        "`probe-spinner`",
        "HTTP request",
        "`probe-stormer`: denied",
        "plugin `h-spin` 0.1.0: ready check",
    ] {
        let tail: Vec<&str> = mixed.log.lines().rev().take(40).collect();
        assert!(
            mixed.log.contains(want),
            "`{want}` is missing from the log; its last lines:\n{}",
            tail.join("\n")
        );
    }
    eprintln!(
        "restarts {} beside hostile ready checks and control plugins, {} calm; hand-off {:.2} ms, {:.2} ms calm",
        mixed.restarts,
        calm.restarts,
        median(&mixed.handoffs_ms),
        median(&calm.handoffs_ms)
    );
    // Loose for a machine shared with the rest of the suite; the benchmark holds 95 %.
    assert!(
        mixed.restarts as f64 >= 0.8 * calm.restarts as f64,
        "crash loop: {} restarts in {window:?} beside hostile plugins of every kind against {} calm",
        mixed.restarts,
        calm.restarts
    );
}

/// Control plugins subscribed to every event while processes crash-loop: each gets every event, in
/// order, none dropped.
#[test]
fn event_plugins_lose_no_event_while_processes_crash_loop() {
    let dir = Scratch::new("events-scenario");
    let shape = Shape {
        crashers: 20,
        ..Shape::events(3)
    };
    let run = scenario::run_shape(&paths(&dir, "events"), &shape, Duration::from_secs(2)).unwrap();
    assert!(run.restarts > 20, "only {} restarts", run.restarts);
    assert_eq!(
        run.tallies.len(),
        3,
        "tallies: {:?}\n{}",
        run.tallies,
        run.log
    );
    for t in &run.tallies {
        assert_eq!(t.gaps, 0, "{t:?}");
        // Started before the processes, it gets the run's events from the first.
        assert_eq!(t.first, 1, "{t:?}");
        assert_eq!(t.count, t.last - t.first + 1, "{t:?}");
        assert_eq!(t, &run.tallies[0], "every plugin got the same events");
        // Several events per restart: spawned, state changes, exited, restart scheduled.
        assert!(
            t.count as usize > 3 * run.restarts,
            "{t:?} for {} restarts",
            run.restarts
        );
    }
    assert!(
        !run.log.contains("events were dropped"),
        "events were dropped:\n{}",
        run.log
    );
}
