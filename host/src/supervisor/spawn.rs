//! Spawning a child fast, in a process group of its own, with a pidfd from birth.
//!
//! `fork` copies the page tables of the parent, and pilot-host (wasmtime, a thousand children's
//! buffers) is not small: measured here, a `pilot-host run` of 100 `/bin/true` took 1.8× a shell loop
//! and 3.2× at 1000. So the child is made with `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`, as glibc's
//! `posix_spawn` does: it borrows our memory, the calling thread waits until it has exec'd, and nothing
//! is copied. `posix_spawn` itself cannot arm PR_SET_PDEATHSIG or set the CPU affinity, hence our own.
//!
//! Between clone and exec the child may only make async-signal-safe system calls on data prepared
//! before the clone: no allocation, no locks. It resets signal handlers (without CLONE_SIGHAND it has
//! its own table), joins a new group, arms the death signal, checks its parent is still us, sets the
//! open-file limit and affinity, wires stdin/stdout/stderr, changes folder, unblocks signals and execs.
//! A failure is written into memory we share with it, with the step that failed.
//!
//! The pidfd waits for the exit and reaps exactly this child (`waitid(P_PIDFD)`), so nothing else in
//! pilot-host ever has to call `waitpid(-1)` and steal another child's status.

use std::collections::BTreeSet;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// What the child is started with; everything is prepared before the clone.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// The executable (absolute).
    pub executable: std::path::PathBuf,
    /// The arguments after the program name.
    pub args: Vec<String>,
    /// The whole environment, as `KEY=VALUE`.
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// The working directory.
    pub working_directory: std::path::PathBuf,
    /// CPUs it may run on; `None`: any.
    pub affinity: Option<Vec<usize>>,
    /// The open-file limit to give it; `None`: ours.
    pub nofile: Option<(u64, u64)>,
}

/// A child we spawned: waited for and reaped through its pidfd.
#[derive(Debug)]
pub struct Child {
    pid: u32,
    pidfd: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
}

/// A spawned child with its output pipes.
#[derive(Debug)]
pub struct Spawned {
    /// The child.
    pub child: Child,
    /// Its standard output.
    pub stdout: pipe::Receiver,
    /// Its standard error.
    pub stderr: pipe::Receiver,
}

/// Pids of the children spawned here and not yet reaped, and the spawns under way: the reaper of
/// adopted orphans must never reap one of these (see `orphans`).
#[derive(Debug, Default)]
pub struct Spawning {
    /// Children spawned and not yet reaped.
    pub pids: BTreeSet<u32>,
    /// Clones under way (their pid is not known yet).
    pub in_flight: usize,
}

/// The children pilot-host spawned itself.
pub fn spawned() -> &'static Mutex<Spawning> {
    static SPAWNED: OnceLock<Mutex<Spawning>> = OnceLock::new();
    SPAWNED.get_or_init(Mutex::default)
}

fn lock_spawned() -> std::sync::MutexGuard<'static, Spawning> {
    spawned().lock().unwrap_or_else(|p| p.into_inner())
}

/// `/dev/null`, opened once, for the children's stdin.
fn dev_null() -> io::Result<RawFd> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_raw_fd());
    }
    let file = std::fs::File::open("/dev/null")?;
    Ok(NULL.get_or_init(|| OwnedFd::from(file)).as_raw_fd())
}

/// The step of the child's set-up that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    None = 0,
    Group,
    DeathSignal,
    ParentGone,
    Limit,
    Affinity,
    Stdio,
    Folder,
    Exec,
}

impl Step {
    fn from(v: u8) -> Step {
        [
            Step::None,
            Step::Group,
            Step::DeathSignal,
            Step::ParentGone,
            Step::Limit,
            Step::Affinity,
            Step::Stdio,
            Step::Folder,
            Step::Exec,
        ]
        .get(usize::from(v))
        .copied()
        .unwrap_or(Step::None)
    }

