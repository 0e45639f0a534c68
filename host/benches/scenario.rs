//! The hostile-plugin scenario as a benchmark: `cargo bench -p pilot-host --bench scenario` (run by
//! `cargo xtask bench` after it built the release `pilot-child` and the plugins).
//!
//! Calm and hostile runs of the real release `pilot-host` alternate, so both see the same machine.
//! Printed: the chain's hand-off (median of each run's median, min–max over the runs) and the crash
//! loop's restarts in the window, each beside the calm run's, with the ratio and the target (hand-off
//! within 2x calm + 1 ms; restarts at least 95 % of calm). `PILOT_HOST_PLUGIN_NICE` is passed through
//! (a nice value, or `idle`), to compare plugin thread priorities. Args: `--runs N`, `--window-sec S`;
//! `SCENARIO_KEEP=1` keeps the runs' folders (manifests, logs, recorded times) for a look.

#[path = "../tests/cli/scenario.rs"]
mod scenario;

use std::path::PathBuf;
use std::time::Duration;

use scenario::{median, Paths};

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn range(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

fn main() {
    let runs = arg("--runs", 5.0) as usize;
    let window = Duration::from_secs_f64(arg("--window-sec", 8.0));
    let host = PathBuf::from(env!("CARGO_BIN_EXE_pilot-host"));
    let target = host.parent().unwrap().parent().unwrap().to_path_buf();
    let child = host.with_file_name("pilot-child");
    let plugins = target.join("plugins/hostile-set");
    assert!(
        child.exists(),
        "{} is missing: build testkit in release",
        child.display()
    );
    assert!(
        plugins.join("h-spin.wasm").exists(),
        "run `cargo xtask plugins` first"
    );
    let scratch = std::env::temp_dir().join(format!("pilot-bench-scenario-{}", std::process::id()));
    let (mut calm_ms, mut hostile_ms, mut calm_n, mut hostile_n) = (vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        for hostile in [false, true] {
            let paths = Paths {
                host: host.clone(),
                child: child.clone(),
                plugins: plugins.clone(),
                scratch: scratch.join(format!("{i}-{hostile}")),
            };
            let f = scenario::run(&paths, hostile, window).expect("a scenario run");
            let (ms, n) = if hostile {
                (&mut hostile_ms, &mut hostile_n)
            } else {
                (&mut calm_ms, &mut calm_n)
            };
            ms.push(median(&f.handoffs_ms));
            n.push(f.restarts as f64);
            eprintln!(
                "scenario run {}/{runs} {}: hand-off {:.2} ms, {} restarts",
                i + 1,
                if hostile { "hostile" } else { "calm" },
                median(&f.handoffs_ms),
                f.restarts
            );
        }
    }
    if std::env::var_os("SCENARIO_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    print_table(runs, window, [&calm_ms, &hostile_ms, &calm_n, &hostile_n]);
}

fn print_table(
    runs: usize,
    window: Duration,
    [calm_ms, hostile_ms, calm_n, hostile_n]: [&Vec<f64>; 4],
) {
    let (cm, hm) = (median(calm_ms), median(hostile_ms));
    let (cn, hn) = (median(calm_n), median(hostile_n));
    let ((hlo, hhi), (clo, chi)) = (range(hostile_ms), range(calm_ms));
    let ((nlo, nhi), (cnlo, cnhi)) = (range(hostile_n), range(calm_n));
    let met = |ok: bool| if ok { "yes" } else { "**no**" };
    println!("| measurement ({runs} runs each, window {:.0} s) | beside 9 hostile plugins: median (min–max) | calm, same run | ratio | target | met |", window.as_secs_f64());
    println!("|---|---|---|---|---|---|");
    println!(
        "| 10-step tcp chain: ready → dependent spawn | {hm:.2} ms ({hlo:.2}–{hhi:.2}) | {cm:.2} ms ({clo:.2}–{chi:.2}) | {:.2}× | ≤ 2× calm + 1 ms = {:.2} ms | {} |",
        hm / cm,
        2.0 * cm + 1.0,
        met(hm <= 2.0 * cm + 1.0)
    );
    println!(
        "| crash loop restarts in the window | {hn:.0} ({nlo:.0}–{nhi:.0}) | {cn:.0} ({cnlo:.0}–{cnhi:.0}) | {:.2}× | ≥ 0.95× | {} |",
        hn / cn,
        met(hn >= 0.95 * cn)
    );
    println!(
        "\nPlugin threads: {} at {}.",
        pilot_host::plugin::plugin_threads(),
        std::env::var("PILOT_HOST_PLUGIN_NICE")
            .map(|v| format!("PILOT_HOST_PLUGIN_NICE={v}"))
            .unwrap_or_else(|_| format!("nice {}", pilot_host::plugin::PLUGIN_NICE))
    );
}
