//! The hostile-plugin scenario, shared by the test suite (`hostile_plugins_do_not_slow_supervision`)
//! and the benchmark (`cargo xtask bench`, through `host/benches/scenario.rs`): a real `pilot-host`
//! runs a 10-step tcp ready chain and a crash loop, calm or beside the nine plugins of `hostile-set`
//! (each hostile ready check polled every 10 ms; failing ones have a calm partner whose successes keep
//! them out of quarantine, so the pressure lasts). Measured: the chain's hand-offs, from a step
//! listening to the next step's spawn, and the crash loop's restarts within a window.
//!
//! Two more shapes share the harness: `mixed`, the nine beside hostile control plugins (a handler that
//! spins, kept busy by clients, alternating with 64 MiB answers; an event handler that tries to
//! restart on every event without the grant), and `events`, ten control plugins subscribed to every
//! event while 100 processes crash-loop, each tallying what it got (no event may be lost).
//!
//! `SCENARIO_ONLY=h-spin,h-membomb` runs only those hostile plugins (to find which one slows what).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    /// The folder of the control test plugins (`control-probe.wasm`).
    pub control: PathBuf,
    /// A scratch folder for this run (created, and removed by the caller).
    pub scratch: PathBuf,
}

/// What runs beside the supervision under test.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// The nine ready checks of `hostile-set`, each polled every 10 ms.
    pub hostile: bool,
    /// Hostile control plugins: a spinning handler kept busy by two clients (alternating with 64 MiB
    /// answers, a calm request every 20 ms beside them) and an event handler restarting on every
    /// event without a grant.
    pub hostile_control: bool,
    /// Control plugins subscribed to every event, each tallying what it got.
    pub event_plugins: usize,
    /// Crash-looping processes (at least 1; the first is the one counted when it is alone).
    pub crashers: usize,
    /// How long each crasher runs before it exits 1.
    pub crash_after_ms: u64,
}

impl Shape {
    /// No plugins, one crash loop exiting after 20 ms.
    pub fn calm() -> Shape {
        Shape {
            crashers: 1,
            crash_after_ms: 20,
            ..Shape::default()
        }
    }

    /// The nine hostile ready checks beside [`Shape::calm`]'s supervision.
    pub fn hostile() -> Shape {
        Shape {
            hostile: true,
            ..Shape::calm()
        }
    }

    /// The nine hostile ready checks and the hostile control plugins.
    pub fn mixed() -> Shape {
        Shape {
            hostile: true,
            hostile_control: true,
            ..Shape::calm()
        }
    }

    /// 100 processes crash-looping (each up for 400 ms), with `plugins` tallying event plugins.
    pub fn events(plugins: usize) -> Shape {
        Shape {
            event_plugins: plugins,
            crashers: 100,
            crash_after_ms: 400,
            ..Shape::default()
        }
    }

    fn plugins(&self) -> bool {
        self.hostile || self.hostile_control || self.event_plugins > 0
    }
}

/// What an event plugin counted by the supervisor's `shutting-down` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Events it got.
    pub count: u64,
    /// Breaks in their sequence numbers.
    pub gaps: u64,
    /// The first and the last sequence number.
    pub first: u64,
    pub last: u64,
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
    /// What each event plugin counted (one per plugin that reported).
    pub tallies: Vec<Tally>,
    /// Requests the clients of the hostile control plugin made, and how many answered.
    pub control_requests: (usize, usize),
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

