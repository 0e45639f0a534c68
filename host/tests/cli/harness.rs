//! Running the real `pilot-host` on manifests with real `pilot-child` processes, waiting on conditions
//! with deadlines (never on fixed sleeps), and cleaning up what was started.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

fn pilot_host_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pilot-host"))
}

/// The `pilot-child` helper, built beside `pilot-host` by `cargo test --workspace` (or `cargo xtask test`).
pub fn pilot_child() -> PathBuf {
    let path = pilot_host_path().with_file_name("pilot-child");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p testkit` or `cargo xtask test`",
        path.display()
    );
    path
}

/// The compile cache the tests share (keyed by content, so sharing is safe).
pub fn plugin_cache() -> PathBuf {
    pilot_host_path().parent().unwrap().join("plugin-cache")
}

/// Returns the plugin component `name` from `target/plugins/<group>/` (built by `cargo xtask plugins`).
pub fn plugin(group: &str, name: &str) -> PathBuf {
    let target = pilot_host_path()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = target
        .join("plugins")
        .join(group)
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask plugins` (or `cargo xtask test`)",
        path.display()
    );
    path
}

/// Makes a plugin folder inside `dir` holding copies of `plugins`; returns it.
pub fn plugin_dir(dir: &Scratch, plugins: &[PathBuf]) -> PathBuf {
    let folder = dir.join("plugins");
    std::fs::create_dir_all(&folder).unwrap();
    for p in plugins {
        std::fs::copy(p, folder.join(p.file_name().unwrap())).unwrap();
    }
    folder
}

pub use crate::support::Scratch;

/// Writes a manifest into `dir`; `CHILD` in `yaml` stands for the pilot-child path, `DIR` for the folder.
pub fn manifest(dir: &Scratch, yaml: &str) -> PathBuf {
    let text = yaml
        .replace("CHILD", &pilot_child().display().to_string())
        .replace("DIR", &dir.path().display().to_string());
    dir.write("manifest.yaml", &text)
}

/// Returns a TCP port the OS just gave out on 127.0.0.1 (free again when returned).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command for `program` with the tests' environment: info logs, the shared compile cache.
fn command(program: PathBuf) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("RUST_LOG", "info")
        .env("PILOT_HOST_CACHE_DIR", plugin_cache())
        .env("XDG_RUNTIME_DIR", test_runtime_dir());
    cmd
}

/// The runtime folder (XDG_RUNTIME_DIR) of the tests' `pilot-host` runs, so their control sockets
/// stay under `target/` rather than in `/tmp/pilot-host-$UID`; made 0700, as systemd makes it.
fn test_runtime_dir() -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = pilot_host_path().parent().unwrap().join("test-runtime");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// Lines collected from a stream, with a condition variable to wait on.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

/// A running `pilot-host`, killed (with its children, through the death signal) on drop.
pub struct Pilot {
    child: Child,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    status: Option<ExitStatus>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Lines>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lines.lock().unwrap().push(line);
            into.changed.notify_all();
        }
    })
}

impl Pilot {
    /// Starts `pilot-host run MANIFEST`.
    pub fn run(manifest: &Path) -> Pilot {
        Pilot::start(&["run".as_ref(), manifest.as_os_str()])
    }

    /// Starts `pilot-host run MANIFEST --plugins DIR`.
    pub fn run_with_plugins(manifest: &Path, plugins: &Path) -> Pilot {
        Pilot::start(&[
            "run".as_ref(),
            manifest.as_os_str(),
            "--plugins".as_ref(),
            plugins.as_os_str(),
        ])
    }

    /// Starts `pilot-host ARGS`.
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Pilot {
        Pilot::start_env(args, &[])
    }

