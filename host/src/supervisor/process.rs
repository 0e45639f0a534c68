//! One task per process: it owns the child and the process's state, and serializes every operation on
//! it (start, stop, restart, a crash, a readiness deadline), so two children of one process never exist.

use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::backoff::{Backoff, Decision};
use super::events::{Bus, Event as Notice};
use super::output::{self, LogBuffer, Printer, Stream};
use super::pgroup::{self, Guard, Spawned};
use super::ready::{self, ReadyWait};
use super::state::{ProcessStatus, State};
use crate::extension::{Extensions, LifecycleEvent, ProcessInfo};
use crate::manifest::{ProcessSpec, ShutdownStrategy};

/// What a process task is asked to do.
#[derive(Debug)]
pub(super) enum Command {
    /// Start (or start again after a stop).
    Start,
    /// Stop, replying once stopped.
    Stop(oneshot::Sender<()>),
    /// Stop if running and start again, replying once the new child is spawned (or failed to be).
    Restart(oneshot::Sender<()>),
    /// Never start: a dependency failed.
    Skip(String),
}

/// What a process task tells the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// It became ready (or, without a ready strategy, was spawned).
    Up,
    /// It reached a final state on its own (stopped as configured, or failed).
    Ended,
    /// It exited and its strategy is `shutdown_everything`.
    ShutdownEverything,
    /// It was stopped on request (the coordinator checks whether everything has ended).
    Stopped,
}

/// The answer to a restart, sent once the new child is spawned (or could not be), or when dropped, so
/// that every path out of a restart answers its caller.
#[derive(Default)]
struct Reply(Option<oneshot::Sender<()>>);

impl Reply {
    fn to(tx: oneshot::Sender<()>) -> Reply {
        Reply(Some(tx))
    }

    fn send(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.send();
    }
}

/// How one run of the child ended.
enum RunEnd {
    Stopped(oneshot::Sender<()>),
    Restart(Reply),
    Exited {
        status: ExitStatus,
        uptime: Duration,
    },
    Failed(String),
    Orphaned,
}

/// The task that supervises one process.
pub(super) struct ProcessTask {
    pub index: usize,
    pub spec: Arc<ProcessSpec>,
    pub kill_timeout: Duration,
    pub extensions: Arc<dyn Extensions>,
    pub commands: mpsc::Receiver<Command>,
    pub events: mpsc::UnboundedSender<(usize, Event)>,
    pub status: watch::Sender<ProcessStatus>,
    pub logs: Arc<LogBuffer>,
    pub printer: Printer,
    pub guard: Option<Arc<Guard>>,
    pub bus: Bus,
}

