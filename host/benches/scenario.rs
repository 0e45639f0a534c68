//! The hostile-plugin scenario as a benchmark: `cargo bench -p pilot-host --bench scenario` (run by
//! `cargo xtask bench` after it built the release `pilot-child` and the plugins).
//!
//! Runs of the real release `pilot-host` with and without plugins alternate, so both see the same
//! machine, in three comparisons (`--shapes hostile,mixed,events`): the nine hostile ready checks
//! against calm; the same plus hostile control plugins (mixed) against calm; and 100 crash loops with
//! ten control plugins tallying every event against the same without plugins. Printed: the chain's
//! hand-off (median of each run's median, min–max over the runs) and the crash loop's restarts in the
//! window, each beside the baseline's, with the ratio and the target (hand-off within 2x calm + 1 ms,
//! or 1.2x for events; restarts at least 95 % of calm), and for events whether any plugin lost one. `PILOT_HOST_PLUGIN_NICE` is passed through
//! (a nice value, or `idle`), to compare plugin thread priorities. Args: `--runs N`, `--window-sec S`;
//! `SCENARIO_KEEP=1` keeps the runs' folders (manifests, logs, recorded times) for a look.

#[path = "../tests/cli/scenario.rs"]
mod scenario;

use std::path::PathBuf;
use std::time::Duration;

use scenario::{median, Paths, Shape};

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

/// One comparison: supervision with nothing beside it against the same with `shape`'s plugins.
struct Comparison {
    label: &'static str,
    base: Shape,
    shape: Shape,
}

/// What the runs of one side measured.
#[derive(Default)]
struct Side {
    handoff_ms: Vec<f64>,
    restarts: Vec<f64>,
    /// Events tallied by every plugin of every run; runs where one was lost; runs with a drop warning.
    events: Vec<f64>,
    lost: usize,
    dropped: usize,
}

fn main() {
    let runs = arg("--runs", 5.0) as usize;
    let window = Duration::from_secs_f64(arg("--window-sec", 8.0));
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--shapes")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "hostile,mixed,events".into());
    let host = PathBuf::from(env!("CARGO_BIN_EXE_pilot-host"));
    let target = host.parent().unwrap().parent().unwrap().to_path_buf();
    let child = host.with_file_name("pilot-child");
    let plugins = target.join("plugins/hostile-set");
    let control = target.join("plugins/control");
    assert!(
        child.exists(),
        "{} is missing: build testkit in release",
        child.display()
    );
    assert!(
        plugins.join("h-spin.wasm").exists() && control.join("control-probe.wasm").exists(),
        "run `cargo xtask plugins` first"
    );
    let comparisons = [
        Comparison {
            label: "hostile",
            base: Shape::calm(),
            shape: Shape::hostile(),
        },
        Comparison {
            label: "mixed",
            base: Shape::calm(),
            shape: Shape::mixed(),
        },
        Comparison {
            label: "events",
            base: Shape::events(0),
            shape: Shape::events(10),
        },
    ];
    let scratch = std::env::temp_dir().join(format!("pilot-bench-scenario-{}", std::process::id()));
    for c in comparisons
        .iter()
        .filter(|c| only.split(',').any(|o| o == c.label))
    {
        let (mut base, mut beside) = (Side::default(), Side::default());
        for i in 0..runs {
            for with in [false, true] {
                let paths = Paths {
                    host: host.clone(),
                    child: child.clone(),
                    plugins: plugins.clone(),
                    control: control.clone(),
                    scratch: scratch.join(format!("{}-{i}-{with}", c.label)),
                };
                let shape = if with { &c.shape } else { &c.base };
                let f = scenario::run_shape(&paths, shape, window).expect("a scenario run");
                let side = if with { &mut beside } else { &mut base };
                side.handoff_ms.push(median(&f.handoffs_ms));
                side.restarts.push(f.restarts as f64);
                if shape.event_plugins > 0 {
                    let complete = f.tallies.len() == shape.event_plugins
                        && f.tallies.iter().all(|t| {
                            t.gaps == 0 && t.count == t.last - t.first + 1 && *t == f.tallies[0]
                        });
                    side.lost += usize::from(!complete);
                    side.events.extend(f.tallies.iter().map(|t| t.count as f64));
                }
                side.dropped += usize::from(f.log.contains("events were dropped"));
                eprintln!(
                    "scenario {} run {}/{runs} {}: hand-off {:.2} ms, {} restarts{}",
                    c.label,
                    i + 1,
                    if with { "with plugins" } else { "without" },
                    median(&f.handoffs_ms),
                    f.restarts,
                    if shape.event_plugins > 0 {
                        format!(", tallies {:?}", f.tallies)
                    } else if shape.hostile_control {
                        format!(
                            ", control requests (made, answered) {:?}",
                            f.control_requests
                        )
                    } else {
                        String::new()
                    }
                );
            }
        }
        print_table(c, runs, window, &base, &beside);
    }
    if std::env::var_os("SCENARIO_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    println!(
        "\nPlugin threads: {} at {}.",
        pilot_host::plugin::plugin_threads(),
        std::env::var("PILOT_HOST_PLUGIN_NICE")
            .map(|v| format!("PILOT_HOST_PLUGIN_NICE={v}"))
            .unwrap_or_else(|_| format!("nice {}", pilot_host::plugin::PLUGIN_NICE))
    );
}

