//! One run of a process: its hooks before the spawn, the spawn, readiness, watching the child, and the
//! stop when asked. The run reports what happens to the coordinator, which alone decides what comes
//! next (restart, back off, fail, start dependents); the run decides nothing.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::hooks::Hooks;
use super::orphans;
use super::output::{self, LogBuffer, Printer, Stream};
use super::pgroup::{self, Guard, Pgid, StopReport, PROCESS_VAR};
use super::ready::{self, ReadyWait};
use super::shell::Msg;
use super::spawn::{self, Program};
use crate::extension::{Extensions, LifecycleEvent, ProcessInfo};
use crate::manifest::ProcessSpec;

/// What a run tells the coordinator.
#[derive(Debug)]
pub(super) enum RunEvent {
    /// The child was spawned.
    Spawned {
        /// Its pid.
        pid: u32,
    },
    /// It became ready by its strategy.
    Ready {
        /// Time from spawn to ready.
        after: Duration,
    },
    /// The run is over; its group (and its escaped descendants) are gone.
    Ended(RunEnd),
}

/// How a run ended.
#[derive(Debug)]
pub(super) struct RunEnd {
    /// Why.
    pub how: How,
    /// The child, if one was spawned.
    pub child: Option<ChildEnd>,
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum How {
    /// Preparing or spawning failed; nothing ran.
    CannotStart(String),
    /// Told to stop before the spawn.
    Cancelled,
    /// The child exited on its own.
    Exited,
    /// Stopped when told to.
    Stopped,
    /// Not ready: the check failed or its deadline passed; the child was stopped.
    NotReady(String),
}

/// The end of a spawned child.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChildEnd {
    /// Its pid.
    pub pid: u32,
    /// Its exit status, if it was reaped.
    pub status: Option<ExitStatus>,
    /// How long it ran.
    pub uptime: Duration,
}

/// Describes how a child ended: `status 3` or `signal 9 (SIGKILL)`.
pub fn describe_exit(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(s) => format!("signal {sig} ({})", s.as_str()),
            Err(_) => format!("signal {sig}"),
        },
        _ => "unknown exit".to_string(),
    }
}

/// What a child of `spec` is started with: pilot-host's environment `base_env` (with the run marker)
/// and the spec's own, its folder, affinity and open-file limit.
pub(super) fn program(spec: &ProcessSpec, base_env: &[(OsString, OsString)]) -> Program {
    let mut env: Vec<(OsString, OsString)> = base_env
        .iter()
        .filter(|(k, _)| k != PROCESS_VAR && k.to_str().is_none_or(|k| !spec.env.contains_key(k)))
        .cloned()
        .collect();
    env.extend(spec.env.iter().map(|(k, v)| (k.into(), v.into())));
    env.push((PROCESS_VAR.into(), spec.name.clone().into()));
    Program {
        executable: spec.executable.clone(),
        args: spec.args.clone(),
        env,
        working_directory: spec.working_directory.clone(),
        affinity: spec.affinity.clone(),
        nofile: pgroup::child_nofile_limit(),
    }
}

/// Everything one run needs, owned.
pub(super) struct Run {
    pub name: Arc<str>,
    pub gen: u64,
    pub spec: Arc<ProcessSpec>,
    pub restarting: bool,
    pub restarts: u32,
    pub kill_timeout: Duration,
    pub extensions: Arc<dyn Extensions>,
    pub hooks: Hooks,
    pub logs: Arc<LogBuffer>,
    pub printer: Printer,
    pub colour_index: usize,
    pub guard: Option<Arc<Guard>>,
    /// The program, prepared once by the coordinator for every run of this spec (or why it cannot
    /// be: a NUL byte somewhere).
    pub program: Result<Arc<spawn::PreparedProgram>, String>,
    /// Whether escaped descendants are swept when the run ends (pilot-host is a subreaper).
    pub adopt: bool,
    pub to: mpsc::UnboundedSender<Msg>,
    pub stop: oneshot::Receiver<()>,
}

