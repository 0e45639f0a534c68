//! The requests handles send to the coordinator, and how each is carried out.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::Coordinator;
use crate::extension::ProcessStats;
use crate::manifest::Manifest;
use crate::supervisor::events::Event;
use crate::supervisor::orphans::Orphan;
use crate::supervisor::output::LogBuffer;
use crate::supervisor::pgroup::Pgid;
use crate::supervisor::state::{unix_time, Phase, ProcessStatus};
use crate::supervisor::table::{Reply, Sample, Then, Until};
use crate::supervisor::{ControlError, ProcessDetail, ReloadReport};

/// Answered once a request took effect.
pub(in crate::supervisor) type Waiter = oneshot::Receiver<Result<(), ControlError>>;
/// The answer to a reload.
pub(in crate::supervisor) type ReloadReply = oneshot::Sender<Result<ReloadReport, ControlError>>;
type Answer<T> = oneshot::Sender<Result<T, ControlError>>;

/// The coordinator's answer to the sampler, each interval.
pub(in crate::supervisor) enum Targets {
    /// Everything is over: the sampler ends.
    Over,
    /// Nothing changed since the version the sampler asked with.
    Unchanged,
    /// What to sample now.
    Now(Sampling),
}

/// What the resource sampler needs to know.
pub(in crate::supervisor) struct Sampling {
    /// Changes whenever the rest may have.
    pub version: u64,
    pub interval: Duration,
    /// Name and live pid of every process.
    pub pids: Vec<(Arc<str>, Option<u32>)>,
    /// Each stat handler with the processes that name it.
    pub handlers: Vec<(String, Vec<String>)>,
}

/// One process's reading, of the child with `pid`.
pub(in crate::supervisor) type Reading = (Arc<str>, u32, crate::supervisor::procstat::Reading);

/// A request from a handle.
pub(in crate::supervisor) enum Request {
    Status(oneshot::Sender<Vec<ProcessStatus>>),
    Process(String, Answer<ProcessDetail>),
    Start(String, Until, Answer<Waiter>),
    Stop(String, Answer<Waiter>),
    Restart(Vec<String>, Until, Answer<Vec<Waiter>>),
    Logs(String, Answer<Arc<LogBuffer>>),
    Manifest(oneshot::Sender<Arc<Manifest>>),
    Reload(Box<Manifest>, ReloadReply),
    Shutdown,
    KillAll,
    Stats(oneshot::Sender<Vec<ProcessStats>>),
    /// For the sampler, which has the targets of the version given (if any).
    Targets(Option<u64>, oneshot::Sender<Targets>),
    /// The readings that changed since the last sample, and the adopted descendants if they changed.
    Sampled(
        Vec<Reading>,
        Option<Vec<Orphan>>,
        /// The stats of every process after the sample, for the stat handlers (when there are).
        Option<oneshot::Sender<Vec<ProcessStats>>>,
    ),
}

fn waiter() -> (Reply, Waiter) {
    oneshot::channel()
}

impl Coordinator {
    pub(super) fn request(&mut self, request: Request) {
        match request {
            Request::Status(reply) => {
                let _ = reply.send(self.statuses());
            }
            Request::Process(name, reply) => {
                let detail = self.table.get(&name).map(|e| ProcessDetail {
                    spec: e.spec.clone(),
                    status: self.status(e.name.clone()),
                });
                let _ = reply.send(detail);
            }
            Request::Start(name, until, reply) => {
                let _ = reply.send(self.start(&name, until));
            }
            Request::Stop(name, reply) => {
                let _ = reply.send(self.stop(&name));
            }
            Request::Restart(names, until, reply) => {
                let _ = reply.send(self.restart(&names, until));
            }
            Request::Logs(name, reply) => {
                let _ = reply.send(self.table.get(&name).map(|e| e.logs.clone()));
            }
            Request::Manifest(reply) => {
                let _ = reply.send(self.manifest.clone());
            }
            Request::Reload(manifest, reply) => {
                if self.closing.is_some() {
                    let _ = reply.send(Err(ControlError::ShuttingDown));
                } else if self.reload.is_some() {
                    self.next_reloads.push_back((*manifest, reply));
                } else {
                    self.begin_reload(*manifest, reply);
                }
            }
            Request::Shutdown => self.begin_closing(),
            Request::KillAll => self.kill_all(),
            Request::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Request::Targets(seen, reply) => {
                let _ = reply.send(self.targets(seen));
            }
            Request::Sampled(readings, orphans, reply) => {
                self.sampled(readings, orphans);
                if let Some(reply) = reply {
                    let _ = reply.send(self.stats());
                }
            }
        }
    }

