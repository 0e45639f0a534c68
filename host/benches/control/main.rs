//! Control-plane benchmarks: `cargo bench -p pilot-host --bench control` (run by `cargo xtask bench`).
//!
//! They drive the real release `pilot-host` (and `pilot-child`) from this process, each figure a
//! median beside a baseline measured in the same run:
//! - `ctl restart` round trip (command to new pid), and the same request over the socket, against the
//!   library call `Handle::restart_processes` in-process;
//! - `GET /v1/processes` p50/p99 with 200 concurrent clients, against a bare hyper server answering
//!   the same bytes;
//! - restart latency after SIGKILL (kill to the new child running) while 200 status requests per
//!   second and 50 event-stream clients run, against the same with no load (target ≤ 1.2×);
//! - a request to a trivial control plugin (a fresh instance each) against a built-in route of about
//!   the same size (target ≤ 1.5×).

mod load;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pilot_host::ctl::{Client, Target};

/// The release binaries and a scratch folder.
pub struct Env {
    host: PathBuf,
    child: PathBuf,
    scratch: PathBuf,
}

impl Env {
    fn new() -> Env {
        let release = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release");
        let env = Env {
            host: release.join("pilot-host"),
            child: release.join("pilot-child"),
            scratch: std::env::temp_dir()
                .join(format!("pilot-bench-control-{}", std::process::id())),
        };
        for bin in [&env.host, &env.child] {
            assert!(
                bin.exists(),
                "{} is missing: run `cargo xtask bench` (it builds release binaries)",
                bin.display()
            );
        }
        std::fs::create_dir_all(&env.scratch).unwrap();
        env
    }

    fn manifest(&self, name: &str, processes: usize) -> PathBuf {
        let starts = self.scratch.join(format!("{name}.starts"));
        let mut yaml = String::from("stats_interval_sec: 1.0\nprocesses:\n");
        for i in 0..processes {
            yaml += &format!(
                "  - {{ name: p{i}, path: {}, args: [--name, p{i}, --append-start, {}], restart: {{ min_uptime_sec: 0.05, max_restarts: 100000, window_sec: 1 }} }}\n",
                self.child.display(),
                starts.display()
            );
        }
        let path = self.scratch.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        path
    }
}

/// A running `pilot-host run` with a control socket; killed on drop.
pub struct Host {
    child: Child,
    /// Its control socket.
    pub socket: PathBuf,
}

impl Host {
    fn run(env: &Env, manifest: &Path) -> Host {
        Host::run_with(env, manifest, &[])
    }

    /// [`Host::run`] with more arguments after the manifest (`--plugins DIR`).
    fn run_with(env: &Env, manifest: &Path, extra: &[&std::ffi::OsStr]) -> Host {
        let socket = manifest.with_extension("sock");
        let child = Command::new(&env.host)
            .arg("run")
            .arg(manifest)
            .args(extra)
            .arg("--control-socket")
            .arg(&socket)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let host = Host { child, socket };
        wait("the control socket answers", || {
            std::os::unix::net::UnixStream::connect(&host.socket).is_ok()
        });
        host
    }

    /// A client of its socket.
    pub fn client(&self) -> Client {
        Client::new(Target::Unix(self.socket.clone()))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child; it stops its processes on SIGTERM.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Waits up to 10 s for `cond`.
pub fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The pid of process `name`, from the API.
pub async fn pid(client: &Client, name: &str) -> Option<u32> {
    let (_, body) = client
        .call(hyper::Method::GET, "/v1/processes", None)
        .await
        .ok()?;
    let list: serde_json::Value = serde_json::from_slice(&body).ok()?;
    list.as_array()?.iter().find(|p| p["name"] == name)?["pid"]
        .as_u64()
        .map(|p| p as u32)
}

/// Median, min, max.
pub fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// The nearest-rank percentile `p` (0–100).
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn show(v: Vec<f64>) -> (String, f64) {
    let (m, lo, hi) = stats(v);
    (format!("{m:.2} ms ({lo:.2}–{hi:.2})"), m)
}

/// Nanoseconds since the epoch.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn round_trip(env: &Env, reps: usize) {
    let manifest = env.manifest("roundtrip", 1);
    let host = Host::run(env, &manifest);
    let client = host.client();
    let _ = pid(&client, "p0").await;
    let (mut ctl, mut api) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let old = pid(&client, "p0").await;
        let t = Instant::now();
        let out = Command::new(&env.host)
            .args(["ctl", "--socket"])
            .arg(&host.socket)
            .args(["restart", "p0"])
            .output()
            .unwrap();
        let took = t.elapsed().as_secs_f64() * 1e3;
        let text = String::from_utf8_lossy(&out.stdout);
        let new: Option<u32> = text
            .rsplit("pid ")
            .next()
            .and_then(|p| p.trim().parse().ok());
        assert!(
            out.status.success() && new.is_some() && new != old,
            "ctl restart: {text}"
        );
        ctl.push(took);
        let t = Instant::now();
        let (status, body) = client
            .call(hyper::Method::POST, "/v1/processes/p0/restart", None)
            .await
            .unwrap();
        api.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(status.is_success(), "{}", String::from_utf8_lossy(&body));
    }
    drop(host);
    let library = library_restarts(env, reps).await;
    let (lib_text, lib) = show(library);
    let (ctl_text, c) = show(ctl);
    let (api_text, a) = show(api);
    println!("| `ctl restart` round trip (command to new pid) | {ctl_text} | library call: {lib_text} | {:.2}× |", c / lib);
    println!("| the same restart as one API request on the socket | {api_text} | library call: {lib_text} | {:.2}× |", a / lib);
}

