//! `cargo xtask bench [--quick] [--only a,b,c,d,e,k,p,h]`: builds the release `pilot-host` and
//! `pilot-child`, drives the real binary on generated manifests, and prints a table of medians (min–max
//! over the repetitions), each beside a baseline measured by the same command, the ratio, and the
//! target of issue 8. The supervisor part takes about six minutes, most of it the idle measurements;
//! `--quick` takes about a minute and is only for trying the bench out.
//!
//! Measured:
//! - (a) `run` of 100 and of 1000 × `/bin/true` to its exit, against the shell loop
//!   `for i in $(seq N); do /bin/true & done; wait`; and the start of 100 and of 1000 children until all
//!   run, against as many direct spawns;
//! - (b) the overhead of a 10-step tcp ready chain (each child listens after 50 ms) over 0.5 s;
//! - (c) restart latency from SIGKILL of a child to its replacement's spawn, 20 times, against SIGKILL,
//!   waitpid, spawn;
//! - (d) pilot-host's CPU and RSS while idling 30 s over 100 and over 1000 children with stats every
//!   second, and the RSS each supervised process adds;
//! - (e) stop of 20 children that ignore SIGTERM, with a 1 s timeout; stop of 1000 children;
//! - (k) the control plane: `ctl restart` round trip against the library call, `GET /v1/processes`
//!   under 200 concurrent clients against a bare hyper server, restart latency under control-plane
//!   load against quiet, and a request to a trivial control plugin against a built-in route
//!   (`cargo bench -p pilot-host --bench control`);
//! - (p) the plugin runtime (`cargo bench -p pilot-host --bench plugins`);
//! - (h) a tcp chain and a crash loop beside nine hostile plugins, then beside them and two hostile
//!   control plugins under request load, against a calm run; and 100 crash loops with ten control
//!   plugins tallying every event, against the same without plugins (`host/benches/scenario.rs`,
//!   about six minutes).

mod cases;
mod procs;

use std::process::Command;

use procs::Paths;

/// How many repetitions of each measurement.
struct Plan {
    start: usize,
    chain: usize,
    kills: usize,
    idle: usize,
    idle_secs: u64,
    stop: usize,
}

const FULL: Plan = Plan {
    start: 10,
    chain: 10,
    kills: 20,
    idle: 3,
    idle_secs: 30,
    stop: 5,
};

const QUICK: Plan = Plan {
    start: 3,
    chain: 3,
    kills: 10,
    idle: 1,
    idle_secs: 5,
    stop: 2,
};

/// Runs the benchmarks.
pub fn bench(args: &[String]) -> Result<(), String> {
    let mut plan = &FULL;
    let mut quick = false;
    let mut only = "abcdepkh".to_string();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => {
                plan = &QUICK;
                quick = true;
            }
            "--only" => {
                only = rest
                    .next()
                    .ok_or("`--only` needs letters, e.g. `--only a,c`")?
                    .clone()
            }
            other => {
                return Err(format!(
                    "unknown bench argument `{other}` (known: --quick, --only LETTERS)"
                ))
            }
        }
    }
    super::run(Command::new("cargo").args([
        "build",
        "--release",
        "--package",
        "pilot-host",
        "--package",
        "testkit",
        "--bins",
    ]))?;
    let release = super::root().join("target/release");
    let paths = Paths {
        host: release.join("pilot-host"),
        child: release.join("pilot-child"),
        scratch: std::env::temp_dir().join(format!("pilot-bench-{}", std::process::id())),
    };
    raise_nofile();
    let started = std::time::Instant::now();
    let load = loadavg();
    let result = measure(&paths, plan, &only);
    let _ = std::fs::remove_dir_all(&paths.scratch);
    let rows = result?;
    println!(
        "\npilot-host benchmarks, {} CPUs, load average {load} before and {} after, {:.0} s in all\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    print_table(&rows);
    if only.contains('k') {
        // The control plane, driven by a bench binary of the host crate against the release binaries.
        println!("\nControl plane (medians, min–max):\n");
        let mut cmd = Command::new("cargo");
        cmd.args(["bench", "--quiet", "-p", "pilot-host", "--bench", "control"]);
        if std::ptr::eq(plan, &QUICK) {
            cmd.args(["--", "--quick"]);
        }
        super::run(&mut cmd)?;
    }
    if only.contains('p') {
        // The plugin runtime, measured in-process by a bench binary of the host crate.
        super::plugins::plugins(&[])?;
        println!("\nPlugin runtime (medians, min–max):\n");
        super::run(Command::new("cargo").args([
            "bench",
            "--quiet",
            "-p",
            "pilot-host",
            "--bench",
            "plugins",
        ]))?;
    }
    if only.contains('h') {
        // Supervision beside nine hostile plugins against a calm run, with the real release binary.
        super::plugins::plugins(&[])?;
        println!("\nSupervision beside hostile plugins (medians, min–max):\n");
        let size: &[&str] = if quick {
            &["--runs", "2", "--window-sec", "3"]
        } else {
            &["--runs", "5", "--window-sec", "8"]
        };
        super::run(
            Command::new("cargo")
                .args([
                    "bench",
                    "--quiet",
                    "-p",
                    "pilot-host",
                    "--bench",
                    "scenario",
                    "--",
                ])
                .args(size),
        )?;
    }
    Ok(())
}

