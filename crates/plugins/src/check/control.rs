//! `plugin check` of a control plugin: loaded as `run` loads it, its imports against the policy, then
//! under production limits with the grants of its spec file (or none):
//!
//! - a smoke test: a fresh instance configured by `init`, one event of each kind it subscribes to, a
//!   tick if it asks for them, and a `GET /` request;
//! - each spec file's calls in order (see [`super::control_spec`]): HTTP requests each on a fresh
//!   instance, as the control plane serves them, and events and ticks on one long-lived instance, as
//!   the supervisor delivers them, each against what the spec expects.
//!
//! Events are the supervisor's own [`supervisor::Event`]s, turned into what the plugin gets by the
//! same code as in `run`. The plugin's `control` calls and outgoing requests reach the check's
//! stand-in ([`super::world`]): nothing is started, stopped or sent. A trap, a timeout, a refused
//! `init` or an unmet expectation is a finding; so is every control call and outgoing host tried
//! without a grant (as for files and sockets); those within the grants are listed in the report.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::calls::{self, Outcome};
use super::control_spec::{ControlExpect, ControlTarget, HttpCall};
use super::report::{CallRecord, Report};
use super::spec::{Expect, Spec};
use super::{Expectation, Options};
use crate::control::bindings::{Event, EventKind, Setup};
use crate::control::{event_of, kind_name, ControlPlugin, LoadedControl, Served};
use crate::load::PluginHost;
use crate::sandbox::{CallError, CallProfile, Observed};
use pilot_core::extension::PluginEvent;
use pilot_core::supervisor::{self, EventRecord, State};

/// The event each kind is exercised with by the smoke test, as the supervisor sends it.
fn sample_event(kind: EventKind) -> supervisor::Event {
    use supervisor::Event as E;
    let web = || "web".to_string();
    match kind {
        EventKind::StateChanged => E::State {
            process: web(),
            from: State::Running,
            to: State::BackingOff,
            reason: None,
        },
        EventKind::Spawned => E::Spawned {
            process: web(),
            pid: 4242,
        },
        EventKind::Ready => E::Ready {
            process: web(),
            pid: 4242,
            after_ms: 12.5,
        },
        EventKind::Exited => E::Exited {
            process: web(),
            pid: 4242,
            code: Some(3),
            signal: None,
            uptime_sec: 0.4,
        },
        EventKind::RestartScheduled => E::RestartScheduled {
            process: web(),
            delay_sec: 0.2,
            restarts: 1,
        },
        EventKind::GaveUp => E::GaveUp {
            process: web(),
            reason: "not ready after 5.0 s".into(),
        },
        EventKind::Adopted => E::Adopted {
            process: Some(web()),
            pid: 4343,
        },
        EventKind::Reloaded => E::Reloaded {
            added: Vec::new(),
            removed: Vec::new(),
            changed: vec![web()],
        },
        EventKind::Plugin => E::Plugin(PluginEvent::Quarantined {
            plugin: "other".into(),
        }),
        EventKind::ShuttingDown => E::ShuttingDown,
    }
}

/// What the events instance is asked to do.
enum Job {
    Event(Event),
    Tick,
}

/// The events instance of a check, on the plugin threads: made and configured by `init` first, made
/// afresh after a trap or a timeout, as in `run`.
struct Lane {
    jobs: mpsc::Sender<(Job, oneshot::Sender<(Outcome, CallProfile)>)>,
    /// What `init` answered: the kinds and tick asked for, or how it failed.
    setup: Result<Setup, Outcome>,
}