fn manifest(p: &Paths, shape: &Shape, chain_after_ms: u64, tally_port: u16) -> String {
    let child = p.child.display();
    let dir = p.scratch.display();
    let mut y = String::from("ready_check_interval_sec: 0.01\n");
    let mut plugins = String::from("plugins:\n");
    let mut control = Vec::new();
    if shape.hostile_control {
        control.extend([SPINNER.to_string(), STORMER.to_string()]);
        plugins += &format!("  {SPINNER}: {{ call_timeout_ms: 100, memory_mib: 256, fuel: 100000000000, config: {{ events: [] }} }}\n");
        plugins += &format!("  {STORMER}: {{ call_timeout_ms: 100, config: {{ storm: true }} }}\n");
    }
    for i in 0..shape.event_plugins {
        let name = tally_name(i);
        control.push(name.clone());
        plugins += &format!(
            "  {name}: {{ grants: {{ http: [\"127.0.0.1:{tally_port}\"] }}, config: {{ tally: \"http://127.0.0.1:{tally_port}/tally\" }} }}\n"
        );
    }
    if !control.is_empty() {
        y += &format!("control_plugins: [{}]\n", control.join(", "));
    }
    y += "processes:\n";
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
    for i in 0..shape.crashers.max(1) {
        let name = if i == 0 {
            "crashy".to_string()
        } else {
            format!("crashy{i}")
        };
        y += &format!(
            "  - {{ name: {name}, path: {child}, args: [--name, {name}, --append-start, {dir}/crashes, --exit-after, {}, 1], restart: {{ initial_delay_sec: 0.01, factor: 1, jitter: 0, max_restarts: 1000000, window_sec: 1 }} }}\n",
            shape.crash_after_ms
        );
    }
    if !shape.hostile {
        return if control.is_empty() { y } else { y + &plugins };
    }
    let sink = free_port();
    y += &format!("  - {{ name: sink, path: {child}, args: [--listen-after, 0, {sink}] }}\n");
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

/// Runs the scenario once, calm or hostile (see [`run_shape`]).
pub fn run(p: &Paths, hostile: bool, window: Duration) -> Result<Figures, String> {
    let shape = if hostile {
        Shape::hostile()
    } else {
        Shape::calm()
    };
    run_shape(p, &shape, window)
}

/// The names the control probe runs under: 13 bytes each, as long as `control-probe`.
const SPINNER: &str = "probe-spinner";
const STORMER: &str = "probe-stormer";

/// Returns the name of event plugin `i` (below 10).
fn tally_name(i: usize) -> String {
    format!("events-tally{i}")
}

/// Returns `wasm` with every `control-probe` replaced by `name`, of the same length: the probe's
/// component under another name (control plugins go by the name they describe), still valid, as
/// only the bytes of a string in its data change.
fn renamed(wasm: &[u8], name: &str) -> Result<Vec<u8>, String> {
    let from = b"control-probe";
    if name.len() != from.len() {
        return Err(format!("`{name}` is not {} bytes long", from.len()));
    }
    let mut out = wasm.to_vec();
    let mut found = 0;
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(name.as_bytes());
            found += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    if found == 0 {
        return Err("`control-probe` is not in the probe's component".into());
    }
    Ok(out)
}

/// Copies the components `shape` runs into `scratch/plugins` (the control probe once per name).
fn plugin_folder(p: &Paths, shape: &Shape) -> Result<PathBuf, String> {
    let folder = p.scratch.join("plugins");
    std::fs::create_dir_all(&folder)
        .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let mut copies: Vec<(PathBuf, String)> = Vec::new();
    if shape.hostile {
        for (name, _) in HOSTILE {
            copies.push((p.plugins.join(format!("{name}.wasm")), name.to_string()));
        }
    }
    for (from, name) in copies {
        std::fs::copy(&from, folder.join(format!("{name}.wasm"))).map_err(|e| {
            format!(
                "cannot copy {}: {e} (run `cargo xtask plugins`)",
                from.display()
            )
        })?;
    }
    let mut names = Vec::new();
    if shape.hostile_control {
        names.extend([SPINNER.to_string(), STORMER.to_string()]);
    }
    names.extend((0..shape.event_plugins).map(tally_name));
    if !names.is_empty() {
        let probe = p.control.join("control-probe.wasm");
        let wasm = std::fs::read(&probe).map_err(|e| {
            format!(
                "cannot read {}: {e} (run `cargo xtask plugins`)",
                probe.display()
            )
        })?;
        for name in names {
            std::fs::write(folder.join(format!("{name}.wasm")), renamed(&wasm, &name)?)
                .map_err(|e| format!("cannot write {name}.wasm: {e}"))?;
        }
    }
    Ok(folder)
}

/// Collects the bodies posted to it until dropped.
struct Receiver {
    port: u16,
    stop: Arc<AtomicBool>,
    bodies: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().unwrap().port();
        let (stop, bodies) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(Mutex::new(Vec::new())),
        );
        let (stop2, bodies2) = (stop.clone(), bodies.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(body) = read_post(stream) {
                            bodies2.lock().unwrap().push(body);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver {
            port,
            stop,
            bodies,
            thread: Some(thread),
        }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP request's body from `stream` and answers 200.
fn read_post(mut stream: std::net::TcpStream) -> Option<String> {
    use std::io::{Read, Write};
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let body = loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                break String::from_utf8_lossy(&got[end + 4..end + 4 + length]).into_owned();
            }
        }
    };
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    Some(body)
}

