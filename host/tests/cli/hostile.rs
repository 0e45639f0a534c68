//! Nine hostile plugins beside a tcp ready chain and a crash loop: supervision keeps its pace
//! (the scenario is in `scenario.rs`; `cargo xtask bench` measures it precisely).

use std::time::Duration;

use crate::harness::{pilot_child, plugin, Scratch};
use crate::scenario::{self, median, Paths};

#[test]
fn hostile_plugins_do_not_slow_supervision() {
    let dir = Scratch::new("hostile-scenario");
    let paths = |run: &str| Paths {
        host: env!("CARGO_BIN_EXE_pilot-host").into(),
        child: pilot_child(),
        plugins: plugin("hostile-set", "h-spin")
            .parent()
            .unwrap()
            .to_path_buf(),
        scratch: dir.join(run),
    };
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