    fn start(&mut self, name: &str, until: Until) -> Result<Waiter, ControlError> {
        let entry = self.table.get(name)?;
        if self.closing.is_some() {
            return Err(ControlError::ShuttingDown);
        }
        let (reply, waiter) = waiter();
        let entry_name = entry.name.clone();
        match entry.phase.clone() {
            Phase::Up { .. } => {
                let _ = reply.send(Ok(()));
            }
            Phase::Starting { pid, .. } => {
                let entry = self.table.entry(name);
                match (pid, until) {
                    (Some(_), Until::Spawned) => {
                        let _ = reply.send(Ok(()));
                    }
                    (Some(_), Until::Ready) => entry.on_ready.push(reply),
                    (None, _) => entry.on_spawn.push((until, reply)),
                }
            }
            Phase::Stopping { .. } => {
                let entry = self.table.entry(name);
                if entry.then == (Then::Start { restarting: true }) {
                    entry.on_spawn.push((until, reply));
                } else {
                    entry.then = Then::Start { restarting: false };
                    entry.on_spawn.push((until, reply));
                }
            }
            Phase::BackingOff { .. } => {
                self.table.entry(name).on_spawn.push((until, reply));
                self.start_run(&entry_name, true);
            }
            Phase::Pending
            | Phase::Stopped { .. }
            | Phase::Failed { .. }
            | Phase::Skipped { .. } => {
                self.table.dependencies_up(name)?;
                self.table.entry(name).on_spawn.push((until, reply));
                self.start_run(&entry_name, false);
            }
        }
        Ok(waiter)
    }

    fn stop(&mut self, name: &str) -> Result<Waiter, ControlError> {
        let entry_name = self.table.get(name)?.name.clone();
        let (reply, waiter) = waiter();
        let entry = self.table.entry(name);
        match &entry.phase {
            Phase::Starting { .. } | Phase::Up { .. } => {
                entry.on_down.push(reply);
                self.request_stop(&entry_name, Then::Stay("stopped on request".into()));
            }
            Phase::Stopping { .. } => {
                entry.on_down.push(reply);
                entry.then = Then::Stay("stopped on request".into());
            }
            Phase::Pending | Phase::BackingOff { .. } => {
                let reason = if entry.phase == Phase::Pending {
                    "stopped before it started"
                } else {
                    "stopped while backing off"
                };
                entry.gen += 1;
                entry.answer_all(Err(ControlError::Failed {
                    name: name.to_string(),
                    reason: reason.into(),
                }));
                self.set(
                    &entry_name,
                    Phase::Stopped {
                        reason: Some(reason.into()),
                    },
                );
                let _ = reply.send(Ok(()));
            }
            Phase::Stopped { .. } | Phase::Failed { .. } | Phase::Skipped { .. } => {
                let _ = reply.send(Ok(()));
            }
        }
        Ok(waiter)
    }

    /// Restarts every named process (starts those not running); checks every name first, so an
    /// unknown name or a dependency that is down changes nothing.
    fn restart(&mut self, names: &[String], until: Until) -> Result<Vec<Waiter>, ControlError> {
        for name in names {
            self.table.get(name)?;
        }
        if self.closing.is_some() {
            return Err(ControlError::ShuttingDown);
        }
        for name in names {
            if !self.table.get(name)?.phase.is_live() {
                self.table.dependencies_up(name)?;
            }
        }
        let mut waiters = Vec::with_capacity(names.len());
        for name in names {
            let (reply, waiter) = waiter();
            waiters.push(waiter);
            let entry = self.table.entry(name);
            let entry_name = entry.name.clone();
            entry.on_spawn.push((until, reply));
            match &entry.phase {
                Phase::Starting { .. } | Phase::Up { .. } => {
                    tracing::info!("{name}: restarting on request");
                    self.request_stop(&entry_name, Then::Start { restarting: true });
                }
                Phase::Stopping { .. } => entry.then = Then::Start { restarting: true },
                _ => self.start_run(&entry_name, true),
            }
        }
        Ok(waiters)
    }

