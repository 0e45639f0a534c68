//! The hostile-plugin scenario, shared by the test suite (`hostile_plugins_do_not_slow_supervision`)
//! and the benchmark (`cargo xtask bench`, through `host/benches/scenario.rs`): a real `pilot-host`
//! runs a 10-step tcp ready chain and a crash loop, calm or beside the nine plugins of `hostile-set`
//! (each hostile ready check polled every 10 ms; failing ones have a calm partner whose successes keep
//! them out of quarantine, so the pressure lasts). Measured: the chain's hand-offs, from a step
//! listening to the next step's spawn, and the crash loop's restarts within a window.
//!
//! `SCENARIO_ONLY=h-spin,h-membomb` runs only those hostile plugins (to find which one slows what).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The plugins of `hostile-set`, and whether each fails its calls (so needs a calm partner).
pub const HOSTILE: [(&str, bool); 9] = [
    ("h-spin", true),
    ("h-sleep", true),
    ("h-socket", true),
    ("h-membomb", true),
    ("h-recurse", true),
    ("h-trap", true),
    ("h-huge", true),
    ("h-flood", true),
    ("h-escape", false),
];

/// Steps of the tcp chain.
pub const CHAIN: usize = 10;

/// Where things are.
pub struct Paths {
    /// The `pilot-host` binary.
    pub host: PathBuf,
    /// The `pilot-child` binary.
    pub child: PathBuf,
    /// The folder of the `hostile-set` components.
    pub plugins: PathBuf,
    /// A scratch folder for this run (created, and removed by the caller).
    pub scratch: PathBuf,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Milliseconds from each chain step listening to the next step's spawn.
    pub handoffs_ms: Vec<f64>,
    /// Starts of the crash loop within the window.
    pub restarts: usize,
    /// pilot-host's log (warnings and errors).
    pub log: String,
}

/// Returns the median of `v`.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Returns a free port below the ephemeral range, not handed out before in this process: the
/// scenario's many connects take ephemeral ports, which could otherwise collide with a chain step's.
fn free_port() -> u16 {
    static USED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut used = USED.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = 20_000 + (fastrand::u16(..) % 12_000);
        if !used.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            used.push(port);
            return port;
        }
    }
}

fn manifest(p: &Paths, hostile: bool, chain_after_ms: u64) -> String {
    let child = p.child.display();
    let dir = p.scratch.display();
    let mut y = String::from("ready_check_interval_sec: 0.01\nprocesses:\n");
    for i in 0..CHAIN {
        let port = free_port();
        let deps = if i == 0 {
            String::new()
        } else {
            format!(", dependencies: [s{}]", i - 1)
        };
        let delay = if i == 0 { chain_after_ms } else { 30 };
        y += &format!(
            "  - {{ name: s{i}, path: {child}, args: [--name, s{i}, --append-start, {dir}/starts, --append-listen, {dir}/listens, --listen-after, {delay}, {port}], ready_strategy: tcp, ready_params: {{ port: {port} }}{deps} }}\n"
        );
    }
    y += &format!(
        "  - {{ name: crashy, path: {child}, args: [--name, crashy, --append-start, {dir}/crashes, --exit-after, 20, 1], restart: {{ initial_delay_sec: 0.01, factor: 1, jitter: 0, max_restarts: 1000000, window_sec: 1 }} }}\n"
    );
    if !hostile {
        return y;
    }
    let sink = free_port();
    y += &format!("  - {{ name: sink, path: {child}, args: [--listen-after, 0, {sink}] }}\n");
    let mut plugins = String::from("plugins:\n");
    let only = std::env::var("SCENARIO_ONLY").unwrap_or_default();
    for (name, fails) in HOSTILE {
        if !only.is_empty() && !only.split(',').any(|o| o == name) {
            continue;
        }
        let victim = format!(
            "  - {{ name: v-{name}, path: {child}, ready_strategy: {name}, ready_timeout_sec: 600, ready_params: {{ port: {sink} }} }}\n"
        );
        y += &victim;
        if fails {
            y += &format!(
                "  - {{ name: c-{name}, path: {child}, ready_strategy: {name}, ready_timeout_sec: 600, ready_params: {{ calm: true }} }}\n"
            );
        }
        let grant = if name == "h-socket" {
            format!(", allow_tcp: [\"127.0.0.1:{sink}\"]")
        } else {
            String::new()
        };
        // The memory bomb and the huge answer must get to their own failure (the cap, the size
        // limit) before the deadline, even on two cores shared with a parallel test run.
        let timeout = match name {
            "h-membomb" => 1000,
            // 48 MB built under fuel metering: hundreds of ms on a starved core.
            "h-huge" => 5000,
            _ => 100,
        };
        plugins +=
            &format!("  {name}: {{ call_timeout_ms: {timeout}, fuel: 100000000000{grant} }}\n");
    }
    y + &plugins
}

