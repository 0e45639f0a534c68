//! Resource sampling: one read of every running process per interval, off the supervision path (on a
//! blocking thread), with a scan for adopted descendants when pilot-host is a subreaper; then the stat
//! handlers, whose actions apply only to the processes that name them.
//!
//! CPU % is computed from the difference between two samples of the same process, which is why one
//! [`Sampler`] lives as long as the loop (a fresh one per sample would read 0).

use std::sync::{Arc, Mutex};

use super::coordinator::Request;
use super::procstat::Sampler;
use super::{orphans, Handle};
use crate::extension::{ProcessStats, StatAction};

/// Samples every interval (as the manifest in effect says) until the supervision is over.
pub(super) async fn sample_loop(handle: Handle, adopt: bool) {
    let sampler = Arc::new(Mutex::new(Sampler::default()));
    let Some(Some(first)) = handle.ask(Request::Targets).await else {
        return;
    };
    let mut interval = first.interval;
    loop {
        tokio::time::sleep(interval).await;
        let Some(Some(targets)) = handle.ask(Request::Targets).await else {
            return;
        };
        interval = targets.interval;
        let live: Vec<(Arc<str>, u32)> = targets
            .pids
            .iter()
            .filter_map(|(n, pid)| Some((n.clone(), (*pid)?)))
            .collect();
        let sampler = sampler.clone();
        let (readings, found) = tokio::task::spawn_blocking(move || {
            let pids: Vec<u32> = live.iter().map(|(_, p)| *p).collect();
            let values = sampler
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .sample(&pids);
            let readings: Vec<_> = live
                .into_iter()
                .zip(values)
                .filter_map(|((name, pid), v)| Some((name, pid, v?)))
                .collect();
            (readings, adopt.then(orphans::scan))
        })
        .await
        .unwrap_or_default();
        let Some(sample) = handle.ask(|tx| Request::Sampled(readings, found, tx)).await else {
            return;
        };
        run_handlers(&handle, &targets.handlers, &sample).await;
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
