//! Lifecycle hooks, called off the supervision path: one queue per process, run in order by a task of
//! their own, so a slow hook never delays a process's reaction to a stop or to its child's exit.
//!
//! A process's run waits for `pre_start` before the spawn (a hook may prepare what the process needs),
//! only until a stop arrives: the run gives up waiting, and the hook call itself is not cut off
//! half-way. Its readiness checks begin once `post_start` ran. At the end of everything, pilot-host
//! waits for every queue to drain (the last `on_shutdown` calls, each bounded by its plugin's
//! limits) before it reports the end, beside the coordinator, which goes on answering requests.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::extension::{Extensions, LifecycleEvent, ProcessInfo};

enum HookCall {
    /// Call the hooks for `event`, then answer `done`.
    Call {
        event: LifecycleEvent,
        info: ProcessInfo,
        done: Option<oneshot::Sender<()>>,
    },
    /// Answer once everything before it ran.
    Marker(oneshot::Sender<()>),
}

/// The hook queue of one process; without hooks it does nothing and costs nothing.
#[derive(Clone, Default)]
pub(super) struct Hooks {
    queue: Option<mpsc::UnboundedSender<HookCall>>,
}

impl Hooks {
    /// Starts the queue for `hooks` (none: no task).
    pub fn new(hooks: &[String], extensions: &Arc<dyn Extensions>) -> Hooks {
        if hooks.is_empty() {
            return Hooks::default();
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<HookCall>();
        let hooks = hooks.to_vec();
        let extensions = extensions.clone();
        tokio::spawn(async move {
            while let Some(call) = rx.recv().await {
                match call {
                    HookCall::Call { event, info, done } => {
                        for hook in &hooks {
                            extensions.lifecycle(hook, event, &info).await;
                        }
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                    }
                    HookCall::Marker(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Hooks { queue: Some(tx) }
    }

    /// Waits until every hook queued so far has run.
    pub async fn drained(&self) {
        if let Some(queue) = &self.queue {
            let (done, rx) = oneshot::channel();
            if queue.send(HookCall::Marker(done)).is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// Queues the hooks for `event`; returns at once. `info` is made only if there are hooks.
    pub fn call(&self, event: LifecycleEvent, info: impl FnOnce() -> ProcessInfo) {
        if let Some(queue) = &self.queue {
            let _ = queue.send(HookCall::Call {
                event,
                info: info(),
                done: None,
            });
        }
    }

    /// Queues the hooks for `event` and returns a receiver answered once they ran (at once without
    /// hooks). `info` is made only if there are hooks.
    pub fn call_and_wait(
        &self,
        event: LifecycleEvent,
        info: impl FnOnce() -> ProcessInfo,
    ) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        match &self.queue {
            Some(queue) => {
                let call = HookCall::Call {
                    event,
                    info: info(),
                    done: Some(done),
                };
                if let Err(mpsc::error::SendError(HookCall::Call {
                    done: Some(done), ..
                })) = queue.send(call)
                {
                    let _ = done.send(());
                }
            }
            None => {
                let _ = done.send(());
            }
        }
        rx
    }
}