fn read_times(path: &Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (name, t) = l.split_once(' ')?;
            Some((name.to_string(), t.parse::<f64>().ok()? / 1e6))
        })
        .collect()
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3
}

/// Waits until `cond` holds, checking every 5 ms; an error past `timeout`.
fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting until {what}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Stops pilot-host with SIGTERM (SIGKILL if it lingers) and reaps it.
fn stop(mut host: Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(host.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = host.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = host.kill();
    let _ = host.wait();
}

/// Runs the scenario once, calm or hostile; the crash loop is counted for `window` starting 0.5 s
/// after its first start, and the chain starts listening `chain_after` after pilot-host starts its
/// first step (once the hostile checks are running).
pub fn run(p: &Paths, hostile: bool, window: Duration) -> Result<Figures, String> {
    std::fs::create_dir_all(&p.scratch).map_err(|e| format!("cannot create scratch: {e}"))?;
    let manifest_path = p.scratch.join("manifest.yaml");
    let chain_after = window.as_millis() as u64 / 3 + 300;
    std::fs::write(&manifest_path, manifest(p, hostile, chain_after))
        .map_err(|e| format!("cannot write the manifest: {e}"))?;
    let mut cmd = Command::new(&p.host);
    cmd.arg("run").arg(&manifest_path);
    if hostile {
        cmd.arg("--plugins").arg(&p.plugins);
    }
    let log = std::fs::File::create(p.scratch.join("log")).map_err(|e| e.to_string())?;
    let host = cmd
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start pilot-host: {e}"))?;
    let result = measure(p, window);
    stop(host);
    let log = std::fs::read_to_string(p.scratch.join("log")).unwrap_or_default();
    result
        .map(|(handoffs_ms, restarts)| Figures {
            handoffs_ms,
            restarts,
            log: log.clone(),
        })
        .map_err(|e| {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            format!(
                "{e}; pilot-host's last log lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
}

fn measure(p: &Paths, window: Duration) -> Result<(Vec<f64>, usize), String> {
    let (starts, listens, crashes) = (
        p.scratch.join("starts"),
        p.scratch.join("listens"),
        p.scratch.join("crashes"),
    );
    let limit = window + Duration::from_secs(30);
    wait("the crash loop starts", limit, || {
        !read_times(&crashes).is_empty()
    })?;
    let t0 = read_times(&crashes)[0].1 + 500.0;
    let end = t0 + window.as_secs_f64() * 1e3;
    wait("the crash window ends", limit, || now_ms() > end + 50.0)?;
    wait("the chain completes", limit, || {
        read_times(&starts)
            .iter()
            .any(|(n, _)| *n == format!("s{}", CHAIN - 1))
    })?;
    let restarts = read_times(&crashes)
        .iter()
        .filter(|(_, t)| *t >= t0 && *t < end)
        .count();
    let (starts, listens) = (read_times(&starts), read_times(&listens));
    let at =
        |list: &[(String, f64)], name: &str| list.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
    let mut handoffs_ms = Vec::new();
    for i in 0..CHAIN - 1 {
        let listened = at(&listens, &format!("s{i}")).ok_or(format!("s{i} never listened"))?;
        let next =
            at(&starts, &format!("s{}", i + 1)).ok_or(format!("s{} never started", i + 1))?;
        handoffs_ms.push(next - listened);
    }
    Ok((handoffs_ms, restarts))
}
