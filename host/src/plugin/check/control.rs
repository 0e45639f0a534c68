//! `plugin check` of a control plugin: loaded as `run` loads it, its imports against the policy, then
//! under production limits and with nothing granted (or the spec file's grants): a fresh instance
//! configured by `init`, one event of each kind it subscribes to, a tick if it asks for them, and a
//! `GET /` request. A trap, a timeout or a failing `init` is a finding; so is every control call and
//! outgoing HTTP request it tried without a grant (as for files and sockets).

use std::sync::Arc;

use super::report::{CallRecord, Report};
use super::Options;
use crate::plugin::control::bindings::{Event, EventKind};
use crate::plugin::control::{ControlPlugin, LoadedControl, Served};
use crate::plugin::load::PluginHost;
use crate::plugin::sandbox::{CallError, CallProfile, Observed};

/// The event each kind is exercised with.
fn sample_event(kind: EventKind) -> Event {
    let (name, json) = match kind {
        EventKind::StateChanged => ("state_changed", r#""from": "running", "to": "backing_off""#),
        EventKind::Spawned => ("spawned", r#""pid": 4242"#),
        EventKind::Ready => ("ready", r#""pid": 4242, "after_ms": 12.5"#),
        EventKind::Exited => (
            "exited",
            r#""pid": 4242, "code": 3, "signal": null, "uptime_sec": 0.4"#,
        ),
        EventKind::RestartScheduled => ("restart_scheduled", r#""delay_sec": 0.2, "restarts": 1"#),
        EventKind::GaveUp => ("gave_up", r#""reason": "not ready after 5.0 s""#),
        EventKind::Adopted => ("adopted", r#""pid": 4343"#),
        EventKind::Reloaded => (
            "reloaded",
            r#""added": [], "removed": [], "changed": ["web"]"#,
        ),
        EventKind::Plugin => ("plugin", r#""kind": "quarantined", "plugin": "other""#),
        EventKind::ShuttingDown => ("shutting_down", ""),
    };
    let process = !matches!(
        kind,
        EventKind::Reloaded | EventKind::Plugin | EventKind::ShuttingDown
    );
    let sep = if json.is_empty() { "" } else { ", " };
    let about = if process { r#", "process": "web""# } else { "" };
    Event {
        seq: 1,
        at_ms: 1_700_000_000_000,
        kind,
        process: process.then(|| "web".to_string()),
        json: format!(
            r#"{{"seq": 1, "at_ms": 1700000000000, "type": "{name}"{about}{sep}{json}}}"#
        ),
    }
}

fn record(report: &mut Report, name: String, result: Result<String, CallError>) {
    let (ok, text) = match &result {
        Ok(t) => (true, t.clone()),
        Err(CallError::Plugin(e)) => (true, format!("error: {e}")),
        Err(e) => (false, e.to_string()),
    };
    if !ok {
        report.finding("call-failed", format!("{name}: {text}"));
    }
    report.calls.push(CallRecord {
        kind: "control-plugin",
        name,
        source: "smoke",
        ok,
        result: text,
        expected: None,
        profile: CallProfile::default(),
    });
}

/// Checks a loaded control plugin; what it tries beyond its grants goes to `observed`.
pub(super) async fn check_control(
    host: &PluginHost,
    loaded: &LoadedControl,
    opts: &Options,
    observed: &Observed,
    report: &mut Report,
) {
    let d = &loaded.description;
    report.name = Some(d.name.clone());
    report.version = Some(d.version.clone());
    super::check_imports(host, &loaded.component, &opts.policy, report);
    report.timings.compile_ms = Some(loaded.compile_time.as_secs_f64() * 1e3);
    let base = opts
        .specs
        .iter()
        .find(|s| s.plugin.as_deref().is_none_or(|p| p == d.name))
        .map(|s| s.settings.clone())
        .unwrap_or_default();
    let settings = opts.settings(base);
    let plugin = match ControlPlugin::for_check(host, loaded, settings, observed.clone()).await {
        Ok(p) => Arc::new(p),
        Err(e) => return report.finding("call-failed", format!("cannot start it: {e}")),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let p = plugin.clone();
    let started = plugin.threads().spawn(async move {
        let _ = tx.send(exercise(&p).await);
    });
    let calls = match rx.await {
        Ok(calls) if started => calls,
        _ => return report.finding("call-failed", "its calls stopped half-way"),
    };
    for (name, result) in calls {
        record(report, name, result);
    }
    let request = http::Request::get("/")
        .body(bytes::Bytes::new())
        .expect("a valid request");
    let answer = match plugin.serve(request).await {
        Served::Answer(a) => Ok(format!("HTTP {}", a.status().as_u16())),
        Served::Failed(why) => Err(CallError::Trap(why)),
        Served::Timeout(d) => Err(CallError::Timeout(d)),
        Served::TooLarge => Err(CallError::Trap(format!(
            "answered more than {} MiB",
            crate::plugin::control::MAX_RESPONSE_BYTES >> 20
        ))),
        Served::Busy | Served::Quarantined => Err(CallError::Quarantined),
    };
    record(report, "GET /".to_string(), answer);
}

/// Makes the events instance and calls `on-event` once per subscribed kind and `on-tick` once.
async fn exercise(plugin: &ControlPlugin) -> Vec<(String, Result<String, CallError>)> {
    let mut out = Vec::new();
    let (mut live, setup) = match plugin.instance().await {
        Ok(made) => made,
        Err(e) => {
            out.push(("init".to_string(), Err(e)));
            return out;
        }
    };
    let kinds: Vec<&str> = setup
        .events
        .iter()
        .map(|k| crate::plugin::control::kind_name(*k))
        .collect();
    out.push((
        "init".to_string(),
        Ok(format!(
            "events [{}], tick {}",
            kinds.join(", "),
            setup
                .tick_ms
                .map_or("none".to_string(), |ms| format!("{ms} ms"))
        )),
    ));
    for kind in &setup.events {
        let event = sample_event(*kind);
        let name = format!("on-event `{}`", crate::plugin::control::kind_name(*kind));
        let result = plugin
            .call(&mut live, move |b, store| {
                Box::pin(async move {
                    b.pilot_plugin_control_plugin()
                        .call_on_event(store, &event)
                        .await
                })
            })
            .await;
        let failed = result.is_err();
        out.push((name, flatten(result)));
        if failed {
            match plugin.instance().await {
                Ok((fresh, _)) => live = fresh,
                Err(_) => return out,
            }
        }
    }
    if setup.tick_ms.is_some() {
        let result = plugin
            .call(&mut live, |b, store| {
                Box::pin(b.pilot_plugin_control_plugin().call_on_tick(store))
            })
            .await;
        out.push(("on-tick".to_string(), flatten(result)));
    }
    out
}

fn flatten(
    result: Result<Result<(), crate::plugin::PluginError>, CallError>,
) -> Result<String, CallError> {
    match result {
        Ok(Ok(())) => Ok("ok".to_string()),
        Ok(Err(e)) => Err(CallError::Plugin(crate::plugin::bindings::error_text(&e))),
        Err(e) => Err(e),
    }
}
