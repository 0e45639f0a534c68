//! Spawning a child: a process group of its own, a pidfd from birth, without copying pilot-host.
//!
//! The contract: [`spawn_prepared`] starts a [`PreparedProgram`] as the leader of a new process group,
//! with only stdin, stdout and stderr open, the death signal armed, its affinity and open-file limit
//! set, and returns a [`Child`] whose pidfd waits for and reaps exactly this child. Between clone and
//! exec the child makes raw system calls only, on data prepared before the clone, which stays
//! allocated and unmoved until the child has exec'd or exited.
//!
//! Why it is built this way, with the measurements: `docs/design/spawning.md`.

use std::collections::BTreeSet;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{
    AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, IntoRawFd as _, OwnedFd, RawFd,
};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use rustix::io::Errno;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncReadExt as _;
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

/// A program's strings in C form and its limits, made once and shared by every spawn of it: a
/// restart's spawn allocates only its pointer arrays and stack (making them all took 10 to 15 µs of a
/// restart, measured here).
#[derive(Debug)]
pub struct PreparedProgram {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: CString,
    nofile: Option<rustix::process::Rlimit>,
    affinity: Option<rustix::thread::CpuSet>,
}

impl Program {
    /// Makes the C strings the child needs; fails on a NUL byte.
    pub fn prepare(&self) -> io::Result<Arc<PreparedProgram>> {
        let path = c_string(self.executable.as_os_str().as_bytes(), "the path")?;
        let mut argv = Vec::with_capacity(self.args.len() + 1);
        argv.push(path.clone());
        for arg in &self.args {
            argv.push(c_string(arg.as_bytes(), "an argument")?);
        }
        let env = self
            .env
            .iter()
            .map(|(k, v)| env_entry(k, v))
            .collect::<io::Result<Vec<_>>>()?;
        let cwd = c_string(
            self.working_directory.as_os_str().as_bytes(),
            "the working directory",
        )?;
        Ok(Arc::new(PreparedProgram {
            path,
            argv,
            env,
            cwd,
            nofile: self.nofile.map(|(cur, max)| rustix::process::Rlimit {
                current: (cur != libc::RLIM_INFINITY).then_some(cur),
                maximum: (max != libc::RLIM_INFINITY).then_some(max),
            }),
            affinity: self.affinity.as_deref().map(cpu_set),
        }))
    }
}

/// A child we spawned: waited for and reaped through its pidfd.
#[derive(Debug)]
pub struct Child {
    pid: u32,
    pidfd: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
    /// Our copies of the write ends of its stdout and stderr, closed once it is reaped. Without them,
    /// the child's exit closing its own copies woke pilot-host twice in the middle of that exit,
    /// on the dying child's CPU, and delayed it: 40 to 80 µs of a restart, measured here.
    output_ends: Option<(OwnedFd, OwnedFd)>,
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
    /// Those of them made by the main thread: the only ones its `children` file can list, and
    /// the only ones a scan of that file must wait for.
    pub in_flight_main: usize,
}

/// The children pilot-host spawned itself.
pub fn spawned() -> &'static Mutex<Spawning> {
    static SPAWNED: OnceLock<Mutex<Spawning>> = OnceLock::new();
    SPAWNED.get_or_init(Mutex::default)
}

/// Notified whenever the last clone under way, or the last on the main thread, is done.
fn settled() -> &'static Condvar {
    static SETTLED: Condvar = Condvar::new();
    &SETTLED
}

fn lock_spawned() -> MutexGuard<'static, Spawning> {
    spawned().lock().unwrap_or_else(|p| p.into_inner())
}

/// Locks the spawned children once no clone that `busy` counts is under way; no clone starts while
/// the lock is held.
pub fn lock_settled(busy: impl Fn(&Spawning) -> usize) -> MutexGuard<'static, Spawning> {
    let guard = lock_spawned();
    settled()
        .wait_while(guard, |s| busy(s) > 0)
        .unwrap_or_else(|p| p.into_inner())
}

/// How many children can be between their clone and the receipt of their pipe ends at once.
const SLOTS: usize = 32;