impl Run {
    /// Runs to the end and reports it.
    pub async fn run(mut self) {
        let end = self.go().await;
        let group = end.child.as_ref().map(|c| Pgid::of_child(c.pid));
        self.send(RunEvent::Ended(end));
        // The guard forgets the group lazily; nothing else of the run is kept meanwhile (least of
        // all the coordinator's sender: the coordinator ends once the last one is gone).
        if let (Some(guard), Some(group)) = (self.guard.take(), group) {
            drop(self);
            if !group.exists() {
                guard.forget(group).await;
            }
        }
    }

    fn send(&self, event: RunEvent) {
        let _ = self.to.send(Msg::Run {
            name: self.name.clone(),
            gen: self.gen,
            event,
        });
    }

    fn info(&self, pid: Option<u32>) -> ProcessInfo {
        ProcessInfo {
            name: self.spec.name.clone(),
            pid,
            path: self.spec.executable.display().to_string(),
            args: self.spec.args.clone(),
            working_directory: self.spec.working_directory.display().to_string(),
            restart_count: self.restarts,
        }
    }

    async fn go(&mut self) -> RunEnd {
        let not_spawned = |how| RunEnd { how, child: None };
        if self.restarting {
            self.hooks
                .call(LifecycleEvent::OnRestart, || self.info(None));
        }
        let pre_start = self
            .hooks
            .call_and_wait(LifecycleEvent::PreStart, || self.info(None));
        tokio::select! {
            biased;
            _ = &mut self.stop => return not_spawned(How::Cancelled),
            _ = pre_start => {}
        }
        let prepared = match self
            .spec
            .ready
            .as_ref()
            .map(|r| ready::prepare(&r.strategy))
        {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(reason)) => return not_spawned(How::CannotStart(reason)),
        };
        let spawned = match &self.program {
            Ok(program) => spawn::spawn_prepared(program)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        let spawned = match spawned {
            Ok(s) => s,
            Err(e) => {
                return not_spawned(How::CannotStart(format!(
                    "cannot start `{}`: {e}",
                    self.spec.executable.display()
                )))
            }
        };
        let started = Instant::now();
        let mut child = spawned.child;
        let pid = child.id();
        let pgid = Pgid::of_child(pid);
        // The coordinator first: it records the start and answers those waiting for it before the
        // rest of the bookkeeping here (the output it misses meanwhile waits in the pipes).
        self.send(RunEvent::Spawned { pid });
        tokio::task::yield_now().await;
        if let Some(guard) = &self.guard {
            guard.add(pgid);
        }
        let prefix = self.printer.prefix(self.colour_index, &self.name);
        for (stream, kind) in [
            (
                Box::new(spawned.stdout) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                Stream::Stdout,
            ),
            (Box::new(spawned.stderr), Stream::Stderr),
        ] {
            let (prefix, logs, printer) = (prefix.clone(), self.logs.clone(), self.printer.clone());
            tokio::spawn(output::capture(stream, kind, prefix, logs, printer));
        }
        let post_start = self
            .hooks
            .call_and_wait(LifecycleEvent::PostStart, || self.info(Some(pid)));

        let (how, status) = self
            .watch(&mut child, pgid, started, prepared, post_start)
            .await;
        if self.adopt {
            self.sweep_orphans().await;
        }
        self.hooks.call(
            LifecycleEvent::OnShutdown {
                exit_code: status.and_then(|s| s.code()),
                signal: status.and_then(|s| s.signal()),
            },
            || self.info(Some(pid)),
        );
        RunEnd {
            how,
            child: Some(ChildEnd {
                pid,
                status,
                uptime: started.elapsed(),
            }),
        }
    }

