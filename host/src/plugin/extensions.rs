//! The supervisor's [`Extensions`] on top of the plugins: name dispatch and type conversion.

use std::time::Duration;

use super::bindings::{self as b, ReadyStatus, StatActionKind};
use super::sandbox::{Call, StoreState};
use super::{CallError, PluginSet};
use crate::extension::{
    BoxFuture, Extensions, LifecycleEvent, ProcessInfo, ProcessStats, ReadyAnswer, StatAction,
};

fn info(p: &ProcessInfo) -> b::ProcessInfo {
    b::ProcessInfo {
        name: p.name.clone(),
        pid: p.pid,
        path: p.path.clone(),
        args: p.args.clone(),
        working_directory: p.working_directory.clone(),
        restart_count: p.restart_count,
    }
}

fn event(e: LifecycleEvent) -> (b::LifecycleEvent, Option<b::ExitStatus>) {
    match e {
        LifecycleEvent::PreStart => (b::LifecycleEvent::PreStart, None),
        LifecycleEvent::PostStart => (b::LifecycleEvent::PostStart, None),
        LifecycleEvent::OnRestart => (b::LifecycleEvent::OnRestart, None),
        LifecycleEvent::OnShutdown { exit_code, signal } => (
            b::LifecycleEvent::OnShutdown,
            Some(b::ExitStatus {
                code: exit_code,
                signal,
            }),
        ),
    }
}

fn stats(s: &ProcessStats) -> b::ProcessStats {
    b::ProcessStats {
        name: s.name.clone(),
        pid: s.pid,
        cpu_percent: s.cpu_percent,
        max_cpu_percent: s.max_cpu_percent,
        rss_bytes: s.rss_bytes,
        max_rss_bytes: s.max_rss_bytes,
        restarts: s.restarts,
        uptime_sec: s.uptime_sec,
    }
}

impl PluginSet {
    /// Calls into plugin `i`, waiting for its sandbox (calls into one plugin are serialized).
    async fn call<R>(
        &self,
        i: usize,
        f: impl for<'a> FnOnce(&'a b::PilotPlugin, &'a mut wasmtime::Store<StoreState>) -> Call<'a, R>,
    ) -> Result<R, CallError> {
        self.sandboxes[i].lock().await.call(f).await
    }

    fn failed(&self, i: usize, what: &str, e: &CallError) -> String {
        let message = format!("{}: {what}: {e}", self.labels[i]);
        if !matches!(e, CallError::Quarantined | CallError::Plugin(_)) {
            tracing::warn!("{message}");
        }
        message
    }
}

impl Extensions for PluginSet {
    fn ready_check<'a>(
        &'a self,
        strategy: &'a str,
        process: &'a ProcessInfo,
        params: &'a str,
    ) -> BoxFuture<'a, ReadyAnswer> {
        Box::pin(async move {
            let Some(&i) = self.ready.get(strategy) else {
                return ReadyAnswer::Error(format!(
                    "no plugin provides ready strategy `{strategy}`"
                ));
            };
            let (strategy_owned, process_info, params_owned) =
                (strategy.to_string(), info(process), params.to_string());
            let result = self
                .call(i, move |bindings, store| {
                    Box::pin(async move {
                        bindings
                            .pilot_plugin_plugin()
                            .call_ready_check(store, &strategy_owned, &process_info, &params_owned)
                            .await
                    })
                })
                .await;
            let what = format!("ready check `{strategy}` of `{}`", process.name);
            match result {
                Ok(Ok(ReadyStatus::Ready)) => ReadyAnswer::Ready,
                Ok(Ok(ReadyStatus::NotYet(reason))) => {
                    ReadyAnswer::NotYet(super::log::sanitize(&reason))
                }
                Ok(Err(e)) => {
                    ReadyAnswer::Error(self.failed(i, &what, &CallError::Plugin(b::error_text(&e))))
                }
                Err(CallError::Quarantined) => {
                    ReadyAnswer::NotYet(format!("{} is quarantined", self.labels[i]))
                }
                Err(e) => ReadyAnswer::Error(self.failed(i, &what, &e)),
            }
        })
    }

    fn lifecycle<'a>(
        &'a self,
        hook: &'a str,
        e: LifecycleEvent,
        process: &'a ProcessInfo,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(&i) = self.hooks.get(hook) else {
                return;
            };
            let (hook_owned, process_info, (wit_event, exit)) =
                (hook.to_string(), info(process), event(e));
            let result = self
                .call(i, move |bindings, store| {
                    Box::pin(async move {
                        bindings
                            .pilot_plugin_plugin()
                            .call_lifecycle(store, &hook_owned, wit_event, &process_info, exit)
                            .await
                    })
                })
                .await;
            let what = format!("hook `{hook}` at {} of `{}`", e.name(), process.name);
            match result {
                Ok(Ok(())) | Err(CallError::Quarantined) => {}
                Ok(Err(e)) => tracing::warn!(
                    "{}",
                    self.failed(i, &what, &CallError::Plugin(b::error_text(&e)))
                ),
                Err(e) => {
                    self.failed(i, &what, &e);
                }
            }
        })
    }

    fn stats<'a>(
        &'a self,
        handler: &'a str,
        sample: &'a [ProcessStats],
    ) -> BoxFuture<'a, Vec<StatAction>> {
        Box::pin(async move {
            let Some(&i) = self.handlers.get(handler) else {
                return Vec::new();
            };
            let (handler_owned, list) = (
                handler.to_string(),
                sample.iter().map(stats).collect::<Vec<_>>(),
            );
            let result = self
                .call(i, move |bindings, store| {
                    Box::pin(async move {
                        bindings
                            .pilot_plugin_plugin()
                            .call_stats(store, &handler_owned, &list)
                            .await
                    })
                })
                .await;
            let what = format!("stat handler `{handler}`");
            match result {
                Ok(Ok(actions)) => actions
                    .into_iter()
                    .map(|a| {
                        let (process, reason) = (a.process, super::log::sanitize(&a.reason));
                        match a.kind {
                            StatActionKind::Restart => StatAction::Restart { process, reason },
                            StatActionKind::Stop => StatAction::Stop { process, reason },
                        }
                    })
                    .collect(),
                Ok(Err(e)) => {
                    tracing::warn!(
                        "{}",
                        self.failed(i, &what, &CallError::Plugin(b::error_text(&e)))
                    );
                    Vec::new()
                }
                Err(e) => {
                    self.failed(i, &what, &e);
                    Vec::new()
                }
            }
        })
    }

    fn ready_check_interval(&self) -> Duration {
        self.interval
    }
}
