//! Resource sampling: one read of every running process per interval, off the supervision path (on a
//! blocking thread), then the stat handlers, whose actions apply only to their processes.
//!
//! CPU % is computed from the difference between two samples of the same process, which is why one
//! [`Sampler`] lives as long as the loop (a fresh one per sample would read 0).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::procstat::Sampler;
use super::Handle;
use crate::extension::{ProcessStats, StatAction};

/// Samples every `interval` until the supervisor ends.
pub(super) async fn sample_loop(handle: Handle, interval: Duration) {
    let sampler = Arc::new(Mutex::new(Sampler::default()));
    let mut maxima: Vec<(f64, u64)> = vec![(0.0, 0); handle.shared.names.len()];
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let statuses = handle.status();
        let pids: Vec<u32> = statuses.iter().filter_map(|s| s.pid).collect();
        let sampler = sampler.clone();
        let readings = tokio::task::spawn_blocking(move || {
            sampler
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .sample(&pids)
        })
        .await
        .unwrap_or_default();
        let mut readings = readings.into_iter();
        let mut sample = Vec::with_capacity(statuses.len());
        for (i, status) in statuses.iter().enumerate() {
            let (cpu, rss) = match status.pid {
                Some(_) => readings.next().flatten().unwrap_or((0.0, 0)),
                None => (0.0, 0),
            };
            let max = &mut maxima[i];
            max.0 = max.0.max(cpu);
            max.1 = max.1.max(rss);
            sample.push(ProcessStats {
                name: status.name.clone(),
                pid: status.pid,
                cpu_percent: cpu,
                max_cpu_percent: max.0,
                rss_bytes: rss,
                max_rss_bytes: max.1,
                restarts: status.restarts,
                uptime_sec: status.uptime_sec(),
            });
        }
        *handle
            .shared
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = sample.clone();
        run_handlers(&handle, &sample).await;
    }
}

/// Hands each stat handler the stats of the processes naming it, and applies its actions.
async fn run_handlers(handle: &Handle, sample: &[ProcessStats]) {
    for handler in &handle.shared.stat_handlers {
        let mine: Vec<ProcessStats> = sample
            .iter()
            .zip(&handle.shared.specs)
            .filter(|(_, spec)| spec.stat_handlers.contains(handler))
            .map(|(s, _)| s.clone())
            .collect();
        let actions = handle.shared.extensions.stats(handler, &mine).await;
        for action in actions {
            let (process, reason, restart) = match action {
                StatAction::Restart { process, reason } => (process, reason, true),
                StatAction::Stop { process, reason } => (process, reason, false),
            };
            if !mine.iter().any(|s| s.name == process) {
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
