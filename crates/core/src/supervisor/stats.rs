//! Resource sampling: one reading of every running process per interval, on a thread of its own
//! (`pilot-stats`), with a scan for adopted descendants when pilot-host is a subreaper; then the stat
//! handlers, whose actions apply only to the processes that name them.
//!
//! The contract: over idle processes a tick wakes only this thread; the coordinator is asked for the
//! pids only when its version moved, and is sent only the readings that changed. One [`Sampler`] lives
//! as long as the loop (CPU % needs two readings of a process). Why, with the measurements:
//! `docs/design/sampling.md`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::coordinator::{Sampling, Targets};
use super::procstat::Sampler;
use super::shell::Request;
use super::{orphans, Handle};
use crate::extension::{ProcessStats, StatAction};

/// Starts the sampling thread, which ends once the supervision is over.
pub(super) fn start(handle: Handle, adopt: bool, version: Arc<AtomicU64>) {
    let runtime = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name("pilot-stats".into())
        .spawn(move || sample_loop(&runtime, &handle, adopt, &version));
    if let Err(e) = spawned {
        tracing::warn!("cannot start the resource sampler, no stats will be taken: {e}");
    }
}

/// Samples every interval (as the manifest in effect says) until the supervision is over.
fn sample_loop(
    runtime: &tokio::runtime::Handle,
    handle: &Handle,
    adopt: bool,
    version: &AtomicU64,
) {
    let mut sampler = Sampler::default();
    let mut targets = match handle.ask_blocking(|tx| Request::Targets(None, tx)) {
        Some(Targets::Now(t)) => t,
        _ => return,
    };
    // The running processes of `targets`, worked out again only when the targets change.
    let running = |targets: &Sampling| -> (Vec<Arc<str>>, Vec<u32>) {
        targets
            .pids
            .iter()
            .filter_map(|(n, pid)| Some((n.clone(), (*pid)?)))
            .unzip()
    };
    let (mut names, mut pids) = running(&targets);
    let mut orphans = None;
    // The first sample is always sent: from then on every process has stats.
    let mut first = true;
    loop {
        std::thread::sleep(targets.interval);
        if version.load(Ordering::Acquire) != targets.version {
            match handle.ask_blocking(|tx| Request::Targets(Some(targets.version), tx)) {
                Some(Targets::Now(t)) => {
                    targets = t;
                    (names, pids) = running(&targets);
                }
                Some(Targets::Unchanged) => {}
                Some(Targets::Over) | None => return,
            }
        }
        // Only what changed goes to the coordinator: over idle processes, nothing.
        let readings: Vec<_> = sampler
            .sample(&pids)
            .into_iter()
            .zip(names.iter().zip(&pids))
            .filter_map(|(r, (name, pid))| Some((name.clone(), *pid, r.filter(|r| r.changed)?)))
            .collect();
        let found = adopt
            .then(orphans::scan)
            .filter(|found| orphans.as_ref() != Some(found));
        if let Some(found) = &found {
            orphans = Some(found.clone());
        }
        let news = first || !readings.is_empty() || found.is_some();
        first = false;
        if targets.handlers.is_empty() {
            // Nothing to hand the sample to: only the changes are recorded.
            if news && !handle.tell(Request::Sampled(readings, found, None)) {
                return;
            }
            continue;
        }
        let Some(sample) = handle.ask_blocking(|tx| Request::Sampled(readings, found, Some(tx)))
        else {
            return;
        };
        runtime.block_on(run_handlers(handle, &targets.handlers, &sample));
    }
}

/// Hands each stat handler the stats of the processes naming it, and applies its actions.
async fn run_handlers(
    handle: &Handle,
    handlers: &[(String, Vec<String>)],
    sample: &[ProcessStats],
) {
    for (handler, names) in handlers {
        let mine: Vec<ProcessStats> = sample
            .iter()
            .filter(|s| names.contains(&s.name))
            .cloned()
            .collect();
        let actions = handle.extensions.stats(handler, &mine).await;
        for action in actions {
            let (process, reason, restart) = match action {
                StatAction::Restart { process, reason } => (process, reason, true),
                StatAction::Stop { process, reason } => (process, reason, false),
            };
            if !names.contains(&process) {
                tracing::warn!("stat handler `{handler}` asked to act on `{process}`, which does not name it; ignored");
                continue;
            }
            let verb = if restart { "restart" } else { "stop" };
            tracing::info!("{process}: stat handler `{handler}` asks to {verb} it: {reason}");
            let handle = handle.clone();
            // Applied in the background: a stop waits out the process's grace period.
            tokio::spawn(async move {
                let result = if restart {
                    handle.restart_processes(&[process.as_str()]).await
                } else {
                    handle.stop_process(&process).await
                };
                if let Err(e) = result {
                    tracing::warn!("cannot {verb} `{process}`: {e}");
                }
            });
        }
    }
}