    /// Starts `pilot-host ARGS` with extra environment variables.
    pub fn start_env<S: AsRef<std::ffi::OsStr>>(
        args: &[S],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Pilot {
        let mut cmd = command(pilot_host_path());
        cmd.args(args).envs(env.iter().copied());
        Pilot::spawn(cmd)
    }

    /// Starts `pilot-host ARGS` pinned to CPU 0 with `taskset`, as on a one-CPU machine.
    pub fn start_on_one_cpu<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Pilot {
        let mut cmd = command("taskset".into());
        cmd.args(["-c", "0"]).arg(pilot_host_path()).args(args);
        Pilot::spawn(cmd)
    }

    /// Starts `WRAPPER... pilot-host ARGS` (a tracer, say) with extra environment variables.
    pub fn start_wrapped<S: AsRef<std::ffi::OsStr>>(
        wrapper: &[&str],
        args: &[S],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Pilot {
        let mut cmd = command(wrapper[0].into());
        cmd.args(&wrapper[1..])
            .arg(pilot_host_path())
            .args(args)
            .envs(env.iter().copied());
        Pilot::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Pilot {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pilot-host");
        let stdout = Arc::new(Lines::default());
        let stderr = Arc::new(Lines::default());
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Pilot {
            child,
            stdout,
            stderr,
            status: None,
            readers,
        }
    }

    /// Returns pilot-host's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_line(
        &self,
        which: &Lines,
        what: &str,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        let mut lines = which.lines.lock().unwrap();
        loop {
            if let Some(line) = lines[seen..].iter().find(|l| pred(l)) {
                return line.clone();
            }
            seen = lines.len();
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            lines = which.changed.wait_timeout(lines, deadline - now).unwrap().0;
        }
        drop(lines);
        panic!(
            "want a line {what} within {timeout:?}; got:\n--- stdout (last 50 lines)\n{}\n--- stderr\n{}",
            tail(&self.stdout_text(), 50),
            self.stderr_text()
        );
    }

    /// Waits for a stderr (log) line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_line(
            &self.stderr,
            &format!("containing `{needle}` on stderr"),
            |l| l.contains(needle),
            timeout,
        )
    }

    /// Waits for `NAME: ready after N ms`; returns the line and N.
    pub fn wait_ready(&self, name: &str) -> (String, f64) {
        let line = self.wait_log(&format!("{name}: ready after "), SOON);
        let ms = line
            .rsplit("ready after ")
            .next()
            .and_then(|r| r.trim_end_matches(" ms").parse().ok());
        let ms = ms.unwrap_or_else(|| panic!("no duration in `{line}`"));
        (line, ms)
    }

    /// Waits for a stdout (child output) line equal to `line`.
    pub fn wait_out(&self, line: &str, timeout: Duration) -> String {
        self.wait_line(
            &self.stdout,
            &format!("`{line}` on stdout"),
            |l| l == line,
            timeout,
        )
    }

    /// Returns everything printed on stdout so far.
    pub fn stdout_text(&self) -> String {
        self.stdout.lines.lock().unwrap().join("\n")
    }

    /// Returns everything logged on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lines.lock().unwrap().join("\n")
    }

    /// Returns the stderr lines that contain `needle`.
    pub fn logs_with(&self, needle: &str) -> Vec<String> {
        self.stderr
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Sends `signal` to pilot-host.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for pilot-host to exit; panics with its output past `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.status = Some(status);
                // The pipes close with pilot-host: the readers end once they read everything.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "pilot-host still runs after {timeout:?}\n--- stdout (last 50 lines)\n{}\n--- stderr\n{}",
                tail(&self.stdout_text(), 50),
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Returns the pid logged as `NAME: started, pid N` (the latest one).
    pub fn pid_of(&self, name: &str) -> u32 {
        let prefix = format!("{name}: started, pid ");
        let line = self
            .logs_with(&prefix)
            .pop()
            .unwrap_or_else(|| panic!("`{name}` was never started:\n{}", self.stderr_text()));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }
}

impl Drop for Pilot {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Returns whether `pid` is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next().unwrap_or('Z'));
            !matches!(state, Some('Z' | 'X'))
        }
    }
}

/// Waits until `cond` holds, polling every millisecond or so; panics with `what` past `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Reads `NAME NANOS` lines written by `pilot-child --record-stop` / `--append-start`.
pub fn read_times(path: &Path) -> Vec<(String, u128)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (name, t) = l.split_once(' ').unwrap();
            (name.to_string(), t.parse().unwrap())
        })
        .collect()
}

/// Reads a pid written to `path` once it is there.
pub fn read_pid(path: &Path) -> u32 {
    wait_until(
        &format!("{} is written", path.display()),
        Duration::from_secs(5),
        || std::fs::read_to_string(path).is_ok_and(|s| !s.is_empty()),
    );
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The usual generous deadline for things that should take milliseconds.
pub const SOON: Duration = Duration::from_secs(10);

/// The parent of process `pid`, from `/proc/PID/stat`.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Sends SIGKILL to every process descended from a process of ours on drop, unless disarmed.
pub struct KillTreeOnDrop(pub Option<u32>);

impl Drop for KillTreeOnDrop {
    fn drop(&mut self) {
        let Some(root) = self.0 else { return };
        let all: Vec<u32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        let mut tree = vec![root];
        while let Some(more) = all
            .iter()
            .find(|p| !tree.contains(p) && parent_of(**p).is_some_and(|pp| tree.contains(&pp)))
        {
            tree.push(*more);
        }
        for pid in tree.iter().skip(1) {
            // SAFETY: kill(2) on a process this test started (a descendant of its wrapper).
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}
