//! The threads plugin code runs on: a small tokio runtime of its own, at a lower scheduling priority
//! than the supervision runtime, shared by every plugin's actor. A spinning guest yields at every epoch
//! tick, so the actors on a thread take turns; WASI sleeps and socket reads wait without a thread;
//! blocking work (file system calls, name lookups) goes to the runtime's blocking threads, which have
//! the same low priority.
//!
//! Measured (`cargo xtask bench`, h; 2 cores): nine hostile plugins on a thread each cost the crash
//! loop 8 to 14 % of its restarts, on 2 shared threads 8 %, on 1 thread 1 % (and the tcp chain's
//! hand-off 1.2 to 1.4x calm instead of 2.4x): with plugin threads on every core, each wake-up of the
//! supervisor or a child waits for a plugin thread to be preempted. So plugins get half the CPUs.

use std::future::Future;
use std::sync::{Arc, Mutex};

/// The nice value of plugin threads (the supervision runtime runs at the process's own, usually 0).
///
/// Measured with the hostile scenario: at nice 0 the crash loop kept 0.92x of its calm restarts, at 10
/// 0.99x; 19 was no better than 10 and leaves plugins little on a busy machine; SCHED_IDLE made it
/// worse (0.88x): a starved plugin thread can hold the memory-map lock that the supervisor's fork needs.
/// Measured again with the pooling allocator and spawns by `clone(CLONE_VM)`, on the mixed scenario
/// (nine hostile ready checks, a spinning and a storming control plugin under request load; 3 runs of
/// 8 s each, paired with calm runs): restarts 1.00x of calm at nice 10, 19 and SCHED_IDLE alike;
/// hand-off 1.11x to 1.31x calm at 10 (four runs), 0.98x to 1.12x at SCHED_IDLE (three), 1.23x at 19.
/// SCHED_IDLE gains a little hand-off but starves plugins behind any busy child: beside two
/// CPU-bound children, requests to a trivial control plugin took a median of 0.17 ms in one run and
/// 140 ms (max 446 ms) in the next at SCHED_IDLE, 0.19 ms and 1.06 ms (max 7.8 ms) at nice 10. So
/// plugins keep a bounded share at nice 10.
pub const PLUGIN_NICE: i32 = 10;

/// Returns how many worker threads run plugin code: half the CPUs, at least one, unless
/// `PILOT_HOST_PLUGIN_THREADS` says otherwise.
pub fn plugin_threads() -> usize {
    std::env::var("PILOT_HOST_PLUGIN_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() / 2))
        .clamp(1, 64)
}

/// The plugin runtime; shut down in the background when the last handle goes.
#[derive(Clone)]
pub struct PluginThreads(Arc<Owned>);

struct Owned(Mutex<Option<tokio::runtime::Runtime>>);

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // Calls may still be parked in host calls; never wait for them (nor block a caller's runtime).
            runtime.shutdown_background();
        }
    }
}

impl PluginThreads {
    /// Starts the threads.
    pub fn new() -> std::io::Result<PluginThreads> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plugin_threads())
            .thread_name("pilot-plugin")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(PluginThreads(Arc::new(Owned(Mutex::new(Some(runtime))))))
    }

    /// Runs `task` on the plugin threads; `false` if they are shut down.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> bool {
        let runtime = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        match runtime.as_ref() {
            Some(r) => {
                r.spawn(task);
                true
            }
            None => false,
        }
    }
}

/// Returns the priority of plugin threads: [`PLUGIN_NICE`], or `PILOT_HOST_PLUGIN_NICE` (a nice value,
/// or `idle` for the SCHED_IDLE policy), which the benchmark uses to compare them.
fn plugin_priority() -> Option<i32> {
    static PRIORITY: std::sync::OnceLock<Option<i32>> = std::sync::OnceLock::new();
    *PRIORITY.get_or_init(|| match std::env::var("PILOT_HOST_PLUGIN_NICE") {
        Ok(v) if v == "idle" => None,
        Ok(v) => Some(v.parse().unwrap_or(PLUGIN_NICE).clamp(0, 19)),
        Err(_) => Some(PLUGIN_NICE),
    })
}

/// Lowers the calling thread's priority (on Linux, a thread's nice value and scheduling policy are
/// its own, and threads it starts inherit them).
fn lower_priority() {
    let rc = match plugin_priority() {
        Some(nice) => {
            // nix wraps neither setpriority nor sched_setscheduler.
            let tid = nix::unistd::gettid().as_raw();
            // SAFETY: setpriority on our own thread id; it only changes that thread's nice value.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) }
        }
        None => {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) }
        }
    };
    if rc != 0 {
        tracing::debug!(
            "cannot lower the priority of a plugin thread: {}",
            std::io::Error::last_os_error()
        );
    }
}