/// Sends `GET path` on the control socket; the answer's status, if any.
fn get(socket: &Path, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let head = String::from_utf8_lossy(&answer[..answer.len().min(64)]).into_owned();
    head.split(' ').nth(1)?.parse().ok()
}

/// Clients keeping the hostile control plugin busy until `stop`: two alternate `/spin` and `/big`,
/// one asks `/hello` every 20 ms (its successes keep the plugin out of quarantine). Returns the
/// requests made and how many were answered.
fn hammer(socket: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, usize)> {
    std::thread::spawn(move || {
        let busy: Vec<_> = (0..2)
            .map(|_| {
                let (socket, stop) = (socket.clone(), stop.clone());
                std::thread::spawn(move || {
                    let (mut made, mut answered) = (0, 0);
                    while !stop.load(Ordering::Relaxed) {
                        for path in ["/plugins/probe-spinner/spin", "/plugins/probe-spinner/big"] {
                            made += 1;
                            answered += usize::from(get(&socket, path).is_some());
                        }
                    }
                    (made, answered)
                })
            })
            .collect();
        let (mut made, mut answered) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            made += 1;
            answered += usize::from(get(&socket, "/plugins/probe-spinner/hello") == Some(200));
            std::thread::sleep(Duration::from_millis(20));
        }
        for t in busy {
            let (m, a) = t.join().unwrap_or((0, 0));
            made += m;
            answered += a;
        }
        (made, answered)
    })
}

fn tally_of(body: &str) -> Option<Tally> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(Tally {
        count: v["count"].as_u64()?,
        gaps: v["gaps"].as_u64()?,
        first: v["first"].as_u64()?,
        last: v["last"].as_u64()?,
    })
}

/// Runs the scenario once in `shape`; the crash loop is counted for `window` starting 0.5 s after
/// its first start, and the chain starts listening `chain_after` after pilot-host starts its first
/// step (once the hostile checks are running).
pub fn run_shape(p: &Paths, shape: &Shape, window: Duration) -> Result<Figures, String> {
    std::fs::create_dir_all(&p.scratch).map_err(|e| format!("cannot create scratch: {e}"))?;
    let manifest_path = p.scratch.join("manifest.yaml");
    let chain_after = window.as_millis() as u64 / 3 + 300;
    let receiver = Receiver::start();
    std::fs::write(
        &manifest_path,
        manifest(p, shape, chain_after, receiver.port),
    )
    .map_err(|e| format!("cannot write the manifest: {e}"))?;
    let socket = p.scratch.join("control.sock");
    let mut cmd = Command::new(&p.host);
    cmd.arg("run")
        .arg(&manifest_path)
        .arg("--control-socket")
        .arg(&socket);
    if shape.plugins() {
        cmd.arg("--plugins").arg(plugin_folder(p, shape)?);
    }
    let log = std::fs::File::create(p.scratch.join("log")).map_err(|e| e.to_string())?;
    let host = cmd
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start pilot-host: {e}"))?;
    let stop_clients = Arc::new(AtomicBool::new(false));
    let clients = shape.hostile_control.then(|| {
        let up = wait(
            "the control socket answers",
            Duration::from_secs(30),
            || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        );
        up.map(|()| hammer(socket.clone(), stop_clients.clone()))
    });
    let (clients, result) = match clients {
        Some(Err(e)) => (None, Err(e)),
        Some(Ok(t)) => (Some(t), measure(p, window)),
        None => (None, measure(p, window)),
    };
    stop_clients.store(true, Ordering::Relaxed);
    stop(host);
    let control_requests = clients.map_or((0, 0), |t| t.join().unwrap_or((0, 0)));
    let tallies = receiver
        .bodies()
        .iter()
        .filter_map(|b| tally_of(b))
        .collect();
    drop(receiver);
    let log = std::fs::read_to_string(p.scratch.join("log")).unwrap_or_default();
    result
        .map(|(handoffs_ms, restarts)| Figures {
            handoffs_ms,
            restarts,
            log: log.clone(),
            tallies,
            control_requests,
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
