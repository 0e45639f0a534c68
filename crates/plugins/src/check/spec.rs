//! The spec file of `plugin check` (`plugin-check.yaml` beside the plugin, or `--spec FILE`): the
//! plugin's own test cases, run under production limits, with the answers expected.
//!
//! ```yaml
//! version: 1
//! plugin: mem-guard                  # optional: the spec applies only to this plugin
//! config: { max_rss_mib: 0, samples: 2 }
//! grants: { allow_read: [/etc/myapp], allow_tcp: ["127.0.0.1:8080"], allow_env: [HOME] }
//! limits: { fuel: 1000000000, memory_mib: 64, call_timeout_ms: 1000 }
//! calls:                             # in order, on one instance, as in production
//!   - stat_handler: mem-guard
//!     samples: [{ name: hog, rss_bytes: 1048576 }]
//!     expect: { actions: [] }
//!   - stat_handler: mem-guard
//!     samples: [{ name: hog, rss_bytes: 1048576 }]
//!     expect: { actions: [{ restart: hog }] }
//! ```
//!
//! `expect` is `ready`, `not_yet`, `ok` (returned anything), `error` (the plugin's own error, any kind),
//! `{ not_yet: TEXT }` (the reason contains TEXT), `{ error: KIND }` (`invalid_config`,
//! `unknown_name`, `unavailable`, `failed`) or `{ actions: [{ restart: NAME } | { stop: NAME }] }`.
//!
//! A control plugin's spec file calls its HTTP handler, feeds it events and ticks (see
//! [`super::control_spec`]), and grants it control calls and outgoing hosts as the manifest would:
//!
//! ```yaml
//! version: 1
//! plugin: ops-endpoints
//! grants: { control: [read, restart], http: ["127.0.0.1:9000", hooks.example.com] }
//! calls:
//!   - http: { method: POST, path: /restart-group, body: '{"prefix":"web"}', headers: { content-type: application/json } }
//!     expect: { status: 200, body_contains: [restarted] }
//!   - event: { type: exited, process: web, code: 3 }
//!     expect: ok
//!   - tick: {}
//! ```
//!
//! A file's calls are for one kind of plugin: those of plugins (`ready_check`, `lifecycle_hook`,
//! `stat_handler`) or those of control plugins (`http`, `event`, `tick`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::control_spec::{self, ControlCall, RawControl, RawHttp};
use pilot_core::manifest::PluginSettings;

/// The file name looked for beside a plugin when no `--spec` is given.
pub const DEFAULT_NAMES: [&str; 2] = ["plugin-check.yaml", "plugin-check.json"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    version: Option<u32>,
    plugin: Option<String>,
    config: Option<Value>,
    #[serde(default)]
    grants: RawGrants,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    calls: Vec<RawCall>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrants {
    #[serde(default)]
    allow_read: Vec<PathBuf>,
    #[serde(default)]
    allow_write: Vec<PathBuf>,
    #[serde(default)]
    allow_tcp: Vec<String>,
    #[serde(default)]
    allow_env: Vec<String>,
    #[serde(default)]
    control: Vec<String>,
    #[serde(default)]
    http: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel: Option<u64>,
    memory_mib: Option<u64>,
    call_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCall {
    ready_check: Option<String>,
    lifecycle_hook: Option<String>,
    stat_handler: Option<String>,
    params: Option<Value>,
    process: Option<BTreeMap<String, Value>>,
    event: Option<Value>,
    exit_code: Option<i32>,
    signal: Option<i32>,
    samples: Option<Vec<BTreeMap<String, Value>>>,
    http: Option<RawHttp>,
    tick: Option<Value>,
    expect: Option<Value>,
}

/// A parsed spec file.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Where it was read from.
    pub file: PathBuf,
    /// The plugin it is for, if it says.
    pub plugin: Option<String>,
    /// Settings (configuration, grants, limits) to check the plugin with.
    pub settings: PluginSettings,
    /// The calls of a plugin, in order.
    pub calls: Vec<SpecCall>,
    /// The calls of a control plugin, in order (a file has these or `calls`, not both).
    pub control_calls: Vec<ControlCall>,
}

/// What a spec call calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A ready check, with its `ready_params` as JSON text.
    Ready {
        /// The strategy.
        name: String,
        /// `ready_params`.
        params: String,
    },
    /// A lifecycle hook at an event.
    Hook {
        /// The hook.
        name: String,
        /// `pre_start`, `post_start`, `on_shutdown` or `on_restart`.
        event: String,
        /// For `on_shutdown`: the exit code and signal.
        exit: (Option<i32>, Option<i32>),
    },
    /// A stat handler, with samples as JSON objects.
    Stats {
        /// The handler.
        name: String,
        /// The samples (fields of `process-stats`; missing ones are 0).
        samples: Vec<BTreeMap<String, Value>>,
    },
}