    fn describe(self) -> &'static str {
        match self {
            Step::None => "start",
            Step::Group => "create its process group",
            Step::DeathSignal => "arm the death signal",
            Step::ParentGone => "start: pilot-host exited while starting it",
            Step::Limit => "set its open-file limit",
            Step::Affinity => "set its CPU affinity",
            Step::Stdio => "connect its output",
            Step::Folder => "change to its working directory",
            Step::Exec => "execute it",
        }
    }
}

/// What the child reads (and writes on failure); lives on the parent's stack during the clone.
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    parent: libc::pid_t,
    stdio: [RawFd; 3],
    nofile: Option<libc::rlimit>,
    affinity: Option<libc::cpu_set_t>,
    failed_step: AtomicU8,
    errno: AtomicI32,
}

fn c_string(bytes: &[u8], what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} holds a NUL byte"),
        )
    })
}

fn env_entry(key: &OsStr, value: &OsStr) -> io::Result<CString> {
    let mut bytes = Vec::with_capacity(key.len() + value.len() + 1);
    bytes.extend_from_slice(key.as_bytes());
    bytes.push(b'=');
    bytes.extend_from_slice(value.as_bytes());
    c_string(&bytes, "an environment variable")
}

fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it (CPU_SET ignores CPUs
    // beyond the set's size).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        set
    }
}

/// Spawns `program` as the leader of a new process group, with PR_SET_PDEATHSIG armed.
///
/// Call it from a thread that lives as long as pilot-host (a tokio worker): the death signal fires when
/// the *thread* that created the child exits.
pub fn spawn(program: &Program) -> io::Result<Spawned> {
    let path = c_string(program.executable.as_os_str().as_bytes(), "the path")?;
    let mut argv_c = Vec::with_capacity(program.args.len() + 1);
    argv_c.push(path.clone());
    for arg in &program.args {
        argv_c.push(c_string(arg.as_bytes(), "an argument")?);
    }
    let env_c = program
        .env
        .iter()
        .map(|(k, v)| env_entry(k, v))
        .collect::<io::Result<Vec<_>>>()?;
    let cwd = c_string(
        program.working_directory.as_os_str().as_bytes(),
        "the working directory",
    )?;
    let argv: Vec<*const libc::c_char> = argv_c
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = env_c
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let args = ChildArgs {
        path: path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cwd.as_ptr(),
        parent: nix::unistd::getpid().as_raw(),
        stdio: [dev_null()?, out_w.as_raw_fd(), err_w.as_raw_fd()],
        nofile: program.nofile.map(|(cur, max)| libc::rlimit {
            rlim_cur: cur,
            rlim_max: max,
        }),
        affinity: program.affinity.as_deref().map(cpu_set),
        failed_step: AtomicU8::new(Step::None as u8),
        errno: AtomicI32::new(0),
    };
    let (pid, pidfd) = clone_child(&args)?;
    drop((out_w, err_w));
    // SAFETY: the pidfd is an `OwnedFd` that stays open and unchanged until the `AsyncFd` drops it.
    let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }?;
    let child = Child {
        pid,
        pidfd,
        status: None,
    };
    let step = Step::from(args.failed_step.load(Ordering::SeqCst));
    if step != Step::None {
        let errno = args.errno.load(Ordering::SeqCst);
        let mut child = child;
        // The child has exited already (it reported, then called _exit): reap it now.
        let _ = child.reap_blocking();
        let cause = io::Error::from_raw_os_error(errno);
        let message = if step == Step::ParentGone {
            format!("cannot {}", step.describe())
        } else {
            format!("cannot {}: {cause}", step.describe())
        };
        return Err(io::Error::new(cause.kind(), message));
    }
    Ok(Spawned {
        child,
        stdout: pipe::Receiver::from_owned_fd(out_r)?,
        stderr: pipe::Receiver::from_owned_fd(err_r)?,
    })
}