    /// Watches the child until it exits, is told to stop, or is not ready in time.
    async fn watch(
        &mut self,
        child: &mut spawn::Child,
        pgid: Pgid,
        started: Instant,
        prepared: Option<ready::ReadyPrep>,
        post_start: oneshot::Receiver<()>,
    ) -> (How, Option<ExitStatus>) {
        let why_not = Arc::new(Mutex::new(String::new()));
        let timeout = self.spec.ready.as_ref().map(|r| r.timeout);
        let mut readiness = match (self.spec.ready.clone(), prepared) {
            (Some(r), Some(prepared)) => {
                let wait = ReadyWait {
                    strategy: r.strategy,
                    prepared,
                    info: self.info(Some(pgid.get() as u32)),
                    extensions: self.extensions.clone(),
                    why_not: why_not.clone(),
                };
                // Checks begin once the post_start hooks ran (the deadline counts from the spawn);
                // a stop or an exit meanwhile is handled at once.
                Some(Box::pin(tokio::time::timeout(r.timeout, async move {
                    let _ = post_start.await;
                    ready::wait(wait).await
                })))
            }
            _ => None,
        };
        // Kept until the run ends: the FIFO readers of a pipe strategy keep draining.
        let mut _drain = None;
        loop {
            tokio::select! {
                biased;
                _ = &mut self.stop => {
                    let report = self.stop_group(child, pgid).await;
                    return (How::Stopped, report.status);
                }
                status = child.wait() => {
                    // The leader is gone; anything it left in its group goes too.
                    if pgid.exists() {
                        self.stop_group(child, pgid).await;
                    }
                    return (How::Exited, status.ok());
                }
                result = async { readiness.as_mut().expect("guarded").await }, if readiness.is_some() => {
                    readiness = None;
                    let reason = match result {
                        Ok(Ok(drain)) => {
                            _drain = Some(drain);
                            self.send(RunEvent::Ready { after: started.elapsed() });
                            continue;
                        }
                        Ok(Err(reason)) => reason,
                        Err(_) => {
                            let secs = timeout.unwrap_or_default().as_secs_f64();
                            let why = why_not.lock().map(|w| w.clone()).unwrap_or_default();
                            let why = if why.is_empty() { String::new() } else { format!(" ({why})") };
                            tracing::warn!("{}: not ready after {secs:.1} s{why}; stopping it", self.name);
                            format!("not ready after {secs:.1} s{why}")
                        }
                    };
                    let report = self.stop_group(child, pgid).await;
                    return (How::NotReady(reason), report.status);
                }
            }
        }
    }

    /// Stops the child's group: SIGTERM, grace, SIGKILL; logs how it went.
    async fn stop_group(&self, child: &mut spawn::Child, pgid: Pgid) -> StopReport {
        let report = pgroup::stop(child, pgid, self.spec.timeout, self.kill_timeout).await;
        let how = report
            .status
            .as_ref()
            .map_or("no exit status".to_string(), describe_exit);
        if report.killed {
            tracing::warn!(
                "{}: did not stop within {:.1} s of SIGTERM; killed ({how})",
                self.name,
                self.spec.timeout.as_secs_f64()
            );
        } else {
            tracing::info!("{}: stopped ({how})", self.name);
        }
        if report.leftovers {
            tracing::error!(
                "{}: processes of group {} survived SIGKILL for {:.1} s",
                self.name,
                pgid.get(),
                self.kill_timeout.as_secs_f64()
            );
        }
        report
    }

    /// Stops the descendants of this process that left its group and were adopted by pilot-host.
    async fn sweep_orphans(&self) {
        // A quick look first, here: it reads the main thread's short list of children, in
        // microseconds, and waits for nothing (see `orphans::any_adopted`). A blocking thread
        // describes the adopted only when there are some; handing every run's end to one cost
        // 50 to 100 µs of each restart.
        if !orphans::any_adopted() {
            return;
        }
        let name = self.spec.name.clone();
        let mine: Vec<orphans::Orphan> = tokio::task::spawn_blocking(move || {
            orphans::scan()
                .into_iter()
                .filter(|o| o.process.as_deref() == Some(name.as_str()))
                .collect()
        })
        .await
        .unwrap_or_default();
        if mine.is_empty() {
            return;
        }
        let pids: Vec<String> = mine.iter().map(|o| o.pid.to_string()).collect();
        tracing::info!(
            "{}: stopping {} descendant(s) that left its process group: pid {}",
            self.name,
            mine.len(),
            pids.join(", ")
        );
        let left = orphans::stop(&mine, self.spec.timeout, self.kill_timeout).await;
        if !left.is_empty() {
            tracing::error!(
                "{}: descendants {left:?} survived SIGKILL for {:.1} s",
                self.name,
                self.kill_timeout.as_secs_f64()
            );
        }
    }
}
