//! Descendants that escape their process group: pilot-host is a child subreaper, so a daemon whose
//! parent dies (`setsid cmd &`, a double fork) is reparented to pilot-host instead of init. Here they
//! are found (our children that we did not spawn), told apart by the [`PROCESS_VAR`] their process
//! gave them, reaped when they end (without touching the children pilot-host spawned, which are reaped
//! through their pidfds), and stopped with their process.
//!
//! Everything here reads `/proc` and is blocking: run it on a blocking thread.

use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::pgroup::{environ_value, Pgid, PROCESS_VAR};
use super::spawn::lock_settled;

/// A descendant adopted by pilot-host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Its pid.
    pub pid: u32,
    /// Its process group.
    pub pgid: i32,
    /// The manifest process it came from, if its environment still says.
    pub process: Option<String>,
}

/// Makes pilot-host a child subreaper.
pub fn become_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(Into::into)
}

/// Reads the pids of the children that may be adopted ones; says whether every thread's file was
/// read. The kernel hands an orphan to the first live thread of its subreaper, the main thread, so
/// only that thread's `children` file is read; the worker threads' files list the (many) children
/// pilot-host spawned itself, and reading them made each scan cost as much as the number of children
/// (a scan at the end of every run: quadratic). If the main thread is gone (an embedding that ended
/// it), every thread's file is read.
fn children() -> (Vec<u32>, bool) {
    let (mut out, all) = match read_main_children() {
        Some(text) => (parse_pids(&text), false),
        None => {
            let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
                return (Vec::new(), true);
            };
            let mut out = Vec::new();
            for task in tasks.flatten() {
                if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                    out.extend(parse_pids(&text));
                }
            }
            (out, true)
        }
    };
    out.sort_unstable();
    out.dedup();
    (out, all)
}

/// Reads the main thread's `children` file, kept open: each read from offset 0 lists the children
/// anew. Opening it is most of the cost of a look: 35 to 45 µs after a pause, against 1 to 9 µs for
/// the read alone, measured here, and a look ends every run.
fn read_main_children() -> Option<String> {
    use std::os::unix::fs::FileExt as _;
    static FILE: OnceLock<Option<std::fs::File>> = OnceLock::new();
    let file = FILE
        .get_or_init(|| {
            std::fs::File::open(format!("/proc/self/task/{}/children", std::process::id())).ok()
        })
        .as_ref()?;
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match file.read_at(&mut buf, text.len() as u64) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    String::from_utf8(text).ok()
}

fn parse_pids(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .collect()
}

/// Runs `f` on the children pilot-host did not spawn, while no spawn that the files read can list is
/// under way (a child being spawned is not yet known as ours and must not be mistaken for an
/// orphan). Clones made by worker threads never show in the main thread's file, so a scan of it
/// waits only for the main thread's (a current-thread runtime spawns there).
fn with_adopted<T>(f: impl FnOnce(Vec<u32>) -> T) -> T {
    let mut guard = lock_settled(|s| s.in_flight_main);
    let (listed, all) = children();
    if all && guard.in_flight > 0 {
        drop(guard);
        guard = lock_settled(|s| s.in_flight);
        return with_listed(guard, children().0, f);
    }
    with_listed(guard, listed, f)
}

/// Runs `f` on `children` that are not in `spawned`, holding the lock (no spawn starts meanwhile).
fn with_listed<T>(
    spawned: std::sync::MutexGuard<'_, super::spawn::Spawning>,
    children: Vec<u32>,
    f: impl FnOnce(Vec<u32>) -> T,
) -> T {
    let adopted: Vec<u32> = children
        .into_iter()
        .filter(|pid| !spawned.pids.contains(pid))
        .collect();
    let out = f(adopted);
    drop(spawned);
    out
}

/// Reaps the adopted children that have ended; returns their pids.
pub fn reap() -> Vec<u32> {
    with_adopted(|adopted| {
        adopted
            .into_iter()
            .filter(|&pid| {
                let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
                matches!(
                    waitid(Id::Pid(Pid::from_raw(pid as i32)), flags),
                    Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
                )
            })
            .collect()
    })
}

/// Returns whether pilot-host has any child it did not spawn (alive or not yet reaped).
///
/// Cheap enough for an async task: one read of the main thread's `children` file, a few bytes per
/// child. Its wait for spawns under way never waits in pilot-host's multi-threaded runtime (tasks
/// spawn from worker threads, whose children that file does not list), nor in a current-thread
/// runtime (the spawn on this same thread is over before anything else runs on it).
pub fn any_adopted() -> bool {
    with_adopted(|adopted| !adopted.is_empty())
}

/// Lists the live adopted children, with where they came from.
pub fn scan() -> Vec<Orphan> {
    with_adopted(|adopted| adopted.into_iter().filter_map(describe).collect())
}

fn describe(pid: u32) -> Option<Orphan> {
    let stat = super::procstat::read(&pid.to_string())?;
    if matches!(stat.state, b'Z' | b'X') {
        return None;
    }
    Some(Orphan {
        pid,
        pgid: stat.pgrp as i32,
        process: environ_value(pid, PROCESS_VAR),
    })
}

/// Returns whether `pid` is still a live process.
fn alive(pid: u32) -> bool {
    super::procstat::read(&pid.to_string()).is_some_and(|s| !matches!(s.state, b'Z' | b'X'))
}

fn signal(o: &Orphan, sig: Signal) {
    // Its own group if it leads one (a `setsid` daemon), else the pid alone: its group may be one
    // that is already gone or shared.
    if o.pgid == o.pid as i32 && Pgid::of_child(o.pid).signal(sig).is_ok() {
        return;
    }
    let _ = nix::sys::signal::kill(Pid::from_raw(o.pid as i32), sig);
}

/// Stops `orphans`: SIGTERM (to their groups when they lead one), up to `grace`, then SIGKILL and up to
/// `kill_timeout`. Returns the pids still alive after that.
pub async fn stop(orphans: &[Orphan], grace: Duration, kill_timeout: Duration) -> Vec<u32> {
    if orphans.is_empty() {
        return Vec::new();
    }
    for o in orphans {
        signal(o, Signal::SIGTERM);
    }
    let gone = |deadline: Instant| {
        let pids: Vec<u32> = orphans.iter().map(|o| o.pid).collect();
        async move {
            let mut pause = Duration::from_millis(1);
            loop {
                let left: Vec<u32> = {
                    let pids = pids.clone();
                    tokio::task::spawn_blocking(move || {
                        reap();
                        pids.into_iter().filter(|&p| alive(p)).collect()
                    })
                    .await
                    .unwrap_or_default()
                };
                if left.is_empty() || Instant::now() >= deadline {
                    return left;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    };
    let left = gone(Instant::now() + grace).await;
    if left.is_empty() {
        return left;
    }
    for o in orphans.iter().filter(|o| left.contains(&o.pid)) {
        signal(o, Signal::SIGKILL);
    }
    gone(Instant::now() + kill_timeout).await
}
