//! Helpers of the CLI tests: running the real binaries with a deadline, fixtures, scratch folders.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// How long one run of a binary may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// Returns a command for the `pilot-host` binary built for these tests, run from the crate's folder.
pub fn pilot_host() -> Command {
    binary(env!("CARGO_BIN_EXE_pilot-host"))
}

/// Returns a command for the `process-graph` binary built for these tests, run from the crate's folder.
pub fn process_graph() -> Command {
    binary(env!("CARGO_BIN_EXE_process-graph"))
}

fn binary(path: &str) -> Command {
    let mut cmd = Command::new(path);
    cmd.current_dir(crate_dir())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Returns the host crate's folder, where relative fixture paths start.
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Returns the absolute path of a file under `tests/fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    crate_dir().join("tests/fixtures").join(relative)
}

/// Returns the manifests under `tests/fixtures/valid/`, sorted.
pub fn valid_fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture("valid"))
        .expect("the valid fixtures are listable")
        .map(|e| e.expect("a readable entry").path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no valid fixtures found");
    files
}

/// Replaces what differs between machines in messages, as the golden tests do.
pub fn normalize(text: &str) -> String {
    let fixtures = std::fs::canonicalize(fixture("")).expect("the fixtures folder exists");
    let fixtures = fixtures.display().to_string();
    let max_cpu = pilot_host::manifest::cpu_count() - 1;
    text.replace(fixtures.trim_end_matches('/'), "<fixtures>")
        .replace(&format!("(CPUs 0 to {max_cpu})"), "(CPUs 0 to <max>)")
}

/// What a finished run of a binary printed and returned.
#[derive(Debug)]
pub struct Run {
    /// The command line, for messages.
    pub command: String,
    /// The exit code (`-1` if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing both outputs when it differs.
    #[track_caller]
    pub fn expect_code(&self, want: i32) -> &Run {
        assert_eq!(
            self.code, want,
            "`{}`: want exit {want}, got {}\n--- stdout\n{}--- stderr\n{}",
            self.command, self.code, self.stdout, self.stderr
        );
        self
    }

    /// Asserts that standard error contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "`{}`: want stderr to contain {needle:?}, got:\n{}",
            self.command,
            self.stderr
        );
        self
    }

    /// Asserts that standard output contains `needle`.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle),
            "`{}`: want stdout to contain {needle:?}, got:\n{}",
            self.command,
            self.stdout
        );
        self
    }
}

/// Runs `cmd` to completion, failing the test if it outlives [`DEADLINE`].
#[track_caller]
pub fn run(cmd: &mut Command) -> Run {
    let command = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let pid = child.id();
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let reader = std::thread::spawn(move || out.read_to_end(&mut stdout).map(|_| stdout));
        let _ = err.read_to_end(&mut stderr);
        let stdout = reader.join().ok().and_then(Result::ok).unwrap_or_default();
        let _ = tx.send((child.wait(), stdout, stderr));
    });
    let Ok((status, stdout, stderr)) = rx.recv_timeout(DEADLINE) else {
        // SAFETY: kill has no memory preconditions; the pid is our own child, not yet reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        panic!("`{command}` did not finish within {DEADLINE:?}");
    };
    let status = status.unwrap_or_else(|e| panic!("cannot wait for {command}: {e}"));
    Run {
        command,
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A scratch folder unique to one test, removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates an empty folder named after `test`.
    pub fn new(test: &str) -> Scratch {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("pilot-host-cli-{test}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Scratch { path }
    }

    /// Returns the folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns `relative` inside the folder.
    pub fn join(&self, relative: &str) -> PathBuf {
        self.path.join(relative)
    }

    /// Writes `text` to `relative` inside the folder and returns its path.
    pub fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("a parent folder can be created");
        }
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