/// Low descriptors through which children receive their pipe ends (see the module doc).
struct Slots {
    /// `/dev/null`: the children's stdin.
    null: OwnedFd,
    slots: Vec<Slot>,
    /// Above every slot: the child keeps only the descriptors below it.
    above: RawFd,
}

/// A socket pair: pilot-host sends a child its pipe ends on `ours`; the child, whose table holds a
/// copy of `theirs`, receives them.
struct Slot {
    theirs: OwnedFd,
    ours: OwnedFd,
    /// The lease whose message waits in `theirs` for a child that has not taken it yet; 0: free.
    /// The child clears it (it shares our memory) once it took its message; pilot-host, if that
    /// child died first. A lease, not a flag: a spawn whose child is gone must not take the message
    /// of the spawn that leased the slot after it.
    lease: AtomicU64,
}

/// Readies spawning for about `processes` children: makes the slots, and grows the descriptor table
/// to what that many children need ([`reserve_descriptors`]).
pub fn prepare(processes: usize) {
    if let Err(e) = Slots::get() {
        tracing::debug!("cannot reserve the spawn slots yet: {e}");
        return;
    }
    reserve_descriptors(processes);
}

/// Grows the descriptor table once to what `processes` children need (each: the read ends of its
/// two output pipes and our copies of their write ends, a pidfd, a file the sampler keeps, an exec
/// pipe while it starts), within the open-file limit. A table shared by threads waits for an RCU
/// grace period (`synchronize_rcu`, milliseconds) each time it grows; measured here, growing it step
/// by step while 100 children started held a worker for most of 50 ms. The command line calls this while pilot-host has one thread, when growing costs nothing.
pub fn reserve_descriptors(processes: usize) {
    let want = (processes * 8 + 256).next_power_of_two();
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    let top = want
        .min(usize::try_from(limit).unwrap_or(usize::MAX))
        .saturating_sub(1);
    if let Ok(null) = std::fs::File::open("/dev/null") {
        // A descriptor at `top`, closed at once: the table keeps its size.
        if let Ok(fd) =
            nix::fcntl::fcntl(&null, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(top as RawFd))
        {
            // SAFETY: `fd` was just made by F_DUPFD_CLOEXEC and is ours alone.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

impl Slots {
    /// Makes the slots, as low as the descriptors free now allow.
    fn get() -> io::Result<&'static Slots> {
        static SLOTS_: OnceLock<Slots> = OnceLock::new();
        if let Some(slots) = SLOTS_.get() {
            return Ok(slots);
        }
        ensure_stdio();
        let null = OwnedFd::from(std::fs::File::open("/dev/null")?);
        let mut above = null.as_raw_fd();
        let mut slots = Vec::with_capacity(SLOTS);
        for _ in 0..SLOTS {
            let (theirs, ours) = rustix::net::socketpair(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::SEQPACKET,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )?;
            above = above.max(theirs.as_raw_fd());
            slots.push(Slot {
                theirs,
                ours,
                lease: AtomicU64::new(0),
            });
        }
        let slots = Slots {
            null,
            slots,
            above: above + 1,
        };
        Ok(SLOTS_.get_or_init(|| slots))
    }

    /// Takes a free slot. When every slot waits for its child, the children need the CPU more than
    /// we do: this thread yields it until one is free.
    async fn lease(&'static self) -> (&'static Slot, u64) {
        static LEASES: AtomicU64 = AtomicU64::new(1);
        let lease = LEASES.fetch_add(1, Ordering::Relaxed);
        let mut tries = 0u32;
        loop {
            if let Some(slot) = self.slots.iter().find(|s| {
                s.lease
                    .compare_exchange(0, lease, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            }) {
                return (slot, lease);
            }
            tries += 1;
            if tries > 256 {
                // Children that do not run (stopped?): stop spinning.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            } else if tries % 4 == 0 {
                std::thread::yield_now();
            } else {
                tokio::task::yield_now().await;
            }
        }
    }
}

impl Slot {
    /// Sends the child's pipe ends.
    fn send(&self, ends: [&OwnedFd; 3]) -> io::Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let fds = ends.map(|fd| fd.as_fd());
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        rustix::net::sendmsg(
            &self.ours,
            &[io::IoSlice::new(b"F")],
            &mut control,
            SendFlags::empty(),
        )?;
        Ok(())
    }

    /// Takes back the message of `lease` if no child took it (its child died first, or was never
    /// made), and frees the slot.
    fn reclaim(&self, lease: u64) {
        if self.lease.load(Ordering::Acquire) != lease {
            return;
        }
        // The message's descriptors are closed when the received `OwnedFd`s drop.
        let _ = receive(self.theirs.as_fd(), rustix::net::RecvFlags::DONTWAIT);
        self.lease.store(0, Ordering::Release);
    }
}

/// Receives a message of three descriptors on `socket`.
fn receive(socket: BorrowedFd<'_>, flags: rustix::net::RecvFlags) -> Result<[OwnedFd; 3], Errno> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        socket,
        &mut [io::IoSliceMut::new(&mut byte)],
        &mut control,
        flags | RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut got: [Option<OwnedFd>; 3] = [None, None, None];
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for (slot, fd) in got.iter_mut().zip(fds) {
                *slot = Some(fd);
            }
        }
    }
    match got {
        [Some(a), Some(b), Some(c)] => Ok([a, b, c]),
        _ => Err(Errno::BADMSG),
    }
}

