//! Process groups, in one place: spawning a child in a group of its own, signalling and stopping the
//! group, and the guard process that kills the groups if pilot-host itself dies.
//!
//! Every child is the leader of a new group, so a stop reaches its grandchildren too. `Pgid` is the only
//! place where the negative-pid form of `kill(2)` exists; nothing is ever killed by name.

use std::io::{self, Write as _};
use std::os::unix::process::CommandExt as _;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::manifest::ProcessSpec;

/// A process group id of a group pilot-host created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pgid(i32);

impl Pgid {
    /// Returns the group led by `pid`, which must be a child started by [`spawn`] (it leads its group).
    pub fn of_child(pid: u32) -> Pgid {
        Pgid(pid as i32)
    }

    /// Returns the raw id.
    pub fn get(self) -> i32 {
        self.0
    }

    /// Sends `signal` to every process of the group; a group already gone is not an error.
    pub fn signal(self, signal: libc::c_int) -> io::Result<()> {
        // SAFETY: kill(2) has no memory preconditions; a negative pid addresses the group.
        if unsafe { libc::kill(-self.0, signal) } == 0 {
            return Ok(());
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            e => Err(e),
        }
    }

    /// Returns whether any live (non-zombie) process is still in the group.
    pub fn alive(self) -> bool {
        // SAFETY: signal 0 only checks for existence.
        if unsafe { libc::kill(-self.0, 0) } != 0 {
            return false;
        }
        // Zombies count for kill(2) until their parent reaps them; look for a live member.
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
    pub async fn wait_empty(self, deadline: Instant) -> bool {
        let mut pause = Duration::from_millis(1);
        loop {
            if !self.alive() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// A child that leads a process group of its own.
#[derive(Debug)]
pub struct Spawned {
    /// The child, with stdout and stderr piped.
    pub child: Child,
    /// Its pid, which is also its group's id.
    pub pid: u32,
    /// Its group.
    pub pgid: Pgid,
}

/// The open-file limit pilot-host was started with, saved by [`raise_nofile_limit`].
static ORIGINAL_NOFILE: std::sync::OnceLock<libc::rlimit> = std::sync::OnceLock::new();

/// Raises pilot-host's soft open-file limit to the hard limit: each child costs it a few descriptors,
/// and the default 1024 would cap a manifest at a few hundred processes. Children get the original back.
pub fn raise_nofile_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to and read from a valid rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max
        {
            return;
        }
        let _ = ORIGINAL_NOFILE.set(limit);
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            tracing::debug!(
                "cannot raise the open-file limit: {}",
                io::Error::last_os_error()
            );
        }
    }
}

fn child_nofile_limit() -> Option<libc::rlimit> {
    ORIGINAL_NOFILE.get().copied()
}

/// Builds the CPU set for `cpus`, before forking (nothing may allocate after the fork).
fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        set
    }
}

/// Starts `spec` in a new process group, with its env, working directory and CPU affinity, and
/// PR_SET_PDEATHSIG so it dies with pilot-host.
///
/// Call this from a thread that lives as long as pilot-host (a tokio worker): the death signal fires
/// when the *thread* that forked the child exits.
pub fn spawn(spec: &ProcessSpec) -> io::Result<Spawned> {
    let mut cmd = Command::new(&spec.executable);
    cmd.args(&spec.args)
        .envs(&spec.env)
        .current_dir(&spec.working_directory)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let affinity = spec.affinity.as_deref().map(cpu_set);
    let nofile = child_nofile_limit();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid, setrlimit, sched_setaffinity) on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // pilot-host died before the death signal was armed.
                return Err(io::Error::other(
                    "pilot-host exited while starting the child",
                ));
            }
            if let Some(limit) = &nofile {
                // Children get the open-file limit pilot-host itself was started with.
                libc::setrlimit(libc::RLIMIT_NOFILE, limit);
            }
            if let Some(set) = &affinity {
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("the child exited before its pid was read"))?;
    Ok(Spawned {
        child,
        pid,
        pgid: Pgid(pid as i32),
    })
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
    let _ = pgid.signal(libc::SIGTERM);
    let mut status = tokio::time::timeout_at(deadline, child.wait())
        .await
        .ok()
        .and_then(Result::ok);
    let emptied = status.is_some() && pgid.wait_empty(deadline).await;
    if emptied {
        return StopReport {
            status,
            killed: false,
            leftovers: false,
        };
    }
    let _ = pgid.signal(libc::SIGKILL);
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

/// A guard process that SIGKILLs every registered group when pilot-host dies, even by SIGKILL.
///
/// The death signal reaches only direct children; grandchildren in their groups would be orphaned.
/// The guard is a second, tiny pilot-host (`pilot-host __guard`) in a group of its own, reading
/// `+PGID` / `-PGID` lines on its stdin; at end of input it kills the groups still registered.
#[derive(Debug)]
pub struct Guard {
    stdin: Mutex<std::process::ChildStdin>,
}

impl Guard {
    /// Starts the guard from `exe` (the pilot-host binary).
    pub fn start(exe: &std::path::Path) -> io::Result<Guard> {
        let mut child = std::process::Command::new(exe)
            .arg("__guard")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        // The guard outlives us on purpose; it exits at end of input.
        std::mem::forget(child);
        Ok(Guard {
            stdin: Mutex::new(stdin),
        })
    }

    fn send(&self, line: String) {
        if let Ok(mut stdin) = self.stdin.lock() {
            if let Err(e) = stdin.write_all(line.as_bytes()) {
                tracing::warn!("the guard process is gone ({e}); children may be orphaned if pilot-host is killed");
            }
        }
    }

    /// Registers a group to kill if pilot-host dies.
    pub fn add(&self, pgid: Pgid) {
        self.send(format!("+{}\n", pgid.0));
    }

    /// Forgets a group that is gone.
    pub fn remove(&self, pgid: Pgid) {
        self.send(format!("-{}\n", pgid.0));
    }
}

/// The guard's main loop: track groups from stdin, kill those left at end of input.
pub fn run_guard() -> std::process::ExitCode {
    use std::io::BufRead as _;
    // SAFETY: ignoring signals has no preconditions; the guard must survive a Ctrl-C meant for us.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let mut groups = std::collections::BTreeSet::new();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (op, id) = line.split_at(line.len().min(1));
        match (op, id.parse::<i32>()) {
            ("+", Ok(id)) if id > 1 => {
                groups.insert(id);
            }
            ("-", Ok(id)) => {
                groups.remove(&id);
            }
            _ => {}
        }
    }
    for id in groups {
        let _ = Pgid(id).signal(libc::SIGKILL);
    }
    std::process::ExitCode::SUCCESS
}
