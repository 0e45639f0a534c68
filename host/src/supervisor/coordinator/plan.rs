//! Stopping a set of processes in order (each once its dependents are down, independent ones in
//! parallel): the final stop, and the stops a reload needs before it applies the new manifest.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::Coordinator;
use crate::manifest::Manifest;
use crate::supervisor::events::Event;
use crate::supervisor::orphans;
use crate::supervisor::state::Phase;
use crate::supervisor::table::{Entry, Then};
use crate::supervisor::{ControlError, Outcome, ReloadReport};

/// Processes to stop, dependents first; the stop is asked with `reason`.
pub(in crate::supervisor) struct Plan {
    members: BTreeSet<Arc<str>>,
    reason: String,
}

/// A reload waiting for its stops, then applied.
pub(in crate::supervisor) struct Reload {
    pub plan: Plan,
    pub manifest: Manifest,
    pub report: ReloadReport,
    /// Members that were running or about to, which start again with their new spec.
    pub was_active: BTreeSet<Arc<str>>,
    pub reply: oneshot::Sender<Result<ReloadReport, ControlError>>,
}

impl Coordinator {
    /// Begins the final stop: nothing starts from now on; every process stops, dependents first.
    pub fn begin_closing(&mut self) {
        if self.closing.is_some() {
            return;
        }
        tracing::info!("shutting down: stopping every process, dependents first");
        self.ctx.bus.send(Event::ShuttingDown);
        if let Some(reload) = self.reload.take() {
            let _ = reload.reply.send(Err(ControlError::ShuttingDown));
        }
        for (_, reply) in self.next_reloads.drain(..) {
            let _ = reply.send(Err(ControlError::ShuttingDown));
        }
        let names = self.table.order.clone();
        for name in &names {
            self.table.entry(name).held = true;
            match self.table.entries[name].phase {
                Phase::Pending => {
                    let reason = Some("shut down before it started".into());
                    self.set(name, Phase::Stopped { reason });
                }
                Phase::BackingOff { .. } => {
                    let reason = Some("stopped while backing off".into());
                    self.set(name, Phase::Stopped { reason });
                }
                _ => {}
            }
            self.table
                .entry(name)
                .answer_all(Err(ControlError::ShuttingDown));
        }
        self.closing = Some(Plan {
            members: names.into_iter().collect(),
            reason: "stopped on request".into(),
        });
    }

    /// Asks for the stops a plan can make now; returns whether every member is down.
    fn advance(&mut self, plan: &mut Plan) -> bool {
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
            self.request_stop(&m, Then::Stay(plan.reason.clone()));
        }
        plan.members.is_empty()
    }

    /// Moves the final stop and a reload on; ends the supervision once the final stop is done.
    pub async fn advance_plans(&mut self) {
        if let Some(mut plan) = self.closing.take() {
            let done = self.advance(&mut plan);
            self.closing = Some(plan);
            if done && self.done.is_some() {
                self.finish().await;
            }
            return;
        }
        if self.reload.is_none() {
            if let Some((manifest, reply)) = self.next_reloads.pop_front() {
                self.begin_reload(manifest, reply);
            }
        }
        if let Some(mut reload) = self.reload.take() {
            if self.advance(&mut reload.plan) {
                self.apply(reload);
            } else {
                self.reload = Some(reload);
            }
        }
    }

    /// Everything is down: stop adopted descendants nobody claimed, and report the outcome.
    async fn finish(&mut self) {
        if self.ctx.adopt {
            let left = tokio::task::spawn_blocking(orphans::scan)
                .await
                .unwrap_or_default();
            if !left.is_empty() {
                let pids: Vec<u32> = left.iter().map(|o| o.pid).collect();
                tracing::info!(
                    "stopping {} adopted descendant(s): pid {pids:?}",
                    left.len()
                );
                let grace = std::time::Duration::from_secs(1);
                orphans::stop(&left, grace, self.manifest.kill_timeout).await;
            }
        }
        // The last on_shutdown hooks run before pilot-host reports the end (each call is bounded by
        // its plugin's limits). They are awaited beside the coordinator, which goes on answering
        // requests (status, logs) meanwhile. The queues run side by side, so waiting for them in
        // turn takes as long as the slowest.
        let queues: Vec<_> = self
            .table
            .entries
            .values()
            .map(|e| e.hooks.clone())
            .collect();
        let outcome = Outcome {
            statuses: self.statuses(),
        };
        if let Some(done) = self.done.take() {
            self.targets_changed();
            tokio::spawn(async move {
                for queue in &queues {
                    queue.drained().await;
                }
                let _ = done.send(outcome);
            });
        }
        // No run or timer is left: the loop now ends with the last handle.
        self.tx = None;
    }

    /// Starts a reload of `manifest`: stops removed and changed processes (and the dependents of
    /// changed ones), dependents first; [`Coordinator::apply`] does the rest.
    pub fn begin_reload(
        &mut self,
        manifest: Manifest,
        reply: oneshot::Sender<Result<ReloadReport, ControlError>>,
    ) {
        let mut report = ReloadReport::default();
        let mut members: BTreeSet<Arc<str>> = BTreeSet::new();
        for name in &self.table.order {
            match manifest.process(name) {
                None => {
                    report.removed.push(name.to_string());
                    members.insert(name.clone());
                }
                Some(spec) if *spec != *self.table.entries[name].spec => {
                    report.changed.push(name.to_string());
                    members.insert(name.clone());
                }
                Some(_) => {}
            }
        }
        // Dependents of changed processes restart with them (by the new manifest's dependencies).
        let mut stack: Vec<String> = report.changed.clone();
        while let Some(n) = stack.pop() {
            for p in &manifest.processes {
                let kept = self.table.entries.get_key_value(p.name.as_str());
                if let (true, Some((key, _))) = (p.dependencies.contains(&n), kept) {
                    if members.insert(key.clone()) {
                        report.restarted.push(p.name.clone());
                        stack.push(p.name.clone());
                    }
                }
            }
        }
        for p in &manifest.processes {
            if !self.table.entries.contains_key(p.name.as_str()) {
                report.added.push(p.name.clone());
            } else if !members.contains(p.name.as_str()) {
                report.unchanged.push(p.name.clone());
            }
        }
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
            reply,
        });
    }

    /// The stops of a reload are done: put the new manifest in effect and start what should run.
    fn apply(&mut self, reload: Reload) {
        let Reload {
            manifest,
            report,
            was_active,
            reply,
            ..
        } = reload;
        for name in &report.removed {
            if let Some(mut entry) = self.table.entries.remove(name.as_str()) {
                entry.answer_all(Err(ControlError::UnknownProcess {
                    name: name.clone(),
                    known: "(removed by a reload)".into(),
                }));
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
                        entry.respec(spec_arc, &self.ctx.extensions);
                        if was_active.contains(&name) {
                            self.set(&name, Phase::Pending);
                        }
                    }
                }
                None => {
                    let entry =
                        Entry::new(spec_arc, colour, self.ctx.log_lines, &self.ctx.extensions);
                    colour += 1;
                    self.table.entries.insert(entry.name.clone(), entry);
                }
            }
        }
        self.manifest = Arc::new(manifest);
        self.targets_changed();
        self.table.reindex(&self.manifest);
        self.ctx
            .printer
            .set_width(self.table.order.iter().map(|n| n.len()).max().unwrap_or(0));
        let all = self.table.order.clone();
        self.kick(&all);
        self.ctx.bus.send(Event::Reloaded {
            added: report.added.clone(),
            removed: report.removed.clone(),
            changed: report.changed.clone(),
        });
        let _ = reply.send(Ok(report));
    }
}
