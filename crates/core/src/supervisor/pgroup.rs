//! Process groups, in one place: signalling and stopping a child's group, and the guard process that
//! kills the groups (and every marked descendant) if pilot-host itself dies.
//!
//! Every child is the leader of a new group ([`super::spawn`]), so a stop reaches its grandchildren
//! too. `Pgid` is the only place where the negative-pid form of `kill(2)` exists; nothing is ever
//! killed by name.

use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt as _;
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::spawn::Child;

/// The variable every child gets, naming the pilot-host run it belongs to (the guard finds escaped
/// descendants by it).
pub const RUN_VAR: &str = "PILOT_HOST_RUN";
/// The variable every child gets, naming its process in the manifest.
pub const PROCESS_VAR: &str = "PILOT_HOST_PROCESS";

/// A process group id of a group pilot-host created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pgid(i32);

impl Pgid {
    /// Returns the group led by `pid`, a child started by [`super::spawn`] (it leads its group).
    pub fn of_child(pid: u32) -> Pgid {
        Pgid(pid as i32)
    }

    /// Returns the raw id.
    pub fn get(self) -> i32 {
        self.0
    }

    /// Sends `signal` to every process of the group; a group already gone is not an error.
    pub fn signal(self, signal: Signal) -> io::Result<()> {
        if self.0 <= 1 || self.0 == nix::unistd::getpgrp().as_raw() {
            // Never our own group, never every process.
            return Err(io::Error::other(format!(
                "refusing to signal group {}",
                self.0
            )));
        }
        match killpg(Pid::from_raw(self.0), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Returns whether any process (a zombie counts) is still in the group.
    pub fn exists(self) -> bool {
        !matches!(killpg(Pid::from_raw(self.0), None), Err(Errno::ESRCH))
    }

    /// Returns whether any live (non-zombie) process is in the group, by a scan of `/proc`.
    ///
    /// Blocking: call it from a blocking thread.
    pub fn has_live_member(self) -> bool {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return true;
        };
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            else {
                return false;
            };
            super::procstat::read(pid)
                .is_some_and(|s| s.pgrp == self.0 as u64 && !matches!(s.state, b'Z' | b'X'))
        })
    }

    /// Waits until the group is empty or `deadline` passes; returns whether it emptied.
    ///
    /// `kill(-pgid, 0)` answers at once but counts zombies; members reparented to pilot-host are reaped
    /// by it, others by their parents. If the group still shows after 50 ms, a `/proc` scan on a
    /// blocking thread tells whether only zombies are left.
    pub async fn wait_empty(self, deadline: Instant) -> bool {
        let start = Instant::now();
        let mut pause = Duration::from_micros(250);
        let mut next_scan = start + Duration::from_millis(50);
        loop {
            if !self.exists() {
                return true;
            }
            let now = Instant::now();
            if now >= next_scan {
                let live = tokio::task::spawn_blocking(move || self.has_live_member())
                    .await
                    .unwrap_or(true);
                if !live {
                    return true;
                }
                next_scan = Instant::now() + Duration::from_millis(200);
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// The open-file limit pilot-host was started with, saved by [`raise_nofile_limit`].
static ORIGINAL_NOFILE: OnceLock<(u64, u64)> = OnceLock::new();

/// Raises pilot-host's soft open-file limit to the hard limit: each child costs it a few descriptors,
/// and the default 1024 would cap a manifest at a few hundred processes. Children get the original back.
pub fn raise_nofile_limit() {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= hard {
        return;
    }
    let _ = ORIGINAL_NOFILE.set((soft, hard));
    if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        tracing::debug!("cannot raise the open-file limit: {e}");
    }
}

/// Returns the open-file limit children get, if pilot-host raised its own.
pub fn child_nofile_limit() -> Option<(u64, u64)> {
    ORIGINAL_NOFILE.get().copied()
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// The leader's exit status, if it was reaped.
    pub status: Option<ExitStatus>,
    /// Whether SIGKILL was needed.
    pub killed: bool,
    /// Whether members of the group were still alive after `kill_timeout`.
    pub leftovers: bool,
}

/// Stops a group: SIGTERM, up to `grace` for the whole group to exit, then SIGKILL and up to
/// `kill_timeout` for it to be gone. The leader is always reaped when it exits.
pub async fn stop(
    child: &mut Child,
    pgid: Pgid,
    grace: Duration,
    kill_timeout: Duration,
) -> StopReport {
    let deadline = Instant::now() + grace;
    let _ = pgid.signal(Signal::SIGTERM);
    let mut status = tokio::time::timeout_at(deadline, child.wait())
        .await
        .ok()
        .and_then(Result::ok);
    if status.is_some() && pgid.wait_empty(deadline).await {
        return StopReport {
            status,
            killed: false,
            leftovers: false,
        };
    }
    let _ = pgid.signal(Signal::SIGKILL);
    let kill_deadline = Instant::now() + kill_timeout;
    if status.is_none() {
        status = tokio::time::timeout_at(kill_deadline, child.wait())
            .await
            .ok()
            .and_then(Result::ok);
    }
    let leftovers = !pgid.wait_empty(kill_deadline).await;
    StopReport {
        status,
        killed: true,
        leftovers,
    }
}

/// A guard process that SIGKILLs every registered group when pilot-host dies, even by SIGKILL, and
/// then every process still carrying this run's [`RUN_VAR`].
///
/// The death signal reaches only direct children; grandchildren in their groups, and descendants that
/// left them (daemons), would be orphaned. The guard is a second, tiny pilot-host in a group of its
/// own, reading `+PGID` / `-PGID` lines on its stdin; at end of input it kills the groups still
/// registered, then sweeps `/proc` for the run's marker, unless pilot-host said (`=`) that it ended
/// cleanly, having stopped everything itself. The command line forks it before any thread exists
/// ([`Guard::fork`]); a library caller, already threaded, starts `pilot-host __guard RUN`
/// ([`Guard::start`]).
///
/// The guard reads what has arrived, then sleeps [`GUARD_NAP`]: only the first write after a quiet
/// spell wakes it, not each of a burst (a wake-up per spawn and per exit cost as much as the spawn's
/// own bookkeeping), and it still acts within that nap of pilot-host's death. The pipe is made large enough for the writes of a nap.
///
/// A run forgets its group lazily ([`Guard::forget`]): the removal is written with the next
/// registration, or [`REMOVAL_DELAY`] later. A restart then writes to the guard once, after its new
/// child started, not also in the middle of handling the exit, where waking the guard took about
/// 30 µs of the restart, measured here. A group that is gone cannot be killed, and its id is not
/// handed out again within that delay (ids are handed out in turn, millions of them).
#[derive(Debug)]
pub struct Guard {
    input: Mutex<GuardInput>,
    run_id: String,
    gone: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct GuardInput {
    file: std::fs::File,
    /// Removals not written yet.
    held: String,
}

/// How long a removal may wait for the next registration before it is written on its own.
pub const REMOVAL_DELAY: Duration = Duration::from_millis(20);

/// How long the guard sleeps between two reads of its input.
const GUARD_NAP: Duration = Duration::from_millis(10);

/// The guard pipe's size: 1 MiB holds about 100 000 `+PGID` lines, far more than a nap's worth.
const GUARD_PIPE: usize = 1 << 20;

impl Guard {
    /// Starts the guard from `exe` (the pilot-host binary) for run `run_id`.
    pub fn start(exe: &std::path::Path, run_id: &str) -> io::Result<Guard> {
        let mut child = std::process::Command::new(exe)
            .args(["__guard", run_id])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        Self::keep(child.id());
        std::mem::forget(child);
        Ok(Guard::new(OwnedFd::from(stdin).into(), run_id))
    }

    /// Forks the guard for run `run_id` without exec: a copy of this process, so nothing is loaded
    /// again. Only while this process has one thread (a fork of a threaded process may only exec);
    /// refused otherwise.
    pub fn fork(run_id: &str) -> io::Result<Guard> {
        use nix::unistd::{fork, ForkResult};
        let threads = std::fs::read_dir("/proc/self/task")?.count();
        if threads != 1 {
            return Err(io::Error::other(format!(
                "cannot fork the guard: {threads} threads run"
            )));
        }
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        // SAFETY: this process has a single thread (checked above), so the child may run any code.
        match unsafe { fork() }? {
            ForkResult::Child => {
                drop(write);
                let code = guard_child(read, run_id);
                // SAFETY: _exit ends the copy without running the parent's exit handlers.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(read);
                Self::keep(child.as_raw() as u32);
                Ok(Guard::new(write.into(), run_id))
            }
        }
    }

    fn new(input: std::fs::File, run_id: &str) -> Guard {
        // Best effort: the default 64 KiB holds about 9000 lines.
        let _ = nix::fcntl::fcntl(
            &input,
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(GUARD_PIPE as i32),
        );
        Guard {
            input: Mutex::new(GuardInput {
                file: input,
                held: String::new(),
            }),
            run_id: run_id.to_string(),
            gone: Default::default(),
        }
    }

    /// Never reaped by the orphan reaper: it is ours, and it outlives us on purpose.
    fn keep(pid: u32) {
        super::spawn::spawned()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pids
            .insert(pid);
    }

    /// The run's id, which every child carries in [`RUN_VAR`].
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Writes the removals held and `line`, in one write.
    fn send(&self, line: &str) {
        use std::sync::atomic::Ordering;
        let Ok(mut input) = self.input.lock() else {
            return;
        };
        let mut text = std::mem::take(&mut input.held);
        text.push_str(line);
        if text.is_empty() {
            return;
        }
        if let Err(e) = input.file.write_all(text.as_bytes()) {
            if !self.gone.swap(true, Ordering::Relaxed) {
                tracing::warn!("the guard process is gone ({e}); children may be orphaned if pilot-host is killed");
            }
        }
    }

    /// Registers a group to kill if pilot-host dies.
    pub fn add(&self, pgid: Pgid) {
        self.send(&format!("+{}\n", pgid.0));
    }

    /// Forgets a group that is gone: the removal goes with the next registration, or is written
    /// [`REMOVAL_DELAY`] from now (if this future is dropped first, with the next write).
    pub async fn forget(&self, pgid: Pgid) {
        match self.input.lock() {
            Ok(mut input) => input.held.push_str(&format!("-{}\n", pgid.0)),
            Err(_) => return,
        }
        tokio::time::sleep(REMOVAL_DELAY).await;
        self.send("");
    }

    /// Says that supervision ended cleanly: pilot-host stopped every process and every adopted
    /// descendant itself, so the guard need not sweep `/proc` for the run's marker when it ends.
    pub fn ended_cleanly(&self) {
        self.send("=\n");
    }
}

/// The forked guard: `input` becomes its stdin, /dev/null its stdout and stderr, and nothing else of
/// pilot-host's stays open (a pipe reading pilot-host's output would otherwise wait for the guard).
fn guard_child(input: OwnedFd, run_id: &str) -> i32 {
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return 1;
    };
    if nix::unistd::dup2_stdin(&input).is_err()
        || nix::unistd::dup2_stdout(&null).is_err()
        || nix::unistd::dup2_stderr(&null).is_err()
    {
        return 1;
    }
    drop((input, null));
    // SAFETY: closes every descriptor from 3 up in this single-threaded copy; nothing here uses them
    // (nix has no wrapper for close_range).
    unsafe { libc::close_range(3, u32::MAX, 0) };
    ignore_stop_signals();
    guard_loop(io::stdin().lock(), run_id);
    0
}

/// The guard's main loop, for `pilot-host __guard RUN`.
pub fn run_guard(run_id: &str) -> std::process::ExitCode {
    ignore_stop_signals();
    guard_loop(io::stdin().lock(), run_id);
    std::process::ExitCode::SUCCESS
}

/// The guard must survive a Ctrl-C or a SIGTERM meant for pilot-host, and its input's end.
fn ignore_stop_signals() {
    use nix::sys::signal::{signal, SigHandler};
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
}

/// Tracks groups from `input`, kills those left at end of input, then (unless told the run ended
/// cleanly) every process that carries `PILOT_HOST_RUN=run_id`.
fn guard_loop(input: impl io::Read, run_id: &str) {
    use std::io::BufRead as _;
    let mut input = io::BufReader::with_capacity(64 * 1024, input);
    let mut groups = std::collections::BTreeSet::new();
    let mut clean = false;
    let mut line = String::new();
    loop {
        line.clear();
        if !matches!(input.read_line(&mut line), Ok(n) if n > 0) {
            break;
        }
        let line = line.trim_end();
        let (op, id) = line.split_at(line.len().min(1));
        match (op, id.parse::<i32>()) {
            ("+", Ok(id)) if id > 1 => {
                groups.insert(id);
            }
            ("-", Ok(id)) => {
                groups.remove(&id);
            }
            ("=", _) => clean = true,
            _ => {}
        }
        if input.buffer().is_empty() {
            // All that arrived is read: let more gather rather than be woken by each line.
            std::thread::sleep(GUARD_NAP);
        }
    }
    for id in groups {
        let _ = Pgid(id).signal(Signal::SIGKILL);
    }
    if !run_id.is_empty() && !clean {
        // Daemons that left their groups: kill by the run's marker until none is left (they may fork).
        let marker = format!("{RUN_VAR}={run_id}");
        for _ in 0..20 {
            let marked = marked_processes(&marker);
            if marked.is_empty() {
                break;
            }
            for pid in marked {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Returns the live processes whose environment holds `marker` (`KEY=VALUE`), except this one.
pub fn marked_processes(marker: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            let alive = super::procstat::read(&pid.to_string())
                .is_some_and(|s| !matches!(s.state, b'Z' | b'X'));
            alive && environ_has(pid, marker)
        })
        .collect()
}

/// Returns whether `/proc/PID/environ` holds the entry `marker` (`KEY=VALUE`).
pub fn environ_has(pid: u32, marker: &str) -> bool {
    environ_value(pid, marker.split('=').next().unwrap_or_default())
        .is_some_and(|v| marker.split_once('=').is_some_and(|(_, want)| v == want))
}

/// Returns the value of variable `key` in `/proc/PID/environ`, if readable and set.
pub fn environ_value(pid: u32, key: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0).find_map(|entry| {
        let rest = entry.strip_prefix(key.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(rest).into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    /// A `sleep` carrying `run`'s marker, in a group of its own.
    fn marked_sleep(run: &str) -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("30")
            .env(RUN_VAR, run)
            .process_group(0)
            .spawn()
            .unwrap()
    }

    fn alive(child: &mut std::process::Child) -> bool {
        child.try_wait().unwrap().is_none()
    }

    /// What the guard has been sent so far (its pipe's read end is non-blocking).
    fn sent(read: &OwnedFd) -> String {
        let mut buf = [0u8; 256];
        match nix::unistd::read(read, &mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(nix::errno::Errno::EAGAIN) => String::new(),
            Err(e) => panic!("read: {e}"),
        }
    }

    #[tokio::test]
    async fn a_forgotten_group_is_written_with_the_next_registration_or_after_the_delay() {
        use nix::fcntl::OFlag;
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        let guard = Guard::new(write.into(), "test");
        // The removal is held (the future waits in its delay)...
        let mut forgetting = Box::pin(guard.forget(Pgid(123)));
        assert!(futures_util::FutureExt::now_or_never(&mut forgetting).is_none());
        assert_eq!(sent(&read), "", "written at once");
        // ...the next registration takes it along, in one write...
        guard.add(Pgid(456));
        assert_eq!(sent(&read), "-123\n+456\n");
        forgetting.await;
        assert_eq!(sent(&read), "", "written twice");
        // ...and without one, it is written after the delay.
        let start = std::time::Instant::now();
        guard.forget(Pgid(789)).await;
        assert!(start.elapsed() >= REMOVAL_DELAY);
        assert_eq!(sent(&read), "-789\n");
        // A clean end writes what is held first.
        guard.input.lock().unwrap().held.push_str("-5\n");
        guard.ended_cleanly();
        assert_eq!(sent(&read), "-5\n=\n");
    }

    #[test]
    fn the_guard_sweeps_the_runs_marker_unless_told_the_run_ended_cleanly() {
        let run = format!("guard-test-{:016x}", fastrand::u64(..));
        let mut sleep = marked_sleep(&run);
        guard_loop(&b"=\n"[..], &run);
        assert!(alive(&mut sleep), "swept after a clean end");
        guard_loop(&b""[..], &run);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(&mut sleep) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!alive(&mut sleep), "not swept after pilot-host died");
    }

    #[test]
    fn the_guard_kills_the_groups_still_registered_and_only_those() {
        let (mut kept, mut forgotten) = (marked_sleep("a"), marked_sleep("b"));
        let input = format!("+{}\n+{}\n-{}\n", kept.id(), forgotten.id(), forgotten.id());
        guard_loop(input.as_bytes(), "");
        assert!(kept.wait().unwrap().signal() == Some(libc::SIGKILL));
        assert!(alive(&mut forgotten), "a forgotten group was killed");
        forgotten.kill().unwrap();
        forgotten.wait().unwrap();
    }
}