/// The size of the stack the child runs on until it execs.
const CHILD_STACK: usize = 64 * 1024;

/// Clones the child with all signals blocked in this thread, and records its pid as spawned.
fn clone_child(args: &ChildArgs) -> io::Result<(u32, OwnedFd)> {
    let mut stack = vec![0u8; CHILD_STACK];
    // The stack grows down: hand over its 16-byte aligned top.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    let mut pidfd: libc::c_int = -1;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    lock_spawned().in_flight += 1;
    let mut all = nix::sys::signal::SigSet::all();
    let old = all.thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_SETMASK);
    // SAFETY: `child_main` only reads `args` (alive on our stack: this thread is suspended until the
    // child execs or exits, CLONE_VFORK) and makes async-signal-safe calls; the stack is ours and
    // outlives the child's use of it for the same reason; the kernel writes the pidfd into `pidfd`.
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            flags,
            args as *const ChildArgs as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        )
    };
    let clone_error = io::Error::last_os_error();
    if let Ok(old) = old {
        let _ = old.thread_set_mask();
    } else {
        all = nix::sys::signal::SigSet::empty();
        let _ = all.thread_set_mask();
    }
    let mut spawned = lock_spawned();
    spawned.in_flight -= 1;
    if pid <= 0 {
        return Err(clone_error);
    }
    spawned.pids.insert(pid as u32);
    drop(spawned);
    drop(stack);
    // SAFETY: CLONE_PIDFD made `pidfd` a new descriptor (close-on-exec) that nothing else owns.
    Ok((pid as u32, unsafe { OwnedFd::from_raw_fd(pidfd) }))
}

/// The child between clone and exec: async-signal-safe system calls only.
extern "C" fn child_main(raw: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `raw` is the `ChildArgs` of `clone_child`, alive until we exec or exit.
    let a = unsafe { &*(raw as *const ChildArgs) };
    let fail = |step: Step| -> libc::c_int {
        a.errno
            .store(nix::errno::Errno::last_raw(), Ordering::SeqCst);
        a.failed_step.store(step as u8, Ordering::SeqCst);
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(127) }
    };
    reset_signals();
    if nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0)).is_err() {
        return fail(Step::Group);
    }
    if nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).is_err() {
        return fail(Step::DeathSignal);
    }
    if nix::unistd::getppid().as_raw() != a.parent {
        return fail(Step::ParentGone);
    }
    // SAFETY (this block): each call takes pointers to data prepared before the clone and alive
    // until exec; all are async-signal-safe system calls.
    unsafe {
        if let Some(limit) = &a.nofile {
            if libc::setrlimit(libc::RLIMIT_NOFILE, limit) != 0 {
                return fail(Step::Limit);
            }
        }
        if let Some(set) = &a.affinity {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0 {
                return fail(Step::Affinity);
            }
        }
        for (target, &fd) in a.stdio.iter().enumerate() {
            let target = target as RawFd;
            let ok = if fd == target {
                // dup2 onto itself would keep close-on-exec set.
                libc::fcntl(fd, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(fd, target) == target
            };
            if !ok {
                return fail(Step::Stdio);
            }
        }
        if libc::chdir(a.cwd) != 0 {
            return fail(Step::Folder);
        }
        let none = nix::sys::signal::SigSet::empty();
        if none.thread_set_mask().is_err() {
            return fail(Step::Exec);
        }
        libc::execve(a.path, a.argv, a.envp);
    }
    fail(Step::Exec)
}

/// Resets every handled signal to its default (the handlers are pilot-host's, and must never run in
/// the child), and SIGPIPE too (Rust ignores it; programs expect the default). Other ignored signals
/// stay ignored, as a shell's children inherit them.
fn reset_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: setting SIG_DFL installs no handler; reading the old action has no preconditions.
        let Ok(old) = (unsafe { sigaction(signal, &default) }) else {
            continue;
        };
        if matches!(old.handler(), SigHandler::SigIgn) && signal != Signal::SIGPIPE {
            // SAFETY: restores SIG_IGN, which installs no handler.
            let _ = unsafe { sigaction(signal, &old) };
        }
    }
}