/// Opens `/dev/null` on any of stdin, stdout and stderr that is closed, so that no pipe or slot of
/// ours ever takes one of those numbers.
fn ensure_stdio() {
    for fd in 0..3 {
        if nix::fcntl::fcntl(std_fd(fd), nix::fcntl::FcntlArg::F_GETFD).is_err() {
            if let Ok(null) = std::fs::File::open("/dev/null") {
                let null = OwnedFd::from(null);
                if null.as_raw_fd() == fd {
                    std::mem::forget(null);
                } else {
                    // SAFETY: `fd` is closed (checked above); it becomes /dev/null and stays open.
                    let mut target =
                        std::mem::ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(fd) });
                    let _ = nix::unistd::dup2(&null, &mut target);
                }
            }
        }
    }
}

/// Borrows descriptor 0, 1 or 2 for a query.
fn std_fd(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: only used on 0, 1 and 2 for F_GETFD, which has no effect on a closed descriptor.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// The step of the child's set-up that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    None = 0,
    Files,
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
            Step::Files,
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
            Step::Files => "give it a descriptor table of its own",
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

/// What the child reads, by raw pointers into the [`Launch`] that owns it all.
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const u8,
    envp: *const *const u8,
    cwd: *const libc::c_char,
    parent: i32,
    /// `/dev/null`, for stdin.
    null: RawFd,
    /// The slot's socket on which the child receives its stdout, stderr and exec pipe ends.
    slot: RawFd,
    /// The slot's lease, which the child clears once it took them.
    busy: *const AtomicU64,
    /// This spawn's lease.
    lease: u64,
    /// The child keeps the descriptors below this one only.
    above: RawFd,
    /// The step that failed (low byte) and its errno (high half), written before the child exits;
    /// 0: none. The child shares our memory, so no pipe is needed to say it.
    failed: AtomicU64,
    nofile: Option<rustix::process::Rlimit>,
    affinity: Option<rustix::thread::CpuSet>,
}

/// The size of the stack the child runs on until it execs; it makes a few system calls, no more.
const CHILD_STACK: usize = 32 * 1024;

/// Everything the child uses until it execs, on the heap: it must stay allocated and unmoved until
/// the child has exec'd or exited, which the exec pipe tells, long after the clone returned.
struct Launch {
    args: ChildArgs,
    stack: Vec<MaybeUninit<u8>>,
    // Owners of what `args` points into.
    _prepared: Arc<PreparedProgram>,
    _argv: Vec<*const u8>,
    _envp: Vec<*const u8>,
}

// SAFETY: the raw pointers in a `Launch` point into the `Launch` itself (its own heap-allocated
// strings and arrays), never into anything another thread owns.
unsafe impl Send for Launch {}