/// What a call must answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// `ready`.
    Ready,
    /// `not_yet`, with a reason containing the text if given.
    NotYet(Option<String>),
    /// Returned anything that is not the plugin's own error.
    Ok,
    /// The plugin's own error, of the kind if given.
    Error(Option<String>),
    /// A stat handler's actions: (`restart` or `stop`, process), in order.
    Actions(Vec<(String, String)>),
}

/// One call of a spec file.
#[derive(Debug, Clone)]
pub struct SpecCall {
    /// What it calls.
    pub target: Target,
    /// The process the call is about (fields of `process-info`; missing ones are made up).
    pub process: BTreeMap<String, Value>,
    /// What it must answer.
    pub expect: Expect,
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Ready => write!(f, "ready"),
            Expect::NotYet(None) => write!(f, "not_yet"),
            Expect::NotYet(Some(t)) => write!(f, "not_yet containing `{t}`"),
            Expect::Ok => write!(f, "ok"),
            Expect::Error(None) => write!(f, "the plugin's own error"),
            Expect::Error(Some(k)) => write!(f, "error `{k}`"),
            Expect::Actions(a) => {
                let list: Vec<String> = a.iter().map(|(k, p)| format!("{k} `{p}`")).collect();
                write!(f, "actions [{}]", list.join(", "))
            }
        }
    }
}

const ERROR_KINDS: [&str; 4] = ["invalid_config", "unknown_name", "unavailable", "failed"];
const EVENTS: [&str; 4] = ["pre_start", "post_start", "on_shutdown", "on_restart"];

impl Spec {
    /// Reads and checks the spec file at `path`; the error names the file, the field and the fix.
    pub fn read(path: &Path) -> Result<Spec, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read spec file `{shown}`: {e}"))?;
        let raw: RawSpec = serde_yaml::from_str(&text)
            .map_err(|e| format!("spec file `{shown}` is not valid: {e}"))?;
        if raw.version.is_some_and(|v| v != 1) {
            return Err(format!(
                "spec file `{shown}`: `version` is {}, and this pilot-host reads version 1; write `version: 1`",
                raw.version.unwrap_or_default()
            ));
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let base = &std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_owned());
        let settings = settings(&raw, base).map_err(|e| format!("spec file `{shown}`: {e}"))?;
        let (mut calls, mut control_calls) = (Vec::new(), Vec::new());
        for (i, c) in raw.calls.into_iter().enumerate() {
            let at = |e: String| format!("spec file `{shown}`: `calls[{i}]`: {e}");
            if is_control(&c) {
                let events = control_calls
                    .iter()
                    .filter(|c: &&ControlCall| {
                        matches!(c.target, control_spec::ControlTarget::Event(_))
                    })
                    .count() as u64;
                control_calls.push(control_call(c, i, events + 1).map_err(at)?);
            } else {
                calls.push(call(c, base).map_err(at)?);
            }
            if !calls.is_empty() && !control_calls.is_empty() {
                return Err(at(
                    "this call is for another kind of plugin than the calls before it; a spec file's calls are those of plugins (`ready_check`, `lifecycle_hook`, `stat_handler`) or those of control plugins (`http`, `event`, `tick`): split them into two files".into(),
                ));
            }
        }
        Ok(Spec {
            file: path.to_owned(),
            plugin: raw.plugin,
            settings,
            calls,
            control_calls,
        })
    }
}