/// One request at a time to a trivial Rust control plugin (`GET /plugins/control-probe/hello`, a
/// fresh instance each) against a built-in route of about the same size (`GET /v1/plugins`), both
/// on the socket, interleaved.
async fn plugin_requests(env: &Env, reps: usize) {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins/control/control-probe.wasm");
    if !built.exists() {
        println!(
            "| control plugin request | skipped: {} is missing (`cargo xtask plugins`) | | |",
            built.display()
        );
        return;
    }
    // A folder of its own: the built folder also holds the C and JavaScript control plugins, whose
    // first compile takes seconds.
    let plugins = env.scratch.join("plugin-requests");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(&built, plugins.join("control-probe.wasm")).unwrap();
    let manifest = env.scratch.join("plugin-requests.yaml");
    std::fs::write(
        &manifest,
        format!(
            "control_plugins: [control-probe]\nplugins: {{ control-probe: {{ config: {{ events: [] }} }} }}\nprocesses:\n  - {{ name: p0, path: {} }}\n",
            env.child.display()
        ),
    )
    .unwrap();
    let host = Host::run_with(env, &manifest, &["--plugins".as_ref(), plugins.as_os_str()]);
    let client = host.client();
    let (mut plugin, mut builtin) = (Vec::new(), Vec::new());
    for i in 0..reps + 20 {
        for (path, into) in [
            ("/plugins/control-probe/hello", &mut plugin),
            ("/v1/plugins", &mut builtin),
        ] {
            let t = Instant::now();
            let (status, _) = client.call(hyper::Method::GET, path, None).await.unwrap();
            let took = t.elapsed().as_secs_f64() * 1e3;
            assert!(status.is_success(), "{path}: {status}");
            if i >= 20 {
                into.push(took);
            }
        }
    }
    let (p50, b50) = (percentile(&plugin, 50.0), percentile(&builtin, 50.0));
    println!(
        "| control plugin request, fresh instance each (p50, p99) | {p50:.3} ms, {:.3} ms | `GET /v1/plugins`: {b50:.3} ms, {:.3} ms | {:.2}× |",
        percentile(&plugin, 99.0),
        percentile(&builtin, 99.0),
        p50 / b50
    );
}

/// `Handle::restart_processes` then the new pid, in this process.
async fn library_restarts(env: &Env, reps: usize) -> Vec<f64> {
    let manifest = env.manifest("library", 1);
    let loaded = pilot_host::manifest::load(&manifest, &Default::default()).unwrap();
    let supervisor = pilot_host::supervisor::start(loaded.manifest, Default::default());
    let handle = supervisor.handle();
    let mut out = Vec::new();
    for _ in 0..reps {
        let old = handle.status().await[0].pid;
        let t = Instant::now();
        handle.restart_processes(&["p0"]).await.unwrap();
        let new = handle.status().await[0].pid;
        out.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(new.is_some() && new != old);
    }
    handle.shutdown();
    supervisor.wait().await;
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Other arguments filter by name, as criterion's do (`cargo bench --bench control -- plugin`).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let env = Env::new();
    println!("| what | pilot-host median (min–max) | baseline in the same run | ratio |");
    println!("| --- | --- | --- | --- |");
    if run("round_trip") {
        round_trip(&env, if quick { 10 } else { 30 }).await;
    }
    if run("status_under_200_clients") {
        load::status_under_200_clients(&env, if quick { 10 } else { 40 }).await;
    }
    if run("restart_under_load") {
        load::restart_under_load(&env, if quick { 2 } else { 4 }).await;
    }
    if run("plugin_requests") {
        plugin_requests(&env, if quick { 200 } else { 1000 }).await;
    }
    let _ = std::fs::remove_dir_all(&env.scratch);
}