/// Keeps a [`Launch`] until the child is known to be done with it; if dropped before (the spawn's
/// future cancelled), it leaks the launch rather than free memory a child may still be reading.
struct InFlight(Option<Box<Launch>>);

impl InFlight {
    /// The step that failed and its errno, if the child recorded one.
    fn failure(&self) -> Option<(Step, i32)> {
        let failed = self
            .0
            .as_ref()
            .map_or(0, |l| l.args.failed.load(Ordering::Acquire));
        (failed != 0).then(|| (Step::from(failed as u8), (failed >> 32) as i32))
    }

    /// The child has exec'd or exited: the memory is ours again.
    fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(launch) = self.0.take() {
            Box::leak(launch);
        }
    }
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

fn cpu_set(cpus: &[usize]) -> rustix::thread::CpuSet {
    let mut set = rustix::thread::CpuSet::new();
    for &cpu in cpus
        .iter()
        .filter(|&&c| c < rustix::thread::CpuSet::MAX_CPU)
    {
        set.set(cpu);
    }
    set
}

fn null_terminated(strings: &[CString]) -> Vec<*const u8> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast::<u8>())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

impl Launch {
    /// Prepares everything the child of `prepared` needs; the descriptors are filled in later.
    fn new(prepared: &Arc<PreparedProgram>) -> Box<Launch> {
        let argv = null_terminated(&prepared.argv);
        let envp = null_terminated(&prepared.env);
        Box::new(Launch {
            args: ChildArgs {
                path: prepared.path.as_ptr(),
                argv: argv.as_ptr(),
                envp: envp.as_ptr(),
                cwd: prepared.cwd.as_ptr(),
                parent: nix::unistd::getpid().as_raw(),
                null: -1,
                slot: -1,
                busy: std::ptr::null(),
                lease: 0,
                above: -1,
                failed: AtomicU64::new(0),
                nofile: prepared.nofile,
                affinity: prepared.affinity,
            },
            stack: Vec::with_capacity(CHILD_STACK),
            _prepared: prepared.clone(),
            _argv: argv,
            _envp: envp,
        })
    }
}

/// Spawns `program` as the leader of a new process group, with PR_SET_PDEATHSIG armed; returns once
/// it has exec'd (or failed to, with the step that failed).
///
/// Call it from a thread that lives as long as pilot-host (a tokio worker): the death signal fires when
/// the *thread* that created the child exits.
pub async fn spawn(program: &Program) -> io::Result<Spawned> {
    spawn_prepared(&program.prepare()?).await
}