fn settings(raw: &RawSpec, base: &Path) -> Result<PluginSettings, String> {
    let mut allow_tcp = Vec::new();
    for (i, dest) in raw.grants.allow_tcp.iter().enumerate() {
        let parsed = dest
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)))
            .filter(|(h, p): &(String, u16)| !h.is_empty() && *p != 0);
        allow_tcp.push(parsed.ok_or_else(|| {
            format!("`grants.allow_tcp[{i}]` is `{dest}`; write `host:port`, e.g. `127.0.0.1:8080`")
        })?);
    }
    let (grants, problems) =
        pilot_core::manifest::parse_grants(&raw.grants.control, &raw.grants.http);
    if let Some((field, problem)) = problems.into_iter().next() {
        return Err(format!("`grants.{field}`: {problem}"));
    }
    let absolute = |paths: &[PathBuf]| paths.iter().map(|p| base.join(p)).collect();
    Ok(PluginSettings {
        fuel: raw.limits.fuel,
        memory_bytes: raw.limits.memory_mib.map(|m| m << 20),
        call_timeout: raw.limits.call_timeout_ms.map(Duration::from_millis),
        allow_read: absolute(&raw.grants.allow_read),
        allow_write: absolute(&raw.grants.allow_write),
        allow_tcp,
        allow_env: raw.grants.allow_env.clone(),
        config: raw.config.clone(),
        grants,
    })
}

/// Returns whether `raw` is a call of a control plugin: `http`, `tick`, or an `event` that is not a
/// lifecycle hook's.
fn is_control(raw: &RawCall) -> bool {
    let plugin =
        raw.ready_check.is_some() || raw.lifecycle_hook.is_some() || raw.stat_handler.is_some();
    !plugin && (raw.http.is_some() || raw.tick.is_some() || raw.event.is_some())
}

/// Reads a call of a control plugin, the `events`-th event of the file if it is one.
fn control_call(raw: RawCall, index: usize, events: u64) -> Result<ControlCall, String> {
    let stray = [
        ("params", raw.params.is_some()),
        ("process", raw.process.is_some()),
        ("exit_code", raw.exit_code.is_some()),
        ("signal", raw.signal.is_some()),
        ("samples", raw.samples.is_some()),
    ];
    if let Some((field, _)) = stray.iter().find(|(_, given)| *given) {
        return Err(format!(
            "`{field}` is not a field of a control plugin's call; an `http`, `event` or `tick` call takes only `expect` beside it (a process goes into the event: `event: {{ type: exited, process: web }}`)"
        ));
    }
    control_spec::call(
        RawControl {
            http: raw.http,
            event: raw.event,
            tick: raw.tick,
            expect: raw.expect,
        },
        index,
        events,
    )
}