/// Describes how a child ended: `status 3` or `signal 9 (SIGKILL)`.
pub fn describe_exit(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(sig)) => format!("signal {sig} ({})", signal_name(sig)),
        _ => "unknown exit".to_string(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

impl ProcessTask {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn set(&self, change: impl FnOnce(&mut ProcessStatus)) {
        let mut moved = None;
        self.status.send_modify(|s| {
            let from = s.state;
            change(s);
            if s.state != from {
                moved = Some((from, s.state, s.reason.clone()));
            }
        });
        if let Some((from, to, reason)) = moved {
            let reason = reason.filter(|_| to.is_final());
            self.bus.send(Notice::State {
                process: self.spec.name.clone(),
                from,
                to,
                reason,
            });
        }
    }

    fn notify(&self, notice: Notice) {
        self.bus.send(notice);
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send((self.index, event));
    }

    fn info(&self) -> ProcessInfo {
        let status = self.status.borrow();
        ProcessInfo {
            name: self.spec.name.clone(),
            pid: status.pid,
            path: self.spec.executable.display().to_string(),
            args: self.spec.args.clone(),
            working_directory: self.spec.working_directory.display().to_string(),
            restart_count: status.restarts,
        }
    }

    async fn hooks(&self, event: LifecycleEvent) {
        if self.spec.lifecycle_hooks.is_empty() {
            return;
        }
        let mut info = self.info();
        if let LifecycleEvent::OnShutdown { .. } = event {
            // The process is gone, but hooks want to know which one it was.
            info.pid = self.status.borrow().last_pid;
        }
        for hook in &self.spec.lifecycle_hooks {
            self.extensions.lifecycle(hook, event, &info).await;
        }
    }

    /// Runs until the coordinator drops its sender.
    pub async fn run(mut self) {
        while let Some(command) = self.commands.recv().await {
            match command {
                Command::Start => self.supervise(false, Reply::default()).await,
                Command::Restart(reply) => self.supervise(true, Reply::to(reply)).await,
                Command::Stop(reply) => {
                    if self.status.borrow().state == State::Pending {
                        self.set(|s| {
                            s.state = State::Stopped;
                            s.reason = Some("shut down before it started".into());
                        });
                    }
                    let _ = reply.send(());
                }
                Command::Skip(reason) => {
                    tracing::warn!("{}: skipped: {reason}", self.name());
                    self.set(|s| {
                        s.state = State::Skipped;
                        s.reason = Some(reason);
                    });
                    self.emit(Event::Ended);
                }
            }
        }
    }

    /// Runs the child, restarting it as configured, until it is stopped or fails; `reply` is answered
    /// once the first child is spawned.
    async fn supervise(&mut self, mut restarting: bool, mut reply: Reply) {
        let mut backoff = Backoff::new(self.spec.restart.clone());
        loop {
            let end = self.run_once(restarting, &mut reply).await;
            restarting = true;
            let (status, uptime) = match end {
                RunEnd::Stopped(reply) => {
                    let _ = reply.send(());
                    self.emit(Event::Stopped);
                    return;
                }
                RunEnd::Restart(next) => {
                    reply = next;
                    continue;
                }
                RunEnd::Failed(reason) => return self.give_up(reason),
                RunEnd::Orphaned => return,
                RunEnd::Exited { status, uptime } => (status, uptime),
            };
            let exit = describe_exit(&status);
            self.on_shutdown(Some(&status)).await;
            match self.spec.shutdown_strategy {
                ShutdownStrategy::DoNotRestart | ShutdownStrategy::ShutdownEverything => {
                    let everything =
                        self.spec.shutdown_strategy == ShutdownStrategy::ShutdownEverything;
                    let failed = !status.success();
                    tracing::info!(
                        "{}: exited with {exit} after {:.2} s; not restarting ({})",
                        self.name(),
                        uptime.as_secs_f64(),
                        self.spec.shutdown_strategy.as_str()
                    );
                    self.set(|s| {
                        s.state = if failed {
                            State::Failed
                        } else {
                            State::Stopped
                        };
                        s.reason = failed.then(|| format!("exited with {exit}"));
                    });
                    self.emit(if everything {
                        Event::ShutdownEverything
                    } else {
                        Event::Ended
                    });
                    return;
                }
                ShutdownStrategy::Restart => {}
            }
            match backoff.on_exit(std::time::Instant::now(), uptime, fastrand::f64()) {
                Decision::GiveUp { exits, window } => {
                    return self.give_up(format!(
                        "crash loop: {exits} exits within {} s (last: {exit}); giving up",
                        window.as_secs_f64()
                    ));
                }
                Decision::RestartAfter(delay) => {
                    self.notify(Notice::RestartScheduled {
                        process: self.spec.name.clone(),
                        delay_sec: delay.as_secs_f64(),
                        restarts: self.status.borrow().restarts,
                    });
                    tracing::info!(
                        "{}: exited with {exit} after {:.2} s; restarting in {:.3} s",
                        self.name(),
                        uptime.as_secs_f64(),
                        delay.as_secs_f64()
                    );
                    match self.back_off(delay).await {
                        Some(next) => reply = next,
                        None => return,
                    }
                }
            }
        }
    }

    /// Waits out a restart delay; returns the reply owed to a restart request that cut it short, or
    /// `None` if told to stop meanwhile.
    async fn back_off(&mut self, delay: Duration) -> Option<Reply> {
        if delay.is_zero() {
            // No timer: tokio's has millisecond ticks, which would delay an immediate restart by up to 1 ms.
            return Some(Reply::default());
        }
        self.set(|s| s.state = State::BackingOff);
        let wake = tokio::time::sleep(delay);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                () = &mut wake => return Some(Reply::default()),
                command = self.commands.recv() => match command {
                    Some(Command::Stop(reply)) => {
                        self.set(|s| { s.state = State::Stopped; s.reason = Some("stopped while backing off".into()); });
                        let _ = reply.send(());
                        return None;
                    }
                    Some(Command::Restart(reply)) => return Some(Reply::to(reply)),
                    Some(Command::Start | Command::Skip(_)) => {}
                    None => return None,
                },
            }
        }
    }

    fn give_up(&mut self, reason: String) {
        self.notify(Notice::GaveUp {
            process: self.spec.name.clone(),
            reason: reason.clone(),
        });
        self.fail(reason);
    }

    fn fail(&mut self, reason: String) {
        tracing::error!("{}: failed: {reason}", self.name());
        self.set(|s| {
            s.state = State::Failed;
            s.pid = None;
            s.reason = Some(reason);
        });
        self.emit(Event::Ended);
    }

    /// Spawns the child once and watches it until it exits, is stopped, or misses its ready deadline.
    /// `reply` is answered once the child is spawned (or when the caller drops it after a failure).
    async fn run_once(&mut self, restarting: bool, reply: &mut Reply) -> RunEnd {
        if restarting {
            self.set(|s| s.restarts += 1);
            self.hooks(LifecycleEvent::OnRestart).await;
        }
        self.set(|s| {
            s.state = State::Starting;
            s.reason = None;
        });
        self.hooks(LifecycleEvent::PreStart).await;
        let prepared = match self
            .spec
            .ready
            .as_ref()
            .map(|r| ready::prepare(&r.strategy))
            .transpose()
        {
            Ok(p) => p,
            Err(reason) => return RunEnd::Failed(reason),
        };
        let Spawned {
            mut child,
            pid,
            pgid,
        } = match pgroup::spawn(&self.spec) {
            Ok(spawned) => spawned,
            Err(e) => {
                return RunEnd::Failed(format!(
                    "cannot start `{}`: {e}",
                    self.spec.executable.display()
                ))
            }
        };
        let started = Instant::now();
        if let Some(guard) = &self.guard {
            guard.add(pgid);
        }
        let prefix = self.printer.prefix(self.index, self.name());
        let mut readers: Vec<JoinHandle<()>> = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(output::capture(
                out,
                Stream::Stdout,
                prefix.clone(),
                self.logs.clone(),
                self.printer.clone(),
            )));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(output::capture(
                err,
                Stream::Stderr,
                prefix,
                self.logs.clone(),
                self.printer.clone(),
            )));
        }
        self.set(|s| {
            s.pid = Some(pid);
            s.last_pid = Some(pid);
            s.started = Some(started.into_std());
        });
        tracing::info!("{}: started, pid {pid}", self.name());
        self.notify(Notice::Spawned {
            process: self.spec.name.clone(),
            pid,
        });
        reply.send();
        self.hooks(LifecycleEvent::PostStart).await;

        let why_not = Arc::new(std::sync::Mutex::new(String::new()));
        let mut readiness = match (self.spec.ready.clone(), prepared) {
            (Some(r), Some(prepared)) => {
                let wait = ReadyWait {
                    strategy: r.strategy,
                    prepared,
                    info: self.info(),
                    extensions: self.extensions.clone(),
                    why_not: why_not.clone(),
                };
                Some(Box::pin(tokio::time::timeout(r.timeout, ready::wait(wait))))
            }
            _ => {
                self.up(State::Running, started);
                None
            }
        };
        let mut drain: Option<JoinHandle<()>> = None;
        let end = loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Stop(reply)) => {
                        self.stop_child(&mut child, pgid).await;
                        self.set(|s| { s.state = State::Stopped; s.pid = None; s.reason = Some("stopped on request".into()); });
                        break RunEnd::Stopped(reply);
                    }
                    Some(Command::Restart(reply)) => {
                        tracing::info!("{}: restarting on request", self.name());
                        self.stop_child(&mut child, pgid).await;
                        break RunEnd::Restart(Reply::to(reply));
                    }
                    Some(Command::Start | Command::Skip(_)) => {}
                    None => {
                        self.stop_child(&mut child, pgid).await;
                        break RunEnd::Orphaned;
                    }
                },
                status = child.wait() => {
                    let uptime = started.elapsed();
                    // The leader is gone; anything it left in its group goes too.
                    if pgid.alive() {
                        pgroup::stop(&mut child, pgid, self.spec.timeout, self.kill_timeout).await;
                    }
                    match status {
                        Ok(status) => {
                            self.notify(Notice::Exited {
                                process: self.spec.name.clone(),
                                pid,
                                code: status.code(),
                                signal: status.signal(),
                                uptime_sec: uptime.as_secs_f64(),
                            });
                            self.set(|s| { s.pid = None; s.last_exit = Some(describe_exit(&status)); });
                            break RunEnd::Exited { status, uptime };
                        }
                        Err(e) => break RunEnd::Failed(format!("cannot wait for the child: {e}")),
                    }
                },
                result = async { readiness.as_mut().expect("guarded").await }, if readiness.is_some() => {
                    readiness = None;
                    match result {
                        Ok(Ok(pipe_reader)) => {
                            drain = pipe_reader;
                            self.up(State::Ready, started);
                        }
                        Ok(Err(reason)) => {
                            self.stop_child(&mut child, pgid).await;
                            break RunEnd::Failed(format!("not ready: {reason}"));
                        }
                        Err(_) => {
                            let timeout = self.spec.ready.as_ref().map_or(0.0, |r| r.timeout.as_secs_f64());
                            let why = why_not.lock().map(|w| w.clone()).unwrap_or_default();
                            let why = if why.is_empty() { String::new() } else { format!(" ({why})") };
                            tracing::warn!("{}: not ready after {timeout:.1} s{why}; stopping it", self.name());
                            self.stop_child(&mut child, pgid).await;
                            break RunEnd::Failed(format!("not ready after {timeout:.1} s{why}"));
                        }
                    }
                },
            }
        };
        drop(readiness);
        if let Some(drain) = drain {
            drain.abort();
        }
        if let Some(guard) = &self.guard {
            if !pgid.alive() {
                guard.remove(pgid);
            }
        }
        end
    }

    fn up(&mut self, state: State, started: Instant) {
        if let Some(pid) = self.status.borrow().pid {
            self.notify(Notice::Ready {
                process: self.spec.name.clone(),
                pid,
                after_ms: started.elapsed().as_secs_f64() * 1000.0,
            });
        }
        if state == State::Ready {
            tracing::info!(
                "{}: ready after {:.1} ms",
                self.name(),
                started.elapsed().as_secs_f64() * 1000.0
            );
        }
        self.set(|s| s.state = state);
        self.emit(Event::Up);
    }

    /// Calls the `on_shutdown` hooks for a child that ended with `status` (`None`: not reaped).
    async fn on_shutdown(&self, status: Option<&ExitStatus>) {
        self.hooks(LifecycleEvent::OnShutdown {
            exit_code: status.and_then(ExitStatus::code),
            signal: status.and_then(ExitStatus::signal),
        })
        .await;
    }

    /// Stops the child's group and calls the `on_shutdown` hooks: every child that ends gets them once.
    async fn stop_child(&mut self, child: &mut tokio::process::Child, pgid: pgroup::Pgid) {
        self.set(|s| s.state = State::Stopping);
        let report = pgroup::stop(child, pgid, self.spec.timeout, self.kill_timeout).await;
        let uptime = self
            .status
            .borrow()
            .started
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        self.notify(Notice::Exited {
            process: self.spec.name.clone(),
            pid: pgid.get() as u32,
            code: report.status.as_ref().and_then(ExitStatus::code),
            signal: report.status.as_ref().and_then(ExitStatus::signal),
            uptime_sec: uptime,
        });
        let how = report
            .status
            .as_ref()
            .map_or("no exit status".to_string(), describe_exit);
        if report.killed {
            tracing::warn!(
                "{}: did not stop within {:.1} s of SIGTERM; killed ({how})",
                self.name(),
                self.spec.timeout.as_secs_f64()
            );
        } else {
            tracing::info!("{}: stopped ({how})", self.name());
        }
        if report.leftovers {
            tracing::error!(
                "{}: processes of group {} survived SIGKILL for {:.1} s",
                self.name(),
                pgid.get(),
                self.kill_timeout.as_secs_f64()
            );
        }
        self.set(|s| {
            s.pid = None;
            s.last_exit = Some(how);
        });
        self.on_shutdown(report.status.as_ref()).await;
    }
}
