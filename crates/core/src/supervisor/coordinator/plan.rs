//! Stopping a set of processes in order (each once its dependents are down, independent ones in
//! parallel): the final stop, and the stops a reload needs before it applies the new manifest. What a
//! reload changes is [`diff`], a pure function of the two manifests.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Core, Effect, Sweep};
use crate::graph::DepGraph;
use crate::manifest::{Manifest, ProcessSpec};
use crate::supervisor::events::Event;
use crate::supervisor::state::Phase;
use crate::supervisor::table::{Entry, Then, Ticket};
use crate::supervisor::{ControlError, Outcome, ReloadReport};

/// Processes to stop, dependents first; the stop is asked with `reason`.
pub(super) struct Plan {
    members: BTreeSet<Arc<str>>,
    reason: String,
}

/// A reload waiting for its stops, then applied.
pub(super) struct Reload {
    plan: Plan,
    manifest: Manifest,
    report: ReloadReport,
    /// Members that were running or about to, which start again with their new spec.
    was_active: BTreeSet<Arc<str>>,
    ticket: Ticket,
}

/// What a reload from the processes `old` (in manifest order) to `new` changes: removed and changed
/// processes, the processes that depend on a changed one (directly or not, by `new`'s dependencies),
/// which restart with it, the added ones and the rest. Each list is in its manifest's order.
pub(in crate::supervisor) fn diff<'a>(
    old: impl IntoIterator<Item = &'a ProcessSpec>,
    new: &Manifest,
) -> ReloadReport {
    let old: Vec<&ProcessSpec> = old.into_iter().collect();
    let before: HashMap<&str, &ProcessSpec> = old.iter().map(|p| (p.name.as_str(), *p)).collect();
    let mut report = ReloadReport::default();
    for p in &old {
        match new.process(&p.name) {
            None => report.removed.push(p.name.clone()),
            Some(spec) if spec != *p => report.changed.push(p.name.clone()),
            Some(_) => {}
        }
    }
    let graph = DepGraph::new(
        new.processes
            .iter()
            .map(|p| (p.name.as_str(), &p.dependencies)),
    );
    for n in graph.dependents_of_all(report.changed.iter().map(String::as_str)) {
        if before.contains_key(&*n) && !report.changed.iter().any(|c| **c == *n) {
            report.restarted.push(n.to_string());
        }
    }
    for p in &new.processes {
        if !before.contains_key(p.name.as_str()) {
            report.added.push(p.name.clone());
        } else if !report.changed.contains(&p.name) && !report.restarted.contains(&p.name) {
            report.unchanged.push(p.name.clone());
        }
    }
    report
}

/// Returns the processes a reload of `report` stops before it applies the new manifest.
fn stopped(report: &ReloadReport) -> impl Iterator<Item = &str> {
    let r = report;
    r.removed
        .iter()
        .chain(&r.changed)
        .chain(&r.restarted)
        .map(String::as_str)
}

impl Core {
    /// Begins the final stop: nothing starts from now on; every process stops, dependents first.
    pub(super) fn begin_closing(&mut self) {
        if self.closing.is_some() {
            return;
        }
        tracing::info!("shutting down: stopping every process, dependents first");
        self.publish(Event::ShuttingDown);
        if let Some(reload) = self.reload.take() {
            self.refuse_reload(reload.ticket);
        }
        for (_, ticket) in std::mem::take(&mut self.next_reloads) {
            self.refuse_reload(ticket);
        }
        let names = self.table.order.clone();
        for name in &names {
            self.table.entry(name).held = true;
            let reason = match self.table.entries[name].phase {
                Phase::Pending => Some("shut down before it started"),
                Phase::BackingOff { .. } => Some("stopped while backing off"),
                _ => None,
            };
            if let Some(reason) = reason {
                let reason = Some(reason.into());
                self.set(name, Phase::Stopped { reason });
            }
            self.answer_all(name, Err(ControlError::ShuttingDown));
        }
        self.closing = Some(Plan {
            members: names.into_iter().collect(),
            reason: "stopped on request".into(),
        });
    }

    fn refuse_reload(&mut self, ticket: Ticket) {
        let result = Err(ControlError::ShuttingDown);
        self.out.push(Effect::Reloaded { ticket, result });
    }

    /// Asks for the stops a plan can make now; returns whether every member is down.
    fn advance(&mut self, now: Instant, plan: &mut Plan) -> bool {
        let live = |e: &Entry| e.phase.is_live();
        plan.members
            .retain(|m| self.table.entries.get(m).is_some_and(live));
        let ready: Vec<Arc<str>> = plan
            .members
            .iter()
            .filter(|m| {
                let e = &self.table.entries[*m];
                !matches!(e.phase, Phase::Stopping { .. })
                    && self
                        .table
                        .dependents_of(m)
                        .iter()
                        .all(|d| !self.table.entries.get(d).is_some_and(live))
            })
            .cloned()
            .collect();
        for m in ready {
            self.request_stop(now, &m, Then::Stay(Some(plan.reason.clone())));
        }
        plan.members.is_empty()
    }