impl Lane {
    async fn start(plugin: &Arc<ControlPlugin>) -> Lane {
        let (jobs, mut queue) = mpsc::channel::<(Job, oneshot::Sender<(Outcome, CallProfile)>)>(1);
        let (setup_tx, setup_rx) = oneshot::channel();
        let p = plugin.clone();
        let started = plugin.threads().spawn(async move {
            let mut live = match p.instance().await {
                Ok((live, setup)) => {
                    let _ = setup_tx.send(Ok(setup));
                    Some(live)
                }
                Err(e) => {
                    let _ = setup_tx.send(Err(outcome(Err(e))));
                    None
                }
            };
            while let Some((job, reply)) = queue.recv().await {
                let (fuel, started) = (p.counters.fuel.load(Ordering::Relaxed), Instant::now());
                let result = match live.take() {
                    Some(l) => Ok(l),
                    None => p.instance().await.map(|(l, _)| l),
                };
                let result = match result {
                    Err(e) => Err(e),
                    Ok(mut l) => {
                        let r = p
                            .call(&mut l, move |b, store| {
                                Box::pin(async move {
                                    let exports = b.pilot_plugin_control_plugin();
                                    match job {
                                        Job::Event(e) => exports.call_on_event(store, &e).await,
                                        Job::Tick => exports.call_on_tick(store).await,
                                    }
                                })
                            })
                            .await;
                        // After a trap or a timeout the instance cannot be entered again.
                        if r.is_ok() {
                            live = Some(l);
                        }
                        r
                    }
                };
                let _ = reply.send((outcome(result), profile(&p, fuel, started)));
            }
        });
        let setup = match setup_rx.await {
            Ok(setup) if started => setup,
            _ => Err(Outcome::Failed(CallError::Trap(
                "the plugin threads stopped".into(),
            ))),
        };
        Lane { jobs, setup }
    }

    async fn run(&self, job: Job) -> (Outcome, CallProfile) {
        let (tx, rx) = oneshot::channel();
        let stopped = || {
            let e = CallError::Trap("its events instance stopped".into());
            (Outcome::Failed(e), CallProfile::default())
        };
        if self.jobs.send((job, tx)).await.is_err() {
            return stopped();
        }
        rx.await.unwrap_or_else(|_| stopped())
    }
}

fn outcome(r: Result<Result<(), crate::PluginError>, CallError>) -> Outcome {
    calls::outcome(r, |()| Outcome::Returned)
}

/// The wall time since `started` and the fuel `plugin` used since it had used `fuel`.
fn profile(plugin: &ControlPlugin, fuel: u64, started: Instant) -> CallProfile {
    CallProfile {
        ms: started.elapsed().as_secs_f64() * 1e3,
        fuel: plugin
            .counters
            .fuel
            .load(Ordering::Relaxed)
            .saturating_sub(fuel),
        ..CallProfile::default()
    }
}

/// Serves `call` as the control plane would, on a fresh instance.
async fn serve(plugin: &Arc<ControlPlugin>, call: &HttpCall) -> (Outcome, CallProfile) {
    let (fuel, started) = (plugin.counters.fuel.load(Ordering::Relaxed), Instant::now());
    let mut request = http::Request::new(call.body.clone());
    *request.method_mut() = call.method.clone();
    *request.uri_mut() = http::Uri::from(call.path.clone());
    *request.headers_mut() = call.headers.clone();
    let outcome = match plugin.serve(request).await {
        Served::Answer(a) => Outcome::Http {
            status: a.status().as_u16(),
            body: String::from_utf8_lossy(a.body()).into_owned(),
        },
        Served::Failed(why) => Outcome::Failed(CallError::Trap(why)),
        Served::Timeout(d) => Outcome::Failed(CallError::Timeout(d)),
        Served::TooLarge => Outcome::Failed(CallError::Trap(format!(
            "answered more than {} MiB",
            crate::control::MAX_RESPONSE_BYTES >> 20
        ))),
        Served::Busy | Served::Quarantined => Outcome::Failed(CallError::Quarantined),
    };
    (outcome, profile(plugin, fuel, started))
}

/// Returns whether `outcome` is what `expect` asks for.
fn meets(outcome: &Outcome, expect: &ControlExpect) -> bool {
    match (expect, outcome) {
        (
            ControlExpect::Http {
                status,
                body_contains,
            },
            Outcome::Http { status: s, body },
        ) => status.allows(*s) && body_contains.iter().all(|t| body.contains(t.as_str())),
        (ControlExpect::Http { .. }, _) => false,
        (ControlExpect::Ok, o) => o.meets(&Expect::Ok),
        (ControlExpect::Error(k), o) => o.meets(&Expect::Error(k.clone())),
    }
}

