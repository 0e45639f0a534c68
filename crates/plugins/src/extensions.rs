//! The supervisor's [`Extensions`] on top of the plugins: name dispatch and type conversion.

use std::time::Duration;

use super::actor::{Actor, Answer};
use super::bindings::{self as b, ReadyStatus, StatActionKind};
use super::sandbox::{Call, StoreState};
use super::{CallError, PluginSet};
use pilot_core::extension::{
    BoxFuture, Extensions, LifecycleEvent, PluginStatus, ProcessInfo, ProcessStats, ReadyAnswer,
    StatAction,
};
use pilot_core::manifest::Manifest;

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

/// Returns a sample as plugins see it.
pub(super) fn stats(s: &ProcessStats) -> b::ProcessStats {
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
    /// Calls `actor`; failures were already counted, logged and reported on the plugin threads.
    async fn call<R, F>(actor: &Actor, what: String, f: F) -> Result<R, CallError>
    where
        R: Answer + Send + 'static,
        F: for<'a> FnOnce(&'a b::PilotPlugin, &'a mut wasmtime::Store<StoreState>) -> Call<'a, R>
            + Send
            + 'static,
    {
        actor.call(what, f).await
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
            let Some(actor) = self.snapshot().ready.get(strategy).cloned() else {
                return ReadyAnswer::Error(format!(
                    "no plugin provides ready strategy `{strategy}`"
                ));
            };
            let (strategy_owned, process_info, params_owned) =
                (strategy.to_string(), info(process), params.to_string());
            let what = format!("ready check `{strategy}` of `{}`", process.name);
            let result = Self::call(&actor, what, move |bindings, store| {
                Box::pin(async move {
                    bindings
                        .pilot_plugin_plugin()
                        .call_ready_check(store, &strategy_owned, &process_info, &params_owned)
                        .await
                })
            })
            .await;
            match result {
                Ok(Ok(ReadyStatus::Ready)) => ReadyAnswer::Ready,
                Ok(Ok(ReadyStatus::NotYet(reason))) => {
                    ReadyAnswer::NotYet(super::log::sanitize(&reason))
                }
                Ok(Err(e)) => ReadyAnswer::Error(format!("{}: {}", actor.label, b::error_text(&e))),
                Err(CallError::Quarantined) => {
                    ReadyAnswer::NotYet(format!("{} is quarantined", actor.label))
                }
                Err(e) => ReadyAnswer::Error(format!("{}: {e}", actor.label)),
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
            let Some(actor) = self.snapshot().hooks.get(hook).cloned() else {
                return;
            };
            let (hook_owned, process_info, (wit_event, exit)) =
                (hook.to_string(), info(process), event(e));
            let what = format!("hook `{hook}` at {} of `{}`", e.name(), process.name);
            let result = Self::call(&actor, what.clone(), move |bindings, store| {
                Box::pin(async move {
                    bindings
                        .pilot_plugin_plugin()
                        .call_lifecycle(store, &hook_owned, wit_event, &process_info, exit)
                        .await
                })
            })
            .await;
            if let Ok(Err(e)) = result {
                tracing::warn!("{}: {what}: {}", actor.label, b::error_text(&e));
            }
        })
    }

    fn stats<'a>(
        &'a self,
        handler: &'a str,
        sample: &'a [ProcessStats],
    ) -> BoxFuture<'a, Vec<StatAction>> {
        Box::pin(async move {
            let Some(actor) = self.snapshot().handlers.get(handler).cloned() else {
                return Vec::new();
            };
            let (handler_owned, list) = (
                handler.to_string(),
                sample.iter().map(stats).collect::<Vec<_>>(),
            );
            let what = format!("stat handler `{handler}`");
            let result = Self::call(&actor, what.clone(), move |bindings, store| {
                Box::pin(async move {
                    bindings
                        .pilot_plugin_plugin()
                        .call_stats(store, &handler_owned, &list)
                        .await
                })
            })
            .await;
            match result {
                Ok(Ok(actions)) => actions
                    .into_iter()
                    .map(|a| {
                        // A name with control characters matches no process; shown escaped.
                        let process = pilot_core::manifest::escape_controls(&a.process);
                        let reason = super::log::sanitize(&a.reason);
                        match a.kind {
                            StatActionKind::Restart => StatAction::Restart { process, reason },
                            StatActionKind::Stop => StatAction::Stop { process, reason },
                        }
                    })
                    .collect(),
                Ok(Err(e)) => {
                    tracing::warn!("{}: {what}: {}", actor.label, b::error_text(&e));
                    Vec::new()
                }
                Err(_) => Vec::new(),
            }
        })
    }

    fn ready_check_interval(&self) -> Duration {
        self.interval()
    }

    fn plugins(&self) -> Vec<PluginStatus> {
        self.status()
    }

    fn reload<'a>(&'a self, manifest: &'a Manifest) -> BoxFuture<'a, Result<(), Vec<String>>> {
        Box::pin(self.apply(manifest))
    }
}