fn print_table(c: &Comparison, runs: usize, window: Duration, base: &Side, beside: &Side) {
    let (cm, hm) = (median(&base.handoff_ms), median(&beside.handoff_ms));
    let (cn, hn) = (median(&base.restarts), median(&beside.restarts));
    let ((hlo, hhi), (clo, chi)) = (range(&beside.handoff_ms), range(&base.handoff_ms));
    let ((nlo, nhi), (cnlo, cnhi)) = (range(&beside.restarts), range(&base.restarts));
    let met = |ok: bool| if ok { "yes" } else { "**no**" };
    let (what, against) = match c.label {
        "hostile" => ("beside 9 hostile ready checks", "calm, same run"),
        "mixed" => (
            "beside 9 hostile ready checks + 2 hostile control plugins",
            "calm, same run",
        ),
        _ => (
            "100 crash loops, 10 plugins subscribed to every event",
            "the same without plugins",
        ),
    };
    println!("\n| {what} ({runs} runs each, window {:.0} s) | median (min–max) | {against} | ratio | target | met |", window.as_secs_f64());
    println!("|---|---|---|---|---|---|");
    let (limit, target) = if c.label == "events" {
        (1.2 * cm, "≤ 1.2×".to_string())
    } else {
        (
            2.0 * cm + 1.0,
            format!("≤ 2× calm + 1 ms = {:.2} ms", 2.0 * cm + 1.0),
        )
    };
    println!(
        "| 10-step tcp chain: ready → dependent spawn | {hm:.2} ms ({hlo:.2}–{hhi:.2}) | {cm:.2} ms ({clo:.2}–{chi:.2}) | {:.2}× | {target} | {} |",
        hm / cm,
        met(hm <= limit)
    );
    if c.label == "events" {
        let (e, (elo, ehi)) = (median(&beside.events), range(&beside.events));
        println!(
            "| crash-loop restarts in the window | {hn:.0} ({nlo:.0}–{nhi:.0}) | {cn:.0} ({cnlo:.0}–{cnhi:.0}) | {:.2}× | | |",
            hn / cn
        );
        println!(
            "| events each plugin got by the stop (per run) | {e:.0} ({elo:.0}–{ehi:.0}); runs with one lost: {}, with a drop warning: {} | | | none lost | {} |",
            beside.lost,
            beside.dropped,
            met(beside.lost == 0 && beside.dropped == 0)
        );
    } else {
        println!(
            "| crash loop restarts in the window | {hn:.0} ({nlo:.0}–{nhi:.0}) | {cn:.0} ({cnlo:.0}–{cnhi:.0}) | {:.2}× | ≥ 0.95× | {} |",
            hn / cn,
            met(hn >= 0.95 * cn)
        );
    }
}