/// Judges one control-plugin call and records it (see [`super::settle`]).
fn settle(
    report: &mut Report,
    opts: &Options,
    name: String,
    source: &'static str,
    answer: (Outcome, CallProfile),
    expect: Option<(&ControlExpect, &Spec, usize)>,
) {
    let expectation = expect.map(|(want, spec, index)| Expectation {
        want: want.to_string(),
        met: meets(&answer.0, want),
        file: &spec.file,
        index,
    });
    let kind = "control-plugin";
    super::settle(
        report,
        &opts.budget,
        kind,
        name,
        source,
        answer,
        expectation,
    );
}

fn init_result(setup: &Setup) -> String {
    let kinds: Vec<&str> = setup.events.iter().map(|k| kind_name(*k)).collect();
    let tick = setup
        .tick_ms
        .map_or("none".to_string(), |ms| format!("{ms} ms"));
    format!("events [{}], tick {tick}", kinds.join(", "))
}

/// Checks a loaded control plugin with those of `specs` that are for it; what it tries beyond its
/// grants goes to `observed`.
pub(super) async fn check_control(
    host: &PluginHost,
    loaded: &LoadedControl,
    opts: &Options,
    specs: &[Spec],
    observed: &Observed,
    report: &mut Report,
) {
    let d = &loaded.description;
    report.name = Some(d.name.clone());
    report.version = Some(d.version.clone());
    super::check_imports(host, &loaded.component, &opts.policy, report);
    report.timings.compile_ms = Some(loaded.compile_time.as_secs_f64() * 1e3);
    let specs: Vec<&Spec> = specs
        .iter()
        .filter(|s| s.plugin.as_deref().is_none_or(|p| p == d.name))
        .collect();
    for spec in specs.iter().filter(|s| !s.calls.is_empty()) {
        report.spec_errors.push(format!(
            "spec file `{}` calls ready strategies, hooks or stat handlers, and `{}` is a control plugin; give it `http`, `event` and `tick` calls (or name the plugin it is for with `plugin:`)",
            spec.file.display(),
            pilot_core::manifest::escape_controls(&d.name)
        ));
    }
    if !report.spec_errors.is_empty() {
        return;
    }
    let base = specs
        .first()
        .map(|s| s.settings.clone())
        .unwrap_or_default();
    let Some(plugin) = start(host, loaded, opts, base, observed, report).await else {
        return;
    };
    let lane = Lane::start(&plugin).await;
    let setup = match &lane.setup {
        Ok(setup) => setup.clone(),
        Err(failed) => {
            return settle(
                report,
                opts,
                "init".into(),
                "smoke",
                (failed.clone(), CallProfile::default()),
                None,
            )
        }
    };
    report.calls.push(CallRecord {
        kind: "control-plugin",
        name: "init".into(),
        source: "smoke",
        ok: true,
        result: init_result(&setup),
        expected: None,
        profile: CallProfile::default(),
    });
    for kind in &setup.events {
        let record = EventRecord {
            seq: 1,
            at_ms: 1_700_000_000_000,
            event: sample_event(*kind),
        };
        let Some(event) = event_of(&record, &d.name) else {
            continue;
        };
        let answer = lane.run(Job::Event(event)).await;
        settle(
            report,
            opts,
            format!("on-event `{}`", kind_name(*kind)),
            "smoke",
            answer,
            None,
        );
    }
    if setup.tick_ms.is_some() {
        let answer = lane.run(Job::Tick).await;
        settle(report, opts, "on-tick".into(), "smoke", answer, None);
    }
    let root = HttpCall {
        method: http::Method::GET,
        path: http::uri::PathAndQuery::from_static("/"),
        headers: http::HeaderMap::new(),
        body: bytes::Bytes::new(),
    };
    let answer = serve(&plugin, &root).await;
    settle(report, opts, root.to_string(), "smoke", answer, None);
    for spec in specs {
        run_spec(host, loaded, opts, spec, observed, report).await;
    }
}

