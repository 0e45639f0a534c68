//! `pilot-host plugin check FILE...`: the CI gate for plugins nobody here wrote.
//!
//! Each file goes through the load path of `run` (compile or cache, `pilot:plugin` version, link,
//! describe), then: its imports against the capabilities policy; its names against the naming rule;
//! compile, cache-load and fresh-instance times; a smoke test of every declared export on a fresh
//! instance and the spec file's calls in order, all under production limits on the plugin's own
//! thread, each profiled (wall time, fuel, peak linear memory) against the budgets; and every access it
//! tried beyond its grants (see [`crate::watch`]). Each problem is a [`report::Finding`].

pub mod calls;
mod control;
pub mod control_spec;
pub mod policy;
pub mod report;
pub mod sarif;
pub mod spec;
pub mod world;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::calls::Outcome;
use self::policy::Policy;
use self::report::{CallRecord, Import, Report};
use self::spec::Spec;
use self::spec::Target;
use super::caps::Capability;
use super::load::{description_problems, no_events, LoadError, LoadedPlugin, PluginHost};
use super::sandbox::{CallProfile, Observed};
use pilot_core::manifest::{escape_controls, PluginSettings};

pub use self::calls::sample_process;

/// Budgets that turn an overrun into a finding.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    /// Fuel per call.
    pub max_fuel: Option<u64>,
    /// Peak linear memory, in MiB.
    pub max_memory_mib: Option<u64>,
    /// Wall time per call, in milliseconds.
    pub max_ms: Option<f64>,
    /// The component file's size, in MiB.
    pub max_size_mib: Option<f64>,
}

/// How to check.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--config`: the configuration `init` gets; wins over a spec file's.
    pub config: Option<serde_json::Value>,
    /// `--timeout-ms`: the wall-clock limit of each call; wins over a spec file's.
    pub call_timeout: Option<Duration>,
    /// `--params`: the `ready_params` of the smoke tests' ready checks, as JSON text.
    pub params: Option<String>,
    /// The spec files given with `--spec` (if none, `plugin-check.yaml` beside each file is read).
    pub specs: Vec<Spec>,
    /// The budgets.
    pub budget: Budget,
    /// The capabilities policy.
    pub policy: Policy,
}

impl Options {
    /// Returns `settings` with the command line's overrides.
    fn settings(&self, mut settings: PluginSettings) -> PluginSettings {
        if self.config.is_some() {
            settings.config = self.config.clone();
        }
        settings.call_timeout = self.call_timeout.or(settings.call_timeout);
        settings
    }
}

/// An empty folder offered to the plugin as `/` (see [`crate::watch`]), made exclusively
/// under a random name in the temporary folder (a name planted there is never taken for it), and
/// removed on drop.
struct DecoyRoot(tempfile::TempDir);