impl Child {
    /// Returns the child's pid.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Returns the exit status once reaped.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Reaps the child if it has exited; `None` while it runs.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_some() {
            return Ok(self.status);
        }
        let fd = self.pidfd.get_ref().as_fd();
        match waitid(Id::PIDFd(fd), WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG) {
            Ok(WaitStatus::StillAlive) => Ok(None),
            Ok(status) => Ok(self.reaped(exit_status(status))),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    fn reaped(&mut self, status: ExitStatus) -> Option<ExitStatus> {
        self.status = Some(status);
        lock_spawned().pids.remove(&self.pid);
        self.status
    }

    fn reap_blocking(&mut self) -> io::Result<ExitStatus> {
        let fd = self.pidfd.get_ref().as_fd();
        let status = exit_status(waitid(Id::PIDFd(fd), WaitPidFlag::WEXITED)?);
        self.reaped(status);
        Ok(status)
    }

    /// Waits until the child exits and reaps it. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            let mut ready = self.pidfd.readable().await?;
            ready.clear_ready();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() && !matches!(self.try_wait(), Ok(Some(_))) {
            // Still running: from now on it is an orphan of ours like any other, reaped when it ends.
            lock_spawned().pids.remove(&self.pid);
        }
    }
}

/// Turns a `waitid` result into an [`ExitStatus`].
fn exit_status(status: WaitStatus) -> ExitStatus {
    match status {
        WaitStatus::Exited(_, code) => ExitStatus::from_raw((code & 0xff) << 8),
        WaitStatus::Signaled(_, signal, core) => {
            ExitStatus::from_raw(signal as i32 | if core { 0x80 } else { 0 })
        }
        _ => ExitStatus::from_raw(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(exe: &str, args: &[&str]) -> Program {
        Program {
            executable: exe.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            working_directory: "/".into(),
            affinity: None,
            nofile: None,
        }
    }

    #[tokio::test]
    async fn a_child_runs_in_its_own_group_and_its_status_is_reaped() {
        let mut s = spawn(&program(
            "/bin/sh",
            &["-c", "echo $$ $(ps -o pgid= $$); exit 7"],
        ))
        .expect("spawn sh");
        let pid = s.child.id();
        let status = s.child.wait().await.unwrap();
        assert_eq!(status.code(), Some(7));
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut s.stdout, &mut out)
            .await
            .unwrap();
        let ids: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(ids, [pid.to_string(), pid.to_string()], "pid and group");
        assert!(!lock_spawned().pids.contains(&pid));
    }

    #[tokio::test]
    async fn a_missing_program_or_folder_is_reported_with_its_step() {
        let err = spawn(&program("/nonexistent/program", &[])).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert!(err.to_string().starts_with("cannot execute it"), "{err}");
        let mut p = program("/bin/true", &[]);
        p.working_directory = "/nonexistent-folder".into();
        let err = spawn(&p).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot change to its working directory"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn signals_are_reset_and_the_environment_is_exactly_the_given_one() {
        let mut s = spawn(&program(
            "/bin/sh",
            &["-c", "grep -E '^(SigIgn|SigBlk)' /proc/self/status; env"],
        ))
        .unwrap();
        s.child.wait().await.unwrap();
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut s.stdout, &mut out)
            .await
            .unwrap();
        assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
        // SIGPIPE (13) is not ignored (bit 12).
        let ign = out
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:\t"))
            .unwrap();
        let mask = u64::from_str_radix(ign, 16).unwrap();
        assert_eq!(mask & (1 << 12), 0, "SIGPIPE ignored: {out}");
        assert!(out.contains("PATH=/usr/bin:/bin"), "{out}");
    }
}