/// Builds the plugin with `settings` (and the command line's overrides).
async fn start(
    host: &PluginHost,
    loaded: &LoadedControl,
    opts: &Options,
    settings: pilot_core::manifest::PluginSettings,
    observed: &Observed,
    report: &mut Report,
) -> Option<Arc<ControlPlugin>> {
    let settings = opts.settings(settings);
    match ControlPlugin::for_check(host, loaded, settings, observed.clone()).await {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            report.finding("call-failed", format!("cannot start it: {e}"));
            None
        }
    }
}

/// Runs a spec file's calls in order, with the spec's settings: HTTP requests on fresh instances,
/// events and ticks on one events instance.
async fn run_spec(
    host: &PluginHost,
    loaded: &LoadedControl,
    opts: &Options,
    spec: &Spec,
    observed: &Observed,
    report: &mut Report,
) {
    if spec.control_calls.is_empty() {
        return;
    }
    let Some(plugin) = start(host, loaded, opts, spec.settings.clone(), observed, report).await
    else {
        return;
    };
    let needs_lane = spec
        .control_calls
        .iter()
        .any(|c| !matches!(c.target, ControlTarget::Http(_)));
    let lane = match needs_lane {
        true => Some(Lane::start(&plugin).await),
        false => None,
    };
    let me = &loaded.description.name;
    for call in &spec.control_calls {
        let expect = Some((&call.expect, spec, call.index));
        let (name, job) = match &call.target {
            ControlTarget::Http(h) => {
                let answer = serve(&plugin, h).await;
                settle(report, opts, h.to_string(), "spec", answer, expect);
                continue;
            }
            ControlTarget::Event(record) => {
                let ty = serde_json::to_value(&record.event)
                    .ok()
                    .and_then(|v| v["type"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let Some(event) = event_of(record, me) else {
                    spec_mismatch(report, spec, call.index, &format!("feeds a `{ty}` event about this plugin itself, which a plugin never gets; name another plugin"));
                    continue;
                };
                (
                    format!("on-event `{}`", kind_name(event.kind)),
                    Job::Event(event),
                )
            }
            ControlTarget::Tick => ("on-tick".to_string(), Job::Tick),
        };
        let lane = lane.as_ref().expect("made for events and ticks");
        let setup = match &lane.setup {
            Ok(setup) => setup,
            Err(failed) => {
                settle(
                    report,
                    opts,
                    name,
                    "spec",
                    (failed.clone(), CallProfile::default()),
                    expect,
                );
                continue;
            }
        };
        if let Some(why) = not_delivered(&job, setup) {
            spec_mismatch(report, spec, call.index, &why);
            continue;
        }
        let answer = lane.run(job).await;
        settle(report, opts, name, "spec", answer, expect);
    }
}

/// Why `run` would never deliver `job` to a plugin that `init` set up with `setup`, if it would not.
fn not_delivered(job: &Job, setup: &Setup) -> Option<String> {
    match job {
        Job::Event(e) if !setup.events.contains(&e.kind) => {
            let kinds: Vec<&str> = setup.events.iter().map(|k| kind_name(*k)).collect();
            Some(format!(
                "feeds a `{}` event, and the plugin's `init` subscribed to {}; it would never get it",
                kind_name(e.kind),
                if kinds.is_empty() { "no events".to_string() } else { format!("[{}] only", kinds.join(", ")) }
            ))
        }
        Job::Tick if setup.tick_ms.is_none() => Some(
            "asks for a tick, and the plugin's `init` asked for no ticks; it would never get one"
                .into(),
        ),
        _ => None,
    }
}

fn spec_mismatch(report: &mut Report, spec: &Spec, index: usize, why: &str) {
    report.finding(
        "spec",
        format!("`{}` calls[{index}] {why}", spec.file.display()),
    );
}
