//! The calls `plugin check` makes, on the plugin threads under production limits: a smoke test of
//! every declared export on a fresh instance, then the spec file's calls in order on one instance.

use std::collections::BTreeMap;

use serde_json::Value;

use super::spec::{Expect, Target};
use crate::actor::Actor;
use crate::bindings::{self as b};
use crate::log::sanitize;
use crate::sandbox::{call_fn, CallError, CallProfile, Sandbox};

/// How a call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A ready check said ready.
    Ready,
    /// A ready check said not yet, with this reason.
    NotYet(String),
    /// A hook returned.
    Returned,
    /// A stat handler returned these actions: (`restart` or `stop`, process).
    Actions(Vec<(String, String)>),
    /// A control plugin answered an HTTP request.
    Http {
        /// The status.
        status: u16,
        /// The body, as text.
        body: String,
    },
    /// The plugin answered with its own error: its kind and text.
    PluginError(&'static str, String),
    /// The call trapped, timed out, or could not be made.
    Failed(CallError),
}

impl Outcome {
    /// Returns whether the call returned within its limits.
    pub fn returned(&self) -> bool {
        !matches!(self, Outcome::Failed(_))
    }

    /// Returns whether the outcome is what `expect` asks for.
    pub fn meets(&self, expect: &Expect) -> bool {
        match (expect, self) {
            (Expect::Ready, Outcome::Ready) => true,
            (Expect::NotYet(None), Outcome::NotYet(_)) => true,
            (Expect::NotYet(Some(t)), Outcome::NotYet(r)) => r.contains(t.as_str()),
            (Expect::Ok, o) => o.returned() && !matches!(o, Outcome::PluginError(..)),
            (Expect::Error(None), Outcome::PluginError(..)) => true,
            (Expect::Error(Some(k)), Outcome::PluginError(kind, _)) => k == kind,
            (Expect::Actions(want), Outcome::Actions(got)) => want == got,
            _ => false,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ready => write!(f, "ready"),
            Outcome::NotYet(r) => {
                let r: String = r.chars().take(200).collect();
                write!(f, "not yet: {r}")
            }
            Outcome::Returned => write!(f, "returned"),
            Outcome::Actions(a) if a.is_empty() => write!(f, "no actions"),
            Outcome::Actions(a) => {
                let list: Vec<String> = a.iter().map(|(k, p)| format!("{k} `{p}`")).collect();
                write!(f, "actions [{}]", list.join(", "))
            }
            Outcome::Http { status, body } => {
                let shown: String = body.chars().take(200).collect();
                let more = if shown.len() < body.len() { "…" } else { "" };
                write!(f, "HTTP {status}: {shown}{more}")
            }
            Outcome::PluginError(kind, text) => write!(f, "its own error `{kind}`: {text}"),
            Outcome::Failed(e) => write!(f, "{e}"),
        }
    }
}

fn plugin_error(e: &b::PluginError) -> Outcome {
    let (kind, text) = match e {
        b::PluginError::InvalidConfig(m) => ("invalid_config", m),
        b::PluginError::UnknownName(m) => ("unknown_name", m),
        b::PluginError::Unavailable(m) => ("unavailable", m),
        b::PluginError::Failed(m) => ("failed", m),
    };
    Outcome::PluginError(kind, sanitize(text))
}

/// Returns how a call that answered `r` ended, `ok` turning its answer into an outcome.
pub(super) fn outcome<T>(
    r: Result<Result<T, b::PluginError>, CallError>,
    ok: impl FnOnce(T) -> Outcome,
) -> Outcome {
    match r {
        Ok(Ok(v)) => ok(v),
        Ok(Err(e)) => plugin_error(&e),
        // `init` answering with the plugin's own error is the plugin's answer too.
        Err(CallError::Plugin(text)) => Outcome::PluginError("init", text),
        Err(e) => Outcome::Failed(e),
    }
}

/// Returns a made-up process, overridden by the fields in `fields`.
pub fn process(fields: &BTreeMap<String, Value>) -> b::ProcessInfo {
    let mut p = sample_process();
    let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_string);
    let number = |k: &str| fields.get(k).and_then(Value::as_u64);
    p.name = text("name").unwrap_or(p.name);
    p.pid = number("pid").map_or(p.pid, |n| u32::try_from(n).ok());
    p.path = text("path").unwrap_or(p.path);
    p.working_directory = text("working_directory").unwrap_or(p.working_directory);
    p.restart_count = number("restart_count").map_or(0, |n| n as u32);
    if let Some(args) = fields.get("args").and_then(Value::as_array) {
        p.args = args
            .iter()
            .map(|a| a.as_str().map_or(a.to_string(), str::to_string))
            .collect();
    }
    p
}

/// Returns a process's stats from the fields in `fields` (missing ones are 0).
fn stats(fields: &BTreeMap<String, Value>) -> b::ProcessStats {
    let f = |k: &str| fields.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let n = |k: &str| fields.get(k).and_then(Value::as_u64).unwrap_or(0);
    b::ProcessStats {
        name: fields
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("sample")
            .to_string(),
        pid: fields.get("pid").and_then(Value::as_u64).map(|p| p as u32),
        cpu_percent: f("cpu_percent"),
        max_cpu_percent: f("max_cpu_percent"),
        rss_bytes: n("rss_bytes"),
        max_rss_bytes: n("max_rss_bytes"),
        restarts: n("restarts") as u32,
        uptime_sec: f("uptime_sec"),
    }
}