impl DecoyRoot {
    fn new() -> std::io::Result<DecoyRoot> {
        tempfile::Builder::new()
            .prefix("pilot-host-check-")
            .tempdir()
            .map(DecoyRoot)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Returns the spec files for `file`: those given with `--spec`, or else `plugin-check.yaml` (or
/// `.json`) beside it, if there is one. Which of them apply is decided once the plugin's name is known.
pub fn specs_for(opts: &Options, file: &Path) -> Result<Vec<Spec>, String> {
    if !opts.specs.is_empty() {
        return Ok(opts.specs.clone());
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    for name in spec::DEFAULT_NAMES {
        let path = dir.join(name);
        if path.is_file() {
            return Spec::read(&path).map(|s| vec![s]);
        }
    }
    Ok(Vec::new())
}

/// Checks one file, with those of `specs` (see [`specs_for`]) that are for its plugin or for any.
pub async fn check_file(host: &PluginHost, file: &Path, opts: &Options, specs: &[Spec]) -> Report {
    let mut report = Report::new(file.to_owned());
    report.size_bytes = std::fs::metadata(file).map_or(0, |m| m.len());
    let decoy = match DecoyRoot::new() {
        Ok(d) => d,
        Err(e) => {
            report.finding(
                "unreadable",
                format!("cannot make the check's empty root folder: {e}"),
            );
            return report;
        }
    };
    let observed = Observed {
        attempts: Arc::new(Mutex::new(Vec::new())),
        decoy_root: decoy.path().to_path_buf(),
        stand_in: Default::default(),
    };
    check_size(&mut report, &opts.budget);
    match host.load_unchecked(file, Some(observed.clone())).await {
        Ok(plugin) => check_loaded(host, &plugin, opts, specs, &observed, &mut report).await,
        // A control plugin is checked its own way (see `control`).
        Err(LoadError::Link { .. }) if host.is_control_file(file).await => {
            match host.load_any(file).await {
                Ok(super::load::AnyPlugin::Control(c)) => {
                    control::check_control(host, &c, opts, specs, &observed, &mut report).await
                }
                Ok(_) => {}
                Err(e) => report.finding(load_rule(&e), e.to_string()),
            }
        }
        Err(e) => report.finding(load_rule(&e), e.to_string()),
    }
    let attempts = observed
        .attempts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    // Reading the environment is listed but is no finding: language runtimes (Python's, for one)
    // read it whole as they start, and without `allow_env` it is empty, so nothing is learnt.
    for a in attempts.iter().filter(|a| a.kind != "environment") {
        report.finding("ungranted-access", a.to_string());
    }
    report.attempts = attempts;
    report.granted = observed.stand_in.used();
    report
}

fn load_rule(e: &LoadError) -> &'static str {
    match e {
        LoadError::Read { .. } | LoadError::NotComponent { .. } | LoadError::Compile { .. } => {
            "unreadable"
        }
        LoadError::WitVersion { .. } => "wit-version",
        LoadError::Link { .. } => "interface",
        LoadError::Describe { .. } => "describe",
        LoadError::Description { .. } => "name",
    }
}

async fn check_loaded(
    host: &PluginHost,
    plugin: &LoadedPlugin,
    opts: &Options,
    specs: &[Spec],
    observed: &Observed,
    report: &mut Report,
) {
    let d = &plugin.description;
    report.name = Some(d.name.clone());
    report.version = Some(d.version.clone());
    for problem in description_problems(d) {
        report.finding("name", problem);
    }
    check_imports(host, &plugin.component, &opts.policy, report);
    report.timings.compile_ms = Some(plugin.compile_time.as_secs_f64() * 1e3);
    other_compile_time(host, plugin, report).await;
    let specs: Vec<&Spec> = specs
        .iter()
        .filter(|s| s.plugin.as_deref().is_none_or(|p| p == d.name))
        .collect();
    for spec in specs.iter().filter(|s| !s.control_calls.is_empty()) {
        report.spec_errors.push(format!(
            "spec file `{}` makes `http`, `event` or `tick` calls, which only control plugins take, and `{}` is not one; call its ready strategies, hooks or stat handlers (or name the plugin it is for with `plugin:`)",
            spec.file.display(),
            escape_controls(&d.name)
        ));
    }
    if !report.spec_errors.is_empty() {
        return;
    }
    let base = specs
        .first()
        .map(|s| s.settings.clone())
        .unwrap_or_default();
    let actor = match plugin.actor(
        host,
        opts.settings(base),
        no_events(),
        Some(observed.clone()),
    ) {
        Ok(actor) => actor,
        Err(e) => return report.finding("call-failed", format!("cannot start its actor: {e}")),
    };
    report.timings.fresh_instance_ms = fresh_instance_ms(&actor).await;
    // A ready strategy the spec files call with their own `ready_params` is exercised there; its
    // smoke test with `{}` would only try a default path or address outside the spec's grants.
    let covered: std::collections::HashSet<&str> = specs
        .iter()
        .flat_map(|s| &s.calls)
        .filter_map(|c| match &c.target {
            Target::Ready { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let params = opts.params.clone().unwrap_or_else(|| "{}".into());
    for (kind, name, target) in calls::smoke_targets(d, &params) {
        if opts.params.is_none()
            && matches!(&target, Target::Ready { name, .. } if covered.contains(name.as_str()))
        {
            continue;
        }
        let result = calls::call(&actor, true, target, sample_process()).await;
        settle(report, &opts.budget, kind, name, "smoke", result, None);
    }
    for spec in specs {
        run_spec(host, plugin, opts, spec, observed, report).await;
    }
}

/// Lists the imports as capabilities and reports those outside the policy.
fn check_imports(
    host: &PluginHost,
    component: &wasmtime::component::Component,
    policy: &Policy,
    report: &mut Report,
) {
    let ty = component.component_type();
    for (name, _) in ty.imports(&host.engine.engine) {
        let Some(cap) = Capability::of(name) else {
            continue;
        };
        report.imports.push(Import {
            name: name.to_string(),
            capability: cap.name().to_string(),
        });
        if !cap.always() && !report.capabilities.iter().any(|c| c == cap.name()) {
            report.capabilities.push(cap.name().to_string());
            if !policy.allows(cap) {
                report.finding(
                    "capability",
                    format!(
                        "imports `{}` ({}), outside the policy (allowed: {})",
                        escape_controls(name),
                        cap.what(),
                        policy.allowed().join(", ")
                    ),
                );
            }
        }
    }
}

/// Measures whichever of compiling and loading from the cache the load did not do.
async fn other_compile_time(host: &PluginHost, plugin: &LoadedPlugin, report: &mut Report) {
    let (engine, file, cached) = (host.engine.clone(), plugin.file.clone(), plugin.from_cache);
    let measured = tokio::task::spawn_blocking(move || {
        let wasm = std::fs::read(&file).ok()?;
        let started = Instant::now();
        if cached {
            engine.compile_fresh(&wasm).ok()?;
        } else {
            let (_, from_cache) = engine.compile(&wasm).ok()?;
            from_cache.then_some(())?;
        }
        Some(started.elapsed().as_secs_f64() * 1e3)
    })
    .await
    .ok()
    .flatten();
    if cached {
        report.timings.cache_load_ms = report.timings.compile_ms;
        report.timings.compile_ms = measured;
    } else {
        report.timings.cache_load_ms = measured;
    }
}

/// Returns the median time of five fresh instances (store, WASI context, instantiate, `init`).
async fn fresh_instance_ms(actor: &super::Actor) -> Option<f64> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let profile = actor
            .with(|sandbox| {
                Box::pin(async move {
                    sandbox.reset();
                    let noop = super::call_fn(|_, _| Box::pin(async { Ok(()) }));
                    sandbox.call(noop).await.ok()?;
                    Some(sandbox.last_profile())
                })
            })
            .await
            .flatten()?;
        times.push(profile.fresh_instance_ms?);
    }
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied()
}

/// Runs a spec file's calls in order on one instance, with the spec's settings.
async fn run_spec(
    host: &PluginHost,
    plugin: &LoadedPlugin,
    opts: &Options,
    spec: &Spec,
    observed: &Observed,
    report: &mut Report,
) {
    let settings = opts.settings(spec.settings.clone());
    let actor = match plugin.actor(host, settings, no_events(), Some(observed.clone())) {
        Ok(actor) => actor,
        Err(e) => return report.finding("call-failed", format!("cannot start its actor: {e}")),
    };
    let d = &plugin.description;
    for (i, call) in spec.calls.iter().enumerate() {
        let (kind, name, provided) = match &call.target {
            Target::Ready { name, .. } => ("ready-strategy", name, &d.ready_strategies),
            Target::Hook { name, .. } => ("lifecycle-hook", name, &d.lifecycle_hooks),
            Target::Stats { name, .. } => ("stat-handler", name, &d.stat_handlers),
        };
        if !provided.contains(name) {
            report.finding(
                "spec",
                format!(
                    "`{}` calls[{i}] calls {kind} `{}`, which the plugin does not provide (it provides: {})",
                    spec.file.display(),
                    escape_controls(name),
                    escape_controls(&provided.join(", "))
                ),
            );
            continue;
        }
        let shown = match &call.target {
            Target::Hook { name, event, .. } => format!("{name} at {event}"),
            _ => name.clone(),
        };
        let info = calls::process(&call.process);
        let result = calls::call(&actor, i == 0, call.target.clone(), info).await;
        let expect = Expectation {
            want: call.expect.to_string(),
            met: result.0.meets(&call.expect),
            file: &spec.file,
            index: i,
        };
        settle(
            report,
            &opts.budget,
            kind,
            shown,
            "spec",
            result,
            Some(expect),
        );
    }
}

/// Judges a finished call and records it in the report: the one place a call of any kind (smoke or
/// spec, pilot plugin or control plugin) becomes a record and findings.
fn settle(
    report: &mut Report,
    budget: &Budget,
    kind: &'static str,
    name: String,
    source: &'static str,
    (outcome, profile): (Outcome, CallProfile),
    expect: Option<Expectation<'_>>,
) {
    let expected = expect.as_ref().map(|e| e.want.clone());
    judge(report, budget, &name, kind, &outcome, &profile, expect);
    report.calls.push(CallRecord {
        kind,
        name,
        source,
        ok: outcome.returned(),
        result: outcome.to_string(),
        expected,
        profile,
    });
}

/// What a spec call expected, and whether it got it.
struct Expectation<'a> {
    /// The expectation, as the report shows it.
    want: String,
    /// Whether the call answered that.
    met: bool,
    /// The spec file.
    file: &'a Path,
    /// The call's place in its `calls`.
    index: usize,
}

/// Turns a failed call, an unmet expectation or an overrun budget into findings.
fn judge(
    report: &mut Report,
    budget: &Budget,
    name: &str,
    kind: &str,
    outcome: &Outcome,
    profile: &CallProfile,
    expect: Option<Expectation<'_>>,
) {
    let what = format!("{kind} `{}`", escape_controls(name));
    if let Outcome::PluginError("init", e) = outcome {
        if !report.findings.iter().any(|f| f.rule == "init") {
            report.finding(
                "init",
                format!("`init` refused the configuration it was given, so no export was exercised: {}; give one that works with `--config JSON` or a spec file's `config`", escape_controls(e)),
            );
        }
    } else if let Outcome::Failed(e) = outcome {
        report.finding("call-failed", format!("{what} {e}"));
    } else if let Some(e) = expect.filter(|e| !e.met) {
        report.finding(
            "expectation",
            format!(
                "{what} answered {}; `{}` calls[{}] expects {}",
                escape_controls(&outcome.to_string()),
                e.file.display(),
                e.index,
                escape_controls(&e.want)
            ),
        );
    }
    let over = |name: &str, got: String, max: String, flag: &str| {
        format!("{what} used {got} {name}, over the budget of {max} (`{flag}`)")
    };
    if let Some(max) = budget.max_fuel.filter(|m| profile.fuel > *m) {
        report.finding(
            "budget",
            over(
                "fuel",
                profile.fuel.to_string(),
                max.to_string(),
                "--max-fuel",
            ),
        );
    }
    if let Some(max) = budget.max_ms.filter(|m| profile.ms > *m) {
        let (got, max) = (format!("{:.2}", profile.ms), format!("{max}"));
        report.finding("budget", over("ms", got, max, "--max-ms"));
    }
    let peak_mib = profile.peak_memory as f64 / (1 << 20) as f64;
    if let Some(max) = budget.max_memory_mib.filter(|m| peak_mib > *m as f64) {
        let (got, max) = (format!("{peak_mib:.1}"), max.to_string());
        report.finding(
            "budget",
            over("MiB of linear memory", got, max, "--max-memory-mib"),
        );
    }
}

fn check_size(report: &mut Report, budget: &Budget) {
    let mib = report.size_bytes as f64 / (1 << 20) as f64;
    if let Some(max) = budget.max_size_mib.filter(|m| mib > *m) {
        report.finding(
            "budget",
            format!(
                "the component is {mib:.2} MiB, over the budget of {max} MiB (`--max-size-mib`)"
            ),
        );
    }
}