/// [`spawn`] of a program prepared once for all its spawns.
pub async fn spawn_prepared(prepared: &Arc<PreparedProgram>) -> io::Result<Spawned> {
    let mut launch = Launch::new(prepared);
    let slots = Slots::get()?;
    // A spawn on its own waits in the clone until its child exec'd or exited (CLONE_VFORK); among
    // others under way it goes on at once, and an exec pipe tells (see the module doc).
    let (_under_way, alone) = UnderWay::begin();
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (out_r, out_w) = nix::unistd::pipe2(cloexec)?;
    let (err_r, err_w) = nix::unistd::pipe2(cloexec)?;
    let exec = if alone {
        None
    } else {
        Some(nix::unistd::pipe2(cloexec | nix::fcntl::OFlag::O_NONBLOCK)?)
    };
    let (slot, lease) = slots.lease().await;
    // The third end is the exec pipe's, or /dev/null for a spawn that waits (it needs no pipe).
    let third = exec.as_ref().map_or(&slots.null, |(_, w)| w);
    let sent = slot.send([&out_w, &err_w, third]);
    // The message holds the exec pipe's write end now; we keep the output pipes' write ends until the
    // child is reaped (see [`Child::reaped`]).
    let exec_r = exec.map(|(r, _)| r);
    if let Err(e) = sent {
        slot.lease.store(0, Ordering::Release);
        return Err(e);
    }
    launch.args.null = slots.null.as_raw_fd();
    launch.args.slot = slot.theirs.as_raw_fd();
    launch.args.busy = &slot.lease;
    launch.args.lease = lease;
    launch.args.above = slots.above;
    let (pid, pidfd, launch) = match clone_child(launch, alone) {
        Ok(cloned) => cloned,
        Err(e) => {
            slot.reclaim(lease);
            return Err(e);
        }
    };
    // SAFETY: the pidfd is an `OwnedFd` that stays open and unchanged until the `AsyncFd` drops it.
    let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }?;
    let mut child = Child {
        pid,
        pidfd,
        status: None,
        output_ends: Some((out_w, err_w)),
    };
    match exec_r {
        // The child has exec'd or exited, so it uses the launch no more; a message it did not take,
        // it never will.
        None => slot.reclaim(lease),
        // End of file once the child exec'd or exited. If it dies before it took its pipe ends, the
        // exec pipe stays open in the slot's message: its exit tells, and the message is taken back.
        // An error leaves the child's use of the launch unknown: it is leaked, not freed.
        Some(exec_r) => {
            let mut exec = pipe::Receiver::from_owned_fd(exec_r)?;
            tokio::select! {
                biased;
                done = until_eof(&mut exec) => done?,
                _ = child.exited() => {
                    slot.reclaim(lease);
                    until_eof(&mut exec).await?;
                }
            }
        }
    }
    let failure = launch.failure();
    launch.release();
    if let Some((step, errno)) = failure {
        // The child exits right after it recorded its failure: reap it.
        let _ = child.wait().await;
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

/// Reads `pipe` until end of file.
async fn until_eof(pipe: &mut pipe::Receiver) -> io::Result<()> {
    let mut buf = [0u8; 8];
    while pipe.read(&mut buf).await? != 0 {}
    Ok(())
}

/// Spawns under way, from their pipes to their child's exec (or failure).
static UNDER_WAY: AtomicUsize = AtomicUsize::new(0);

/// Counts a spawn under way until dropped.
struct UnderWay;

impl UnderWay {
    /// Counts this spawn; returns whether it is the only one.
    fn begin() -> (UnderWay, bool) {
        let before = UNDER_WAY.fetch_add(1, Ordering::AcqRel);
        (UnderWay, before == 0)
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        UNDER_WAY.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Clones the child with all signals blocked in this thread, and records its pid as spawned. Returns at
/// once, the child running on beside us, unless `wait`: then once the child has exec'd or exited.
fn clone_child(mut launch: Box<Launch>, wait: bool) -> io::Result<(u32, OwnedFd, InFlight)> {
    let stack = launch.stack.spare_capacity_mut();
    // The stack grows down: hand over its 16-byte aligned top.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    let args: *const ChildArgs = &launch.args;
    let mut pidfd: libc::c_int = -1;
    let flags = libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_PIDFD | libc::SIGCHLD;
    let flags = if wait {
        flags | libc::CLONE_VFORK
    } else {
        flags | WAIT_FOR_EXEC
    };
    let on_main = nix::unistd::gettid() == nix::unistd::getpid();
    {
        let mut spawned = lock_spawned();
        spawned.in_flight += 1;
        spawned.in_flight_main += usize::from(on_main);
    }
    let mut all = nix::sys::signal::SigSet::all();
    let old = all.thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_SETMASK);
    // SAFETY: `child_main` only reads `args` and uses the stack, both in the boxed launch, which is
    // neither moved nor freed until the child has exec'd or exited (`InFlight`); it makes raw system
    // calls only. The kernel writes the pidfd into `pidfd`.
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            flags,
            args as *mut libc::c_void,
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
    spawned.in_flight_main -= usize::from(on_main);
    if spawned.in_flight == 0 || (on_main && spawned.in_flight_main == 0) {
        settled().notify_all();
    }
    if pid <= 0 {
        // No child: the launch is ours to free.
        return Err(clone_error);
    }
    spawned.pids.insert(pid as u32);
    drop(spawned);
    // SAFETY: CLONE_PIDFD made `pidfd` a new descriptor (close-on-exec) that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok((pid as u32, pidfd, InFlight(Some(launch))))
}

/// Whether the calling thread must wait while the child runs (no raw `execve` here: see above).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const WAIT_FOR_EXEC: libc::c_int = 0;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const WAIT_FOR_EXEC: libc::c_int = libc::CLONE_VFORK;

/// A system call with up to three arguments that never writes `errno`: `Err` holds the error.
///
/// # Safety
///
/// As for the system call `number` with these arguments.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_syscall(number: libc::c_long, a: usize, b: usize, c: usize) -> Result<usize, Errno> {
    let ret: isize;
    // SAFETY: the Linux x86_64 system call convention: number in rax, arguments in rdi, rsi, rdx;
    // the kernel clobbers rcx and r11 and returns -errno in rax.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") number as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    syscall_result(ret)
}

/// A system call with up to three arguments that never writes `errno`: `Err` holds the error.
///
/// # Safety
///
/// As for the system call `number` with these arguments.
#[cfg(target_arch = "aarch64")]
unsafe fn raw_syscall(number: libc::c_long, a: usize, b: usize, c: usize) -> Result<usize, Errno> {
    let ret: isize;
    // SAFETY: the Linux aarch64 system call convention: number in x8, arguments in x0 to x2, -errno
    // back in x0.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") number,
            inlateout("x0") a as isize => ret,
            in("x1") b,
            in("x2") c,
            options(nostack),
        );
    }
    syscall_result(ret)
}