/// Returns a made-up process, for smoke tests and benchmarks.
pub fn sample_process() -> b::ProcessInfo {
    b::ProcessInfo {
        name: "sample".into(),
        pid: Some(std::process::id()),
        path: "/bin/true".into(),
        args: Vec::new(),
        working_directory: "/".into(),
        restart_count: 0,
    }
}

fn event(name: &str) -> b::LifecycleEvent {
    match name {
        "post_start" => b::LifecycleEvent::PostStart,
        "on_shutdown" => b::LifecycleEvent::OnShutdown,
        "on_restart" => b::LifecycleEvent::OnRestart,
        _ => b::LifecycleEvent::PreStart,
    }
}

/// Makes one call on the plugin threads; `fresh` starts from a fresh, unquarantined instance.
pub async fn call(
    actor: &Actor,
    fresh: bool,
    target: Target,
    info: b::ProcessInfo,
) -> (Outcome, CallProfile) {
    let job = actor.with(move |sandbox| {
        Box::pin(async move {
            if fresh {
                sandbox.reset();
            }
            let outcome = match target {
                Target::Ready { name, params } => ready(sandbox, name, info, params).await,
                Target::Hook { name, event, exit } => hook(sandbox, name, &event, exit, info).await,
                Target::Stats { name, samples } => stat_handler(sandbox, name, &samples).await,
            };
            (outcome, sandbox.last_profile())
        })
    });
    job.await.unwrap_or_else(|| {
        (
            Outcome::Failed(CallError::Trap("its actor stopped".into())),
            CallProfile::default(),
        )
    })
}

async fn ready(
    sandbox: &mut Sandbox,
    name: String,
    info: b::ProcessInfo,
    params: String,
) -> Outcome {
    let r = sandbox
        .call(call_fn(move |p, s| {
            Box::pin(async move {
                p.pilot_plugin_plugin()
                    .call_ready_check(s, &name, &info, &params)
                    .await
            })
        }))
        .await;
    outcome(r, |s| match s {
        b::ReadyStatus::Ready => Outcome::Ready,
        b::ReadyStatus::NotYet(why) => Outcome::NotYet(sanitize(&why)),
    })
}

async fn hook(
    sandbox: &mut Sandbox,
    name: String,
    e: &str,
    (code, signal): (Option<i32>, Option<i32>),
    info: b::ProcessInfo,
) -> Outcome {
    let exit = (e == "on_shutdown").then_some(b::ExitStatus {
        code: code.or(if signal.is_none() { Some(0) } else { None }),
        signal,
    });
    let event = event(e);
    let r = sandbox
        .call(call_fn(move |p, s| {
            Box::pin(async move {
                p.pilot_plugin_plugin()
                    .call_lifecycle(s, &name, event, &info, exit)
                    .await
            })
        }))
        .await;
    outcome(r, |()| Outcome::Returned)
}

async fn stat_handler(
    sandbox: &mut Sandbox,
    name: String,
    samples: &[BTreeMap<String, Value>],
) -> Outcome {
    let list: Vec<b::ProcessStats> = samples.iter().map(stats).collect();
    let r = sandbox
        .call(call_fn(move |p, s| {
            Box::pin(async move { p.pilot_plugin_plugin().call_stats(s, &name, &list).await })
        }))
        .await;
    outcome(r, |actions: Vec<b::StatAction>| {
        let actions = actions.into_iter().map(|a| {
            let kind = match a.kind {
                b::StatActionKind::Restart => "restart",
                b::StatActionKind::Stop => "stop",
            };
            (kind.to_string(), a.process)
        });
        Outcome::Actions(actions.collect())
    })
}

/// Returns the smoke tests of a description: every ready strategy (with `params`), every hook at every
/// event, every stat handler with one sample.
pub fn smoke_targets(d: &b::Description, params: &str) -> Vec<(&'static str, String, Target)> {
    let mut out = Vec::new();
    for name in &d.ready_strategies {
        out.push((
            "ready-strategy",
            name.clone(),
            Target::Ready {
                name: name.clone(),
                params: params.to_string(),
            },
        ));
    }
    for name in &d.lifecycle_hooks {
        for e in ["pre_start", "post_start", "on_shutdown", "on_restart"] {
            out.push((
                "lifecycle-hook",
                format!("{name} at {e}"),
                Target::Hook {
                    name: name.clone(),
                    event: e.into(),
                    exit: (Some(0), None),
                },
            ));
        }
    }
    for name in &d.stat_handlers {
        let sample: BTreeMap<String, Value> = [
            ("name", Value::from("sample")),
            ("pid", Value::from(std::process::id())),
            ("cpu_percent", Value::from(1.0)),
            ("rss_bytes", Value::from(10u64 << 20)),
            ("uptime_sec", Value::from(1.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        out.push((
            "stat-handler",
            name.clone(),
            Target::Stats {
                name: name.clone(),
                samples: vec![sample],
            },
        ));
    }
    out
}