    fn kill_all(&mut self) {
        for entry in self.table.entries.values() {
            if let Some(pid) = entry.phase.pid() {
                let _ = Pgid::of_child(pid).signal(nix::sys::signal::Signal::SIGKILL);
            }
            for &pid in &entry.adopted {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// Returns the snapshot of `name`.
    pub(super) fn status(&self, name: Arc<str>) -> ProcessStatus {
        let e = &self.table.entries[&name];
        let state = e.phase.state();
        let started = match e.phase {
            Phase::Up { since, .. } => Some(since),
            Phase::Starting { pid: Some(_), .. } | Phase::Stopping { pid: Some(_), .. } => {
                e.spawned_at
            }
            _ => None,
        };
        let sample = e
            .sample
            .filter(|s| s.pid.is_some() && s.pid == e.phase.pid());
        ProcessStatus {
            name: name.to_string(),
            state,
            ready: state.is_up(),
            pid: e.phase.pid(),
            restarts: e.restarts,
            last_pid: e.last_pid,
            started,
            start_time: started.map(unix_time),
            uptime_sec: started.map_or(0.0, |t| t.elapsed().as_secs_f64()),
            last_exit: e.last_exit.clone(),
            reason: e.phase.reason().map(str::to_string),
            retry_in_sec: match e.phase {
                Phase::BackingOff { until } => Some(
                    until
                        .saturating_duration_since(std::time::Instant::now())
                        .as_secs_f64(),
                ),
                _ => None,
            },
            dependencies: e.spec.dependencies.clone(),
            cpu_percent: sample.map_or(0.0, |s| s.cpu_percent),
            rss_bytes: sample.map_or(0, |s| s.rss_bytes),
            cpu_seconds_total: sample.map_or(0.0, |s| s.cpu_seconds),
            adopted: e.adopted.clone(),
        }
    }

    /// Returns the snapshot of every process, in manifest order.
    pub(super) fn statuses(&self) -> Vec<ProcessStatus> {
        self.table
            .order
            .iter()
            .map(|n| self.status(n.clone()))
            .collect()
    }

    fn stats(&self) -> Vec<ProcessStats> {
        self.table
            .order
            .iter()
            .filter_map(|n| {
                let e = &self.table.entries[n];
                let s = e.sample.or(self.sampled_once.then(Sample::default))?;
                let live = s.pid.is_some() && s.pid == e.phase.pid();
                Some(ProcessStats {
                    name: n.to_string(),
                    pid: e.phase.pid(),
                    cpu_percent: if live { s.cpu_percent } else { 0.0 },
                    max_cpu_percent: s.max_cpu_percent,
                    rss_bytes: if live { s.rss_bytes } else { 0 },
                    max_rss_bytes: s.max_rss_bytes,
                    restarts: e.restarts,
                    uptime_sec: self.status(n.clone()).uptime_sec,
                })
            })
            .collect()
    }

    fn targets(&self, seen: Option<u64>) -> Targets {
        if self.done.is_none() {
            return Targets::Over;
        }
        let version = self.targets_version.load(Ordering::Acquire);
        if seen == Some(version) {
            return Targets::Unchanged;
        }
        let mut handlers: Vec<(String, Vec<String>)> = Vec::new();
        for name in &self.table.order {
            for h in &self.table.entries[name].spec.stat_handlers {
                match handlers.iter_mut().find(|(n, _)| n == h) {
                    Some((_, names)) => names.push(name.to_string()),
                    None => handlers.push((h.clone(), vec![name.to_string()])),
                }
            }
        }
        Targets::Now(Sampling {
            version,
            interval: self.manifest.stats_interval,
            pids: self
                .table
                .order
                .iter()
                .map(|n| (n.clone(), self.table.entries[n].phase.pid()))
                .collect(),
            handlers,
        })
    }

    fn sampled(&mut self, readings: Vec<Reading>, orphans: Option<Vec<Orphan>>) {
        self.sampled_once = true;
        for (name, pid, reading) in readings {
            let (cpu, rss, secs) = (reading.cpu_percent, reading.rss_bytes, reading.cpu_seconds);
            let Some(entry) = self.table.entries.get_mut(&name) else {
                continue;
            };
            if entry.phase.pid() != Some(pid) {
                continue;
            }
            let old = entry.sample.unwrap_or_default();
            entry.sample = Some(Sample {
                pid: Some(pid),
                cpu_percent: cpu,
                rss_bytes: rss,
                cpu_seconds: secs,
                max_cpu_percent: old.max_cpu_percent.max(cpu),
                max_rss_bytes: old.max_rss_bytes.max(rss),
            });
        }
        if let Some(orphans) = orphans {
            self.adopted(orphans);
        }
    }

    /// Records the adopted descendants found by a scan: shown in status, guarded, announced once.
    fn adopted(&mut self, found: Vec<Orphan>) {
        for entry in self.table.entries.values_mut() {
            entry.adopted.clear();
        }
        self.unowned.clear();
        let mut current = std::collections::HashSet::new();
        for o in found {
            current.insert(o.pid);
            if self.seen_orphans.insert(o.pid) {
                let from = o.process.as_deref().unwrap_or("an unknown process");
                tracing::info!(
                    "adopted pid {} (from `{from}`), which left its process group",
                    o.pid
                );
                self.ctx.bus.send(Event::Adopted {
                    process: o.process.clone(),
                    pid: o.pid,
                });
                if let Some(guard) = &self.ctx.guard {
                    guard.add(Pgid::of_child(o.pgid as u32));
                }
            }
            match o
                .process
                .as_deref()
                .and_then(|p| self.table.entries.get_mut(p))
            {
                Some(entry) => entry.adopted.push(o.pid),
                None => self.unowned.push(o.pid),
            }
        }
        self.seen_orphans.retain(|pid| current.contains(pid));
    }
}