/// A system call through libc (the calling thread waits in `vfork`, so writing its `errno` is
/// harmless).
///
/// # Safety
///
/// As for the system call `number` with these arguments.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn raw_syscall(number: libc::c_long, a: usize, b: usize, c: usize) -> Result<usize, Errno> {
    // SAFETY: as the caller promises.
    let ret = unsafe { libc::syscall(number, a, b, c) };
    if ret < 0 {
        Err(Errno::from_raw_os_error(nix::errno::Errno::last_raw()))
    } else {
        Ok(ret as usize)
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn syscall_result(ret: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&ret) {
        Err(Errno::from_raw_os_error(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// Records the failed `step` and its errno where pilot-host reads them, and exits.
fn fail(a: &ChildArgs, step: Step, errno: Errno) -> ! {
    a.failed.store(
        u64::from(step as u8) | (u64::from(errno.raw_os_error() as u32) << 32),
        Ordering::Release,
    );
    // SAFETY: _exit is async-signal-safe, never fails and never returns.
    unsafe { libc::_exit(127) }
}

/// The child between clone and exec: raw system calls only, on data prepared before the clone.
extern "C" fn child_main(raw: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `raw` is the `ChildArgs` of `clone_child`, alive until we exec or exit.
    let a = unsafe { &*(raw as *const ChildArgs) };
    // First a descriptor table of our own, with only what lies below the slots; until then every
    // descriptor change would be pilot-host's too.
    // SAFETY: close_range closes nothing of pilot-host's with CLOSE_RANGE_UNSHARE: it copies the
    // table first. Unsharing the table of this single-threaded child affects no one else.
    let own = unsafe {
        raw_syscall(
            libc::SYS_close_range,
            a.above as usize,
            u32::MAX as usize,
            libc::CLOSE_RANGE_UNSHARE as usize,
        )
    }
    .or_else(|_| {
        // SAFETY: kernels before 5.9 have no CLOSE_RANGE_UNSHARE: unshare(CLONE_FILES) copies the
        // table for this single-threaded child alone. The descriptors above `above` then stay open
        // until the exec, which closes those marked close-on-exec (the standard library, tokio and
        // nix open theirs so).
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FILES) }.map(|()| 0)
    });
    if let Err(e) = own {
        fail(a, Step::Files, e);
    }
    // SAFETY: the slot's socket lies below `above`, so it is in the table just made.
    let received = receive(
        unsafe { BorrowedFd::borrow_raw(a.slot) },
        rustix::net::RecvFlags::empty(),
    );
    // SAFETY: `busy` is the slot's lease, in pilot-host's memory, which we share.
    let _ = unsafe { &*a.busy }.compare_exchange(a.lease, 0, Ordering::Release, Ordering::Relaxed);
    // The exec pipe's end (or /dev/null) stays open, close-on-exec, until the exec or the exit.
    let [out, err, _exec] = match received {
        Ok(fds) => fds.map(|fd| fd.into_raw_fd()),
        Err(e) => fail(a, Step::Files, e),
    };
    reset_signals();
    if let Err(e) = rustix::process::setpgid(None, None) {
        fail(a, Step::Group, e);
    }
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    {
        fail(a, Step::DeathSignal, e);
    }
    if rustix::process::getppid()
        .map(rustix::process::Pid::as_raw_nonzero)
        .map(std::num::NonZeroI32::get)
        != Some(a.parent)
    {
        fail(a, Step::ParentGone, Errno::SRCH);
    }
    if let Some(limit) = &a.nofile {
        if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Nofile, *limit) {
            fail(a, Step::Limit, e);
        }
    }
    if let Some(set) = &a.affinity {
        if let Err(e) = rustix::thread::sched_setaffinity(None, set) {
            fail(a, Step::Affinity, e);
        }
    }
    for (target, fd) in [a.null, out, err].into_iter().enumerate() {
        // SAFETY: `fd` is open in our table (received, or /dev/null below `above`); the target, 0, 1
        // or 2, is replaced, never closed by us (ManuallyDrop). None of them is 0, 1 or 2: those
        // are open (ensure_stdio), and descriptors are given lowest first.
        let wired = unsafe {
            let mut to = std::mem::ManuallyDrop::new(OwnedFd::from_raw_fd(target as RawFd));
            rustix::io::dup2(BorrowedFd::borrow_raw(fd), &mut to)
        };
        if let Err(e) = wired {
            fail(a, Step::Stdio, e);
        }
    }
    // Nothing but stdin, stdout and stderr crosses the exec (the exec pipe, close-on-exec already,
    // stays open until then).
    // SAFETY: marks descriptors of our own table close-on-exec; nothing is closed now.
    if let Err(e) = unsafe {
        raw_syscall(
            libc::SYS_close_range,
            3,
            u32::MAX as usize,
            libc::CLOSE_RANGE_CLOEXEC as usize,
        )
    } {
        fail(a, Step::Files, e);
    }
    // SAFETY: `cwd` is a NUL-terminated string of the launch, alive until exec.
    let cwd = unsafe { CStr::from_ptr(a.cwd) };
    if let Err(e) = rustix::process::chdir(cwd) {
        fail(a, Step::Folder, e);
    }
    // Every signal unblocked right before exec, as a new program expects; the handlers that could
    // run meanwhile were reset to their defaults above. Setting an empty mask cannot fail.
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    // SAFETY: `path`, `argv` and `envp` are the launch's NUL-terminated string and NULL-terminated
    // arrays, alive until exec.
    let e = unsafe {
        raw_syscall(
            libc::SYS_execve,
            a.path as usize,
            a.argv as usize,
            a.envp as usize,
        )
    };
    fail(a, Step::Exec, e.err().unwrap_or(Errno::NOEXEC))
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
        // SAFETY: setting SIG_DFL installs no handler, and cannot fail for a standard signal other
        // than SIGKILL and SIGSTOP (so `errno` is not written).
        let Ok(old) = (unsafe { sigaction(signal, &default) }) else {
            continue;
        };
        if matches!(old.handler(), SigHandler::SigIgn) && signal != Signal::SIGPIPE {
            // SAFETY: restores SIG_IGN, which installs no handler and cannot fail either.
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
        // Its output ends once its other writers (descendants that kept them) are gone too.
        self.output_ends = None;
        lock_spawned().pids.remove(&self.pid);
        self.status
    }

    /// Waits until the child has exited, without reaping it. Cancel-safe.
    async fn exited(&self) {
        let _ = self.pidfd.readable().await;
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
        .await
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
        let err = spawn(&program("/nonexistent/program", &[]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert!(err.to_string().starts_with("cannot execute it"), "{err}");
        let mut p = program("/bin/true", &[]);
        p.working_directory = "/nonexistent-folder".into();
        let err = spawn(&p).await.unwrap_err();
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
        .await
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

    #[tokio::test]
    async fn output_ends_close_once_the_child_is_reaped_not_when_it_closes_them() {
        let mut s = spawn(&program("/bin/sh", &["-c", "exec >&- 2>&-; exec sleep 30"]))
            .await
            .unwrap();
        let pid = s.child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{pid}/fd/1")).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the child kept its stdout"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The child's copies are closed; ours keep the pipe open (end of file would come at once).
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            tokio::io::AsyncReadExt::read(&mut s.stdout, &mut buf),
        )
        .await;
        assert!(read.is_err(), "end of file before the child was reaped");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        s.child.wait().await.unwrap();
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::io::AsyncReadExt::read(&mut s.stdout, &mut buf),
        )
        .await
        .expect("end of file once reaped")
        .unwrap();
        assert_eq!(n, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_children_at_once_each_get_their_own_pipes() {
        // More spawns at once than there are slots: each child must get its own pipe ends.
        let n = SLOTS * 3;
        let spawns = (0..n).map(|i| {
            tokio::spawn(async move {
                let mut s = spawn(&program(
                    "/bin/sh",
                    &["-c", &format!("echo out{i}; echo err{i} >&2")],
                ))
                .await
                .expect("spawn");
                // Its output ends close once it is reaped (we hold copies until then).
                assert!(s.child.wait().await.unwrap().success());
                let (mut out, mut err) = (String::new(), String::new());
                tokio::io::AsyncReadExt::read_to_string(&mut s.stdout, &mut out)
                    .await
                    .unwrap();
                tokio::io::AsyncReadExt::read_to_string(&mut s.stderr, &mut err)
                    .await
                    .unwrap();
                (i, out, err)
            })
        });
        for spawned in futures_util::future::join_all(spawns).await {
            let (i, out, err) = spawned.unwrap();
            assert_eq!(
                (out.as_str(), err.as_str()),
                (format!("out{i}\n").as_str(), format!("err{i}\n").as_str())
            );
        }
    }

    #[tokio::test]
    async fn a_child_gets_stdin_stdout_and_stderr_and_nothing_else_of_ours() {
        // A descriptor pilot-host would pass on (not close-on-exec) stays ours.
        let file = std::fs::File::open("/dev/null").unwrap();
        let stray = nix::unistd::dup(&file).unwrap();
        nix::fcntl::fcntl(
            &stray,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .unwrap();
        let mut s = spawn(&program("/bin/sh", &["-c", "ls /proc/$$/fd"]))
            .await
            .unwrap();
        s.child.wait().await.unwrap();
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut s.stdout, &mut out)
            .await
            .unwrap();
        let fds: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(
            fds,
            ["0", "1", "2"],
            "stray descriptor {}",
            stray.as_raw_fd()
        );
    }

    #[test]
    fn a_message_no_child_took_is_reclaimed_by_its_lease_only() {
        let slots = Slots::get().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (slot, lease) = rt.block_on(slots.lease());
        let (exec_r, exec_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        slot.send([&exec_w, &exec_w, &exec_w]).unwrap();
        drop(exec_w);
        let eof = |fd: &OwnedFd| {
            let mut b = [0u8; 1];
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .unwrap();
            matches!(nix::unistd::read(fd, &mut b), Ok(0))
        };
        // Another spawn's lease (one that leased the slot earlier and whose child is gone) must not
        // take this spawn's message.
        slot.reclaim(lease.wrapping_add(1));
        assert!(!eof(&exec_r), "the message was taken by the wrong lease");
        assert_eq!(slot.lease.load(Ordering::Acquire), lease);
        slot.reclaim(lease);
        assert!(eof(&exec_r), "the message's descriptors were not closed");
        assert_eq!(
            slot.lease.load(Ordering::Acquire),
            0,
            "the slot is free again"
        );
    }
}