/// Reads one call; a relative `process.working_directory` is taken from the spec file's folder, as
/// grant paths are.
fn call(raw: RawCall, base: &Path) -> Result<SpecCall, String> {
    let kinds = [
        raw.ready_check.is_some(),
        raw.lifecycle_hook.is_some(),
        raw.stat_handler.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 || raw.http.is_some() || raw.tick.is_some() {
        return Err("name exactly one of `ready_check`, `lifecycle_hook`, `stat_handler` (plugins) or `http`, `event`, `tick` (control plugins)".into());
    }
    let Some(expect_value) = raw.expect else {
        return Err(
            "`expect` is missing; write what the call must answer, e.g. `expect: ok`".into(),
        );
    };
    let target = if let Some(name) = raw.ready_check {
        let params = raw.params.unwrap_or(Value::Object(Default::default()));
        Target::Ready {
            name,
            params: params.to_string(),
        }
    } else if let Some(name) = raw.lifecycle_hook {
        let event = match raw.event {
            None => "pre_start".to_string(),
            Some(Value::String(e)) if EVENTS.contains(&e.as_str()) => e,
            Some(Value::String(e)) => {
                return Err(format!(
                    "`event` is `{e}`; use one of `{}`",
                    EVENTS.join("`, `")
                ))
            }
            Some(other) => {
                return Err(format!(
                    "`event` is `{other}`; a lifecycle hook's `event` is one of `{}`",
                    EVENTS.join("`, `")
                ))
            }
        };
        Target::Hook {
            name,
            event,
            exit: (raw.exit_code, raw.signal),
        }
    } else {
        Target::Stats {
            name: raw.stat_handler.unwrap_or_default(),
            samples: raw.samples.unwrap_or_default(),
        }
    };
    let mut process = raw.process.unwrap_or_default();
    if let Some(Value::String(dir)) = process.get("working_directory") {
        if Path::new(dir).is_relative() {
            let absolute = base.join(dir).display().to_string();
            process.insert("working_directory".into(), Value::String(absolute));
        }
    }
    Ok(SpecCall {
        target,
        process,
        expect: expect(&expect_value)?,
    })
}

fn expect(v: &Value) -> Result<Expect, String> {
    let known = "use `ready`, `not_yet`, `ok`, `error`, `{ not_yet: TEXT }`, `{ error: KIND }` or `{ actions: [{ restart: NAME }] }`";
    let bad = || format!("`expect` is `{v}`; {known}");
    match v {
        Value::String(s) => match s.as_str() {
            "ready" => Ok(Expect::Ready),
            "not_yet" => Ok(Expect::NotYet(None)),
            "ok" => Ok(Expect::Ok),
            "error" => Ok(Expect::Error(None)),
            _ => Err(bad()),
        },
        Value::Object(map) if map.len() == 1 => {
            let (key, value) = map.iter().next().expect("one entry");
            match (key.as_str(), value) {
                ("not_yet", Value::String(t)) => Ok(Expect::NotYet(Some(t.clone()))),
                ("error", Value::String(k)) if ERROR_KINDS.contains(&k.as_str()) => {
                    Ok(Expect::Error(Some(k.clone())))
                }
                ("error", _) => Err(format!(
                    "`expect.error` is `{value}`; use one of `{}`",
                    ERROR_KINDS.join("`, `")
                )),
                ("actions", Value::Array(list)) => list
                    .iter()
                    .map(|a| match a.as_object().and_then(|o| o.iter().next()) {
                        Some((k, Value::String(p)))
                            if a.as_object().map(|o| o.len()) == Some(1)
                                && (k == "restart" || k == "stop") =>
                        {
                            Ok((k.clone(), p.clone()))
                        }
                        _ => Err(format!(
                            "`expect.actions` holds `{a}`; write `{{ restart: NAME }}` or `{{ stop: NAME }}`"
                        )),
                    })
                    .collect::<Result<_, _>>()
                    .map(Expect::Actions),
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Spec, String> {
        let dir = std::env::temp_dir().join(format!("pilot-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.yaml", fastrand::u64(..)));
        std::fs::write(&path, yaml).unwrap();
        let spec = Spec::read(&path);
        let _ = std::fs::remove_file(&path);
        spec
    }

    #[test]
    fn a_full_spec_reads() {
        let spec = parse(
            "version: 1\nplugin: p\nconfig: {a: 1}\ngrants: {allow_tcp: ['127.0.0.1:80'], allow_read: [data]}\nlimits: {call_timeout_ms: 50}\ncalls:\n  - {ready_check: r, params: {x: 1}, expect: {error: invalid_config}}\n  - {lifecycle_hook: h, event: on_shutdown, exit_code: 3, expect: ok}\n  - {stat_handler: s, samples: [{name: a}], expect: {actions: [{restart: a}]}}\n",
        )
        .unwrap();
        assert_eq!(spec.plugin.as_deref(), Some("p"));
        assert_eq!(spec.settings.allow_tcp, [("127.0.0.1".to_string(), 80)]);
        assert!(spec.settings.allow_read[0].ends_with("data"));
        assert_eq!(spec.settings.call_timeout, Some(Duration::from_millis(50)));
        assert_eq!(spec.calls.len(), 3);
        assert_eq!(
            spec.calls[0].expect,
            Expect::Error(Some("invalid_config".into()))
        );
        assert_eq!(
            spec.calls[2].expect,
            Expect::Actions(vec![("restart".into(), "a".into())])
        );
    }

    #[test]
    fn mistakes_name_the_field_and_the_fix() {
        for (yaml, want) in [
            (
                "calls: [{ready_check: r, expect: redy}]",
                "`calls[0]`: `expect` is `\"redy\"`",
            ),
            (
                "calls: [{ready_check: r, stat_handler: s, expect: ok}]",
                "name exactly one of",
            ),
            (
                "calls: [{lifecycle_hook: h, event: boot, expect: ok}]",
                "`event` is `boot`",
            ),
            (
                "calls: [{ready_check: r, expect: {error: oops}}]",
                "`expect.error` is `\"oops\"`",
            ),
            (
                "grants: {allow_tcp: [localhost]}",
                "`grants.allow_tcp[0]` is `localhost`",
            ),
            ("version: 2", "`version` is 2"),
            ("cals: []", "unknown field `cals`"),
        ] {
            let e = parse(yaml).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
