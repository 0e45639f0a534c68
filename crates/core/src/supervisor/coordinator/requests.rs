//! The control requests the coordinator carries out (start, stop, restart, kill), the snapshots it
//! answers with (status, stats, the sampler's targets), and what it makes of a resource sample.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Core, Effect};
use crate::extension::ProcessStats;
use crate::supervisor::events::Event;
use crate::supervisor::orphans::Orphan;
use crate::supervisor::state::{unix_time, Phase, ProcessStatus};
use crate::supervisor::table::{Entry, Sample, Then, Ticket, Until};
use crate::supervisor::{ControlError, ProcessDetail};

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

/// Refuses to start a process a reload holds: the reload starts it with its new settings.
fn refuse_held(entry: &Entry) -> Result<(), ControlError> {
    match entry.held {
        true => Err(ControlError::Reloading {
            name: entry.name.to_string(),
        }),
        false => Ok(()),
    }
}

impl Core {
    pub(super) fn start(
        &mut self,
        now: Instant,
        name: &str,
        until: Until,
        ticket: Ticket,
    ) -> Result<(), ControlError> {
        let entry = self.table.get(name)?;
        if self.closing.is_some() {
            return Err(ControlError::ShuttingDown);
        }
        refuse_held(entry)?;
        let entry_name = entry.name.clone();
        match entry.phase.clone() {
            Phase::Up { .. } => self.answer(ticket, Ok(())),
            Phase::Starting { pid, .. } => match (pid, until) {
                (Some(_), Until::Spawned) => self.answer(ticket, Ok(())),
                (Some(_), Until::Ready) => self.table.entry(name).on_ready.push(ticket),
                (None, _) => self.table.entry(name).on_spawn.push((until, ticket)),
            },
            Phase::Stopping { .. } => {
                let entry = self.table.entry(name);
                if entry.then != (Then::Start { restarting: true }) {
                    entry.then = Then::Start { restarting: false };
                }
                entry.on_spawn.push((until, ticket));
            }
            Phase::BackingOff { .. } => {
                self.table.entry(name).on_spawn.push((until, ticket));
                self.start_run(now, &entry_name, true);
            }
            Phase::Pending
            | Phase::Stopped { .. }
            | Phase::Failed { .. }
            | Phase::Skipped { .. } => {
                self.table.dependencies_up(name)?;
                self.table.entry(name).on_spawn.push((until, ticket));
                self.start_run(now, &entry_name, false);
            }
        }
        Ok(())
    }

    pub(super) fn stop(
        &mut self,
        now: Instant,
        name: &str,
        ticket: Ticket,
    ) -> Result<(), ControlError> {
        let entry_name = self.table.get(name)?.name.clone();
        let on_request = || Then::Stay(Some("stopped on request".into()));
        let entry = self.table.entry(name);
        match &entry.phase {
            Phase::Starting { .. } | Phase::Up { .. } => {
                entry.on_down.push(ticket);
                self.request_stop(now, &entry_name, on_request());
            }
            Phase::Stopping { .. } => {
                entry.on_down.push(ticket);
                entry.then = on_request();
            }
            Phase::Pending | Phase::BackingOff { .. } => {
                let reason = if entry.phase == Phase::Pending {
                    "stopped before it started"
                } else {
                    "stopped while backing off"
                };
                entry.gen += 1;
                self.answer_all(
                    name,
                    Err(ControlError::Failed {
                        name: name.to_string(),
                        reason: reason.into(),
                    }),
                );
                let reason = Some(reason.into());
                self.set(&entry_name, Phase::Stopped { reason });
                self.answer(ticket, Ok(()));
            }
            Phase::Stopped { .. } | Phase::Failed { .. } | Phase::Skipped { .. } => {
                self.answer(ticket, Ok(()));
            }
        }
        Ok(())
    }

    /// Restarts every named process (starts those not running); checks every name first, so an
    /// unknown name or a dependency that is down changes nothing. `tickets` go with `names`.
    pub(super) fn restart(
        &mut self,
        now: Instant,
        names: &[String],
        until: Until,
        tickets: &[Ticket],
    ) -> Result<(), ControlError> {
        assert_eq!(names.len(), tickets.len(), "a ticket per name");
        for name in names {
            self.table.get(name)?;
        }
        if self.closing.is_some() {
            return Err(ControlError::ShuttingDown);
        }
        for name in names {
            refuse_held(self.table.get(name)?)?;
        }
        for name in names {
            if !self.table.get(name)?.phase.is_live() {
                self.table.dependencies_up(name)?;
            }
        }
        for (name, &ticket) in names.iter().zip(tickets) {
            let entry = self.table.entry(name);
            let entry_name = entry.name.clone();
            entry.on_spawn.push((until, ticket));
            match &entry.phase {
                Phase::Starting { .. } | Phase::Up { .. } => {
                    tracing::info!("{name}: restarting on request");
                    self.request_stop(now, &entry_name, Then::Start { restarting: true });
                }
                Phase::Stopping { .. } => entry.then = Then::Start { restarting: true },
                _ => self.start_run(now, &entry_name, true),
            }
        }
        Ok(())
    }

    pub(super) fn kill_all(&mut self) {
        let mut groups = Vec::new();
        let mut pids = Vec::new();
        for name in &self.table.order {
            let entry = &self.table.entries[name];
            groups.extend(entry.phase.pid());
            pids.extend(&entry.adopted);
        }
        self.out.push(Effect::Kill { groups, pids });
    }

    /// Returns one process's status and settings at `now`.
    pub fn detail(&self, now: Instant, name: &str) -> Result<ProcessDetail, ControlError> {
        let e = self.table.get(name)?;
        Ok(ProcessDetail {
            spec: e.spec.clone(),
            status: self.status(now, &e.name),
        })
    }

    /// Returns the snapshot of `name` at `now`.
    pub(super) fn status(&self, now: Instant, name: &Arc<str>) -> ProcessStatus {
        let e = &self.table.entries[name];
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
            uptime_sec: started.map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64()),
            last_exit: e.last_exit.clone(),
            reason: e.phase.reason().map(str::to_string),
            retry_in_sec: match e.phase {
                Phase::BackingOff { until } => {
                    Some(until.saturating_duration_since(now).as_secs_f64())
                }
                _ => None,
            },
            dependencies: e.spec.dependencies.clone(),
            cpu_percent: sample.map_or(0.0, |s| s.cpu_percent),
            rss_bytes: sample.map_or(0, |s| s.rss_bytes),
            cpu_seconds_total: sample.map_or(0.0, |s| s.cpu_seconds),
            adopted: e.adopted.clone(),
        }
    }

    /// Returns the latest resource sample of every process at `now`, in manifest order (none before
    /// the first sample).
    pub fn stats(&self, now: Instant) -> Vec<ProcessStats> {
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
                    uptime_sec: self.status(now, n).uptime_sec,
                })
            })
            .collect()
    }

    /// Returns what the sampler should read, unless it has the targets of version `seen`.
    pub fn targets(&self, seen: Option<u64>) -> Targets {
        if self.finished {
            return Targets::Over;
        }
        let version = self.version;
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

    pub(super) fn sampled(&mut self, readings: Vec<Reading>, orphans: Option<Vec<Orphan>>) {
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
                self.publish(Event::Adopted {
                    process: o.process.clone(),
                    pid: o.pid,
                });
                self.out.push(Effect::Guard {
                    pgid: o.pgid as u32,
                });
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