    /// Moves the final stop and a reload on; ends the supervision once the final stop is done.
    pub(super) fn advance_plans(&mut self, now: Instant) {
        if let Some(mut plan) = self.closing.take() {
            let done = self.advance(now, &mut plan);
            self.closing = Some(plan);
            if done && !self.finished {
                self.finish(now);
            }
            return;
        }
        // Reloads in turn: the next one begins as soon as one is applied.
        loop {
            if self.reload.is_none() {
                let Some((manifest, ticket)) = self.next_reloads.pop_front() else {
                    return;
                };
                self.begin_reload(manifest, ticket);
            }
            let Some(mut reload) = self.reload.take() else {
                return;
            };
            if !self.advance(now, &mut reload.plan) {
                self.reload = Some(reload);
                return;
            }
            self.apply(now, reload);
        }
    }

    /// Everything is down: the shell sweeps adopted descendants nobody claimed and reports the
    /// outcome once the hooks ran.
    fn finish(&mut self, now: Instant) {
        self.finished = true;
        self.version += 1;
        let sweep = self.settings.adopt.then(|| {
            let graces: Vec<(String, Duration)> = self
                .manifest
                .processes
                .iter()
                .map(|p| (p.name.clone(), p.timeout))
                .collect();
            Sweep {
                default_grace: graces.iter().map(|g| g.1).max().unwrap_or_default(),
                graces,
                kill_timeout: self.manifest.kill_timeout,
            }
        });
        let outcome = Outcome {
            statuses: self.statuses(now),
        };
        self.out.push(Effect::Finish { outcome, sweep });
    }

    /// Starts a reload of `manifest`: stops removed and changed processes (and the dependents of
    /// changed ones), dependents first; [`Core::apply`] does the rest.
    fn begin_reload(&mut self, manifest: Manifest, ticket: Ticket) {
        let old = self
            .table
            .order
            .iter()
            .map(|n| &*self.table.entries[n].spec);
        let report = diff(old, &manifest);
        let members: BTreeSet<Arc<str>> = stopped(&report)
            .filter_map(|n| self.table.entries.get_key_value(n).map(|(k, _)| k.clone()))
            .collect();
        let mut was_active = BTreeSet::new();
        for m in &members {
            let entry = self.table.entry(m);
            entry.held = true;
            if !entry.phase.state().is_final() {
                was_active.insert(m.clone());
            }
            if matches!(entry.phase, Phase::BackingOff { .. }) {
                let reason = Some("reloading".into());
                self.set(m, Phase::Stopped { reason });
            }
        }
        tracing::info!(
            "reloading `{}`: {} added, {} removed, {} changed, {} restarted with them, {} unchanged",
            manifest.source.display(),
            report.added.len(),
            report.removed.len(),
            report.changed.len(),
            report.restarted.len(),
            report.unchanged.len()
        );
        self.reload = Some(Reload {
            plan: Plan {
                members,
                reason: "reloading".into(),
            },
            manifest,
            report,
            was_active,
            ticket,
        });
    }

    /// The stops of a reload are done: put the new manifest in effect and start what should run.
    fn apply(&mut self, now: Instant, reload: Reload) {
        let Reload {
            manifest,
            report,
            was_active,
            ticket,
            ..
        } = reload;
        for name in &report.removed {
            if let Some((key, _)) = self.table.entries.get_key_value(name.as_str()) {
                let key = key.clone();
                self.answer_all(
                    &key,
                    Err(ControlError::UnknownProcess {
                        name: name.clone(),
                        known: "(removed by a reload)".into(),
                    }),
                );
                self.table.entries.remove(&key);
                self.out.push(Effect::Forget(key));
            }
        }
        let mut colour = self
            .table
            .entries
            .values()
            .map(|e| e.colour + 1)
            .max()
            .unwrap_or(0);
        for spec in &manifest.processes {
            let spec_arc = Arc::new(spec.clone());
            match self.table.entries.get_mut(spec.name.as_str()) {
                Some(entry) => {
                    let name = entry.name.clone();
                    if entry.held {
                        entry.held = false;
                        entry.respec(spec_arc);
                        if was_active.contains(&name) {
                            self.set(&name, Phase::Pending);
                        }
                    }
                }
                None => {
                    let entry = Entry::new(spec_arc, colour);
                    colour += 1;
                    self.table.entries.insert(entry.name.clone(), entry);
                }
            }
        }
        self.manifest = Arc::new(manifest);
        self.version += 1;
        self.table.reindex(&self.manifest);
        let width = self.table.order.iter().map(|n| n.len()).max().unwrap_or(0);
        self.out.push(Effect::Width(width));
        let all = self.table.order.clone();
        self.kick(now, &all);
        self.publish(Event::Reloaded {
            added: report.added.clone(),
            removed: report.removed.clone(),
            changed: report.changed.clone(),
        });
        let result = Ok(report);
        self.out.push(Effect::Reloaded { ticket, result });
    }
}