/// The baselines hold the pipes of 1000 children: raise the soft limit on open files to the hard one.
fn raise_nofile() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid rlimit of our own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().next().unwrap_or("?").to_string())
        .unwrap_or_else(|_| "?".into())
}

/// One line of the table.
struct Row {
    what: String,
    unit: Unit,
    host: Stat,
    base: Stat,
    target: &'static str,
    met: bool,
    reference: &'static str,
}

#[derive(Clone, Copy)]
enum Unit {
    Ms,
    S,
    Percent,
    Mb,
    Kb,
}

impl Unit {
    fn number(self, v: f64) -> String {
        match self {
            Unit::Ms if v.abs() < 10.0 => format!("{v:.2}"),
            Unit::Ms | Unit::Mb | Unit::Kb => format!("{v:.1}"),
            Unit::S | Unit::Percent => format!("{v:.3}"),
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::S => "s",
            Unit::Percent => "%",
            Unit::Mb => "MB",
            Unit::Kb => "KB",
        }
    }
}

/// A median with its range, or a single value such as a p95.
struct Stat {
    value: f64,
    range: Option<(f64, f64)>,
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

fn median(values: &[f64]) -> Stat {
    let v = sorted(values);
    let n = v.len();
    let value = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stat {
        value,
        range: Some((v[0], v[n - 1])),
    }
}

/// The nearest-rank 95th percentile.
fn p95(values: &[f64]) -> Stat {
    let v = sorted(values);
    let rank = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Stat {
        value: v[rank - 1],
        range: None,
    }
}

fn measure(p: &Paths, plan: &Plan, only: &str) -> Result<Vec<Row>, String> {
    std::fs::create_dir_all(&p.scratch)
        .map_err(|e| format!("cannot create the scratch folder: {e}"))?;
    let mut rows = Vec::new();
    let progress = |what: &str| eprintln!("bench: {what}");
    if only.contains('a') {
        for n in [100, 1000] {
            progress(&format!("(a) run of {n} × /bin/true against a shell loop"));
            let t = cases::run_true(p, n, plan.start)?;
            let host = median(&t.host);
            let base = median(&t.base);
            rows.push(Row {
                what: format!("(a) `run` of {n} × /bin/true, to exit (baseline: shell loop)"),
                unit: Unit::Ms,
                met: host.value <= 1.2 * base.value,
                host,
                base,
                target: "≤ 1.2× baseline",
                reference: "",
            });
            progress(&format!("(a) start of {n} children until all run"));
            let s = cases::start_n(p, n, plan.start)?;
            let host = median(&s.host);
            let base = median(&s.base);
            rows.push(Row {
                what: format!("(a) start {n} children until all run (baseline: direct spawns)"),
                unit: Unit::Ms,
                met: host.value <= 1.2 * base.value,
                host,
                base,
                target: "≤ 1.2× baseline",
                reference: if n == 100 { "0.27 s" } else { "" },
            });
        }
    }
    if only.contains('b') {
        progress("(b) 10-step tcp ready chain");
        let s = cases::tcp_chain(p, plan.chain)?;
        let host = median(&s.host);
        rows.push(Row {
            what: "(b) 10-step tcp chain, overhead over 0.5 s".into(),
            unit: Unit::Ms,
            met: host.value <= median(&s.base).value + 2.0,
            host,
            base: median(&s.base),
            target: "≤ baseline + 2 ms",
            reference: "0.62 s",
        });
    }
    if only.contains('c') {
        progress("(c) restart after SIGKILL");
        let s = cases::restart(p, plan.kills)?;
        let host = median(&s.host);
        rows.push(Row {
            what: "(c) restart after SIGKILL, median".into(),
            unit: Unit::Ms,
            met: host.value <= 1.5 * median(&s.base).value,
            host,
            base: median(&s.base),
            target: "≤ 1.5× baseline",
            reference: "70 ms (PM2 7.4 ms)",
        });
        let host = p95(&s.host);
        rows.push(Row {
            what: "(c) restart after SIGKILL, p95".into(),
            unit: Unit::Ms,
            met: host.value <= 5.0,
            host,
            base: p95(&s.base),
            target: "≤ 5 ms",
            reference: "",
        });
    }
    if only.contains('d') {
        let mut rss = Vec::new();
        for (n, limit) in [(100, 0.05), (1000, 0.2)] {
            progress(&format!(
                "(d) idling {} s over {n} children, {} times",
                plan.idle_secs, plan.idle
            ));
            let s = cases::idle(p, n, plan.idle, plan.idle_secs)?;
            let host = median(&s.cpu.host);
            rows.push(Row {
                what: format!("(d) idle CPU, {n} children, stats every 1 s"),
                unit: Unit::Percent,
                met: host.value <= limit,
                host,
                base: median(&s.cpu.base),
                target: if n == 100 {
                    "≤ 0.05 % of a core"
                } else {
                    "≤ 0.2 % of a core"
                },
                reference: if n == 100 { "4.3 %" } else { "" },
            });
            let host = median(&s.rss.host);
            rss.push(host.value);
            rows.push(Row {
                what: format!("(d) idle RSS, {n} children"),
                unit: Unit::Mb,
                met: host.value <= 20.0 || n == 1000,
                host,
                base: median(&s.rss.base),
                target: if n == 100 { "≤ 20 MB" } else { "" },
                reference: if n == 100 { "34 MB" } else { "" },
            });
        }
        // What each process adds: the growth from 100 to 1000 children, per child.
        let per = (rss[1] - rss[0]) * 1e6 / 900.0 / 1e3;
        rows.push(Row {
            what: "(d) RSS per supervised process (growth from 100 to 1000, in KB)".into(),
            unit: Unit::Kb,
            met: per <= 30.0,
            host: Stat {
                value: per,
                range: None,
            },
            base: Stat {
                value: 0.0,
                range: None,
            },
            target: "≤ 30 KB",
            reference: "87 KB before",
        });
    }
    if only.contains('e') {
        progress("(e) stop of 20 children that ignore SIGTERM");
        let s = cases::stop_20(p, plan.stop)?;
        let host = median(&s.host);
        rows.push(Row {
            what: "(e) stop 20 SIGTERM-ignoring children, timeout 1 s".into(),
            unit: Unit::S,
            met: host.value <= 1.05,
            host,
            base: median(&s.base),
            target: "≤ 1.05 s",
            reference: "",
        });
        progress("(e) stop of 1000 children");
        let s = cases::stop_n(p, 1000, plan.stop)?;
        let host = median(&s.host);
        rows.push(Row {
            what: "(e) stop 1000 children (baseline: SIGTERM all, reap all)".into(),
            unit: Unit::S,
            met: host.value <= 0.5,
            host,
            base: median(&s.base),
            target: "≤ 0.5 s",
            reference: "",
        });
    }
    Ok(rows)
}

fn show(unit: Unit, s: &Stat) -> String {
    let value = format!("{} {}", unit.number(s.value), unit.suffix());
    match s.range {
        Some((lo, hi)) => format!("{value} ({}–{})", unit.number(lo), unit.number(hi)),
        None => value,
    }
}

fn print_table(rows: &[Row]) {
    println!("| measurement | pilot-host: median (min–max) | baseline | ratio | target | met | Process Pilot |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let ratio = if r.base.value.abs() > f64::EPSILON {
            format!("{:.2}×", r.host.value / r.base.value)
        } else {
            "–".into()
        };
        println!(
            "| {} | {} | {} | {ratio} | {} | {} | {} |",
            r.what,
            show(r.unit, &r.host),
            show(r.unit, &r.base),
            r.target,
            if r.met { "yes" } else { "**no**" },
            r.reference
        );
    }
    println!(
        "\nBaselines: (a) the shell loop `for i in $(seq N); do /bin/true & done; wait`, and N direct spawns; (b) the same chain driven directly, connect tried every 200 µs;\n\
         (c) SIGKILL, waitpid, spawn; (d) CPU: one thread reading the same /proc files each second,\n\
         RSS: one idle pilot-child; (e) SIGTERM, 1 s grace, SIGKILL, reap, directly; and SIGTERM to 1000, reap."
    );
}
