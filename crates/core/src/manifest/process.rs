//! Checks of one process entry, field by field.

use std::os::unix::fs::FileTypeExt;
use std::time::Duration;

use serde_json::{Map, Value};

use super::explain::{closest, list};
use super::model::{ProcessSpec, Readiness, ReadyStrategy, RestartPolicy};
use super::raw::{RawProcess, RawRestart};
use super::resolve::{absolute, executable, shown};
use super::validate::Checker;
use super::ProcessRef;

/// The built-in ready strategies.
pub const BUILTIN_READY: [&str; 3] = ["tcp", "pipe", "file"];

/// One process entry and how to name it in messages.
pub(super) struct ProcessInput<'a> {
    pub who: &'a ProcessRef,
    pub raw: &'a RawProcess,
}

/// Returns whether `name` can name a process: letters, digits, `_`, `-`, `.`, not starting with a symbol.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Returns why `name` cannot name an environment variable, if it cannot.
pub fn bad_env_name(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("an empty name is not an environment variable name; remove it".into())
    } else if name.contains(['=', '\0']) {
        Some(format!(
            "`{}` is not an environment variable name: it contains `=` or a NUL byte; rename it",
            name.escape_debug()
        ))
    } else {
        None
    }
}

/// Checks one process; returns its spec when it is valid on its own.
pub(super) fn check(c: &mut Checker, input: ProcessInput) -> Option<ProcessSpec> {
    let ProcessInput { who, raw } = input;
    let before = c.problems.len();
    let who_opt = Some(who);
    let name = match raw.name.as_deref() {
        None if c.reported(who_opt, "name") => String::new(),
        None => {
            c.problem(
                who_opt,
                "name",
                "is missing; give every process a unique `name`",
            );
            String::new()
        }
        Some(n) if !valid_name(n) => {
            c.problem(who_opt, "name", format!("`{n}` is not a valid name; use letters, digits, `_`, `-` and `.`, starting with a letter or digit"));
            String::new()
        }
        Some(n) => n.to_string(),
    };
    let env: std::collections::BTreeMap<String, String> = raw
        .env
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    for why in env.keys().filter_map(|k| bad_env_name(k)) {
        c.problem(who_opt, "env", why);
    }
    let search_path = env
        .get("PATH")
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("PATH"));
    let executable = match raw.path.as_deref() {
        None if c.reported(who_opt, "path") => None,
        None => {
            c.problem(
                who_opt,
                "path",
                "is missing; give the executable to run, e.g. `path: ./bin/server`",
            );
            None
        }
        Some(p) => match executable(p, &c.base, search_path.as_deref()) {
            Ok(found) => {
                if let Some(w) = found.warning {
                    c.warn(who_opt, "path", w);
                }
                Some(found.path)
            }
            Err(why) => {
                c.problem(who_opt, "path", why);
                None
            }
        },
    };
    let working_directory = match (&raw.working_directory, &executable) {
        (Some(dir), _) => {
            let path = absolute(dir, &c.base);
            if !path.is_dir() {
                c.problem(
                    who_opt,
                    "working_directory",
                    format!(
                        "{} is not an existing folder; create it or fix the path",
                        shown(dir, &path)
                    ),
                );
            }
            path
        }
        (None, Some(exe)) => exe
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| c.base.clone()),
        (None, None) => c.base.clone(),
    };
    let timeout = c.seconds(who_opt, "timeout", raw.timeout, 5.0, false);
    let ready = readiness(c, who, raw);
    let affinity = affinity(c, who, raw);
    let restart = restart_policy(c, who, raw.restart.as_ref().cloned().unwrap_or_default());
    plugin_names(
        c,
        who,
        "lifecycle_hooks",
        raw.lifecycle_hooks.as_deref(),
        |cat| &cat.lifecycle_hooks,
    );
    plugin_names(
        c,
        who,
        "stat_handlers",
        raw.stat_handlers.as_deref(),
        |cat| &cat.stat_handlers,
    );
    if c.problems.len() > before {
        return None;
    }
    Some(ProcessSpec {
        name,
        path_written: raw.path.clone().unwrap_or_default(),
        executable: executable?,
        args: raw.args.iter().flatten().map(|a| a.to_string()).collect(),
        env,
        working_directory,
        timeout,
        shutdown_strategy: raw.shutdown_strategy.unwrap_or_default(),
        dependencies: raw.dependencies.clone().unwrap_or_default(),
        ready,
        lifecycle_hooks: raw.lifecycle_hooks.clone().unwrap_or_default(),
        stat_handlers: raw.stat_handlers.clone().unwrap_or_default(),
        affinity,
        restart,
    })
}

fn plugin_names(
    c: &mut Checker,
    who: &ProcessRef,
    field: &str,
    names: Option<&[String]>,
    provided: impl Fn(&super::Catalog) -> &std::collections::BTreeSet<String>,
) {
    let kind = if field == "lifecycle_hooks" {
        "lifecycle hook"
    } else {
        "stat handler"
    };
    for name in names.into_iter().flatten() {
        let known = provided(c.catalog);
        if known.contains(name) || c.catalog.accept_any {
            continue;
        }
        let message = if !c.catalog.loaded {
            format!(
                "{kind} `{name}` needs a plugin, and no plugins are loaded; pass `--plugins DIR`"
            )
        } else {
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            let hint = closest(name, known.iter().copied())
                .map(|b| format!("; did you mean `{b}`?"))
                .unwrap_or_default();
            format!(
                "no loaded plugin provides {kind} `{name}` (known: {}){hint}",
                if known.is_empty() {
                    "none".into()
                } else {
                    list(&known, 12)
                }
            )
        };
        c.problem(Some(who), field, message);
    }
}

fn readiness(c: &mut Checker, who: &ProcessRef, raw: &RawProcess) -> Option<Readiness> {
    let who_opt = Some(who);
    let timeout = c.seconds(
        who_opt,
        "ready_timeout_sec",
        raw.ready_timeout_sec,
        5.0,
        true,
    );
    let params = raw.ready_params.clone().unwrap_or_default();
    let Some(name) = raw.ready_strategy.as_deref() else {
        if raw.ready_params.is_some() {
            c.problem(who_opt, "ready_params", "is set but `ready_strategy` is not; add `ready_strategy` (`tcp`, `pipe`, `file` or a plugin's) or remove `ready_params`");
        }
        return None;
    };
    let strategy = match name {
        "tcp" => tcp(c, who, &params),
        "file" | "pipe" => path_strategy(c, who, name, &params),
        other if c.catalog.accept_any || c.catalog.ready_strategies.contains(other) => {
            Some(ReadyStrategy::Plugin {
                name: other.to_string(),
                params: Value::Object(params),
            })
        }
        other => {
            let mut known: Vec<&str> = BUILTIN_READY.to_vec();
            known.extend(c.catalog.ready_strategies.iter().map(String::as_str));
            let hint = closest(other, known.iter().copied())
                .map(|b| format!("; did you mean `{b}`?"))
                .unwrap_or_default();
            let plugins = if c.catalog.loaded {
                ""
            } else {
                "; a plugin's strategy needs `--plugins DIR`"
            };
            c.problem(
                who_opt,
                "ready_strategy",
                format!(
                    "`{other}` is not a known ready strategy (known: {}{plugins}){hint}",
                    list(&known, 20)
                ),
            );
            None
        }
    };
    strategy.map(|strategy| Readiness { strategy, timeout })
}

/// Reports keys of `params` outside `allowed`: an error, or a warning for another built-in's key.
fn unknown_params(
    c: &mut Checker,
    who: &ProcessRef,
    strategy: &str,
    params: &Map<String, Value>,
    allowed: &[&str],
) {
    for key in params.keys().filter(|k| !allowed.contains(&k.as_str())) {
        let field = format!("ready_params.{key}");
        if ["port", "host", "path"].contains(&key.as_str()) {
            c.warn(
                Some(who),
                &field,
                format!("is not used by `{strategy}` readiness; it is ignored"),
            );
        } else {
            let hint = closest(key, allowed.iter().copied())
                .map(|b| format!("; did you mean `{b}`?"))
                .unwrap_or_default();
            c.problem(
                Some(who),
                &field,
                format!(
                    "unknown key for `{strategy}` readiness (known: {}){hint}",
                    list(allowed, 5)
                ),
            );
        }
    }
}

fn tcp(c: &mut Checker, who: &ProcessRef, params: &Map<String, Value>) -> Option<ReadyStrategy> {
    unknown_params(c, who, "tcp", params, &["port", "host"]);
    let host = match params.get("host") {
        None => Some("127.0.0.1".to_string()),
        Some(Value::String(h)) if !h.trim().is_empty() => Some(h.clone()),
        Some(other) => {
            c.problem(
                Some(who),
                "ready_params.host",
                format!("must be a host name or address, found `{other}`"),
            );
            None
        }
    };
    let port = match params.get("port") {
        Some(Value::Number(n)) => match n.as_u64().filter(|p| (1..=65535).contains(p)) {
            Some(p) => Some(p as u16),
            None => {
                c.problem(
                    Some(who),
                    "ready_params.port",
                    format!("`{n}` is not a port; use a whole number from 1 to 65535"),
                );
                None
            }
        },
        Some(other) => {
            let unquote = match other.as_str().map(str::parse::<u16>) {
                Some(Ok(p)) if p > 0 => format!("; write it without quotes: `port: {p}`"),
                _ => String::new(),
            };
            c.problem(
                Some(who),
                "ready_params.port",
                format!("`{other}` is not a port; use a whole number from 1 to 65535{unquote}"),
            );
            None
        }
        None => {
            c.problem(
                Some(who),
                "ready_params",
                "`tcp` readiness needs `port`; e.g. `ready_params: { port: 8080 }`",
            );
            None
        }
    };
    Some(ReadyStrategy::Tcp {
        host: host?,
        port: port?,
    })
}

fn path_strategy(
    c: &mut Checker,
    who: &ProcessRef,
    name: &str,
    params: &Map<String, Value>,
) -> Option<ReadyStrategy> {
    unknown_params(c, who, name, params, &["path"]);
    let written = match params.get("path") {
        Some(Value::String(p)) if !p.trim().is_empty() => p,
        Some(other) => {
            c.problem(
                Some(who),
                "ready_params.path",
                format!("must be a path, found `{other}`"),
            );
            return None;
        }
        None => {
            c.problem(Some(who), "ready_params", format!("`{name}` readiness needs `path`; e.g. `ready_params: {{ path: /tmp/{name}-ready }}`"));
            return None;
        }
    };
    let path = absolute(written, &c.base);
    if name == "file" {
        return Some(ReadyStrategy::File { path });
    }
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if !meta.file_type().is_fifo() => {
            c.problem(
                Some(who),
                "ready_params.path",
                format!("`{written}` exists and is not a FIFO; remove it or choose another path"),
            );
            return None;
        }
        _ => {}
    }
    if !path.parent().is_some_and(|p| p.is_dir()) {
        c.problem(
            Some(who),
            "ready_params.path",
            format!("the folder of `{written}` does not exist, so the FIFO cannot be created"),
        );
        return None;
    }
    Some(ReadyStrategy::Pipe { path })
}

/// Returns the number of CPUs this machine has configured.
pub fn cpu_count() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_CONF)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

fn affinity(c: &mut Checker, who: &ProcessRef, raw: &RawProcess) -> Option<Vec<usize>> {
    let (field, cpus) = match (&raw.affinity, &raw.processor_affinity) {
        (Some(_), Some(_)) => {
            c.problem(
                Some(who),
                "affinity",
                "is given together with `processor_affinity`; they mean the same, keep one",
            );
            return None;
        }
        (Some(a), None) => ("affinity", a),
        (None, Some(a)) => ("processor_affinity", a),
        (None, None) => return None,
    };
    if cpus.is_empty() {
        c.problem(
            Some(who),
            field,
            "is empty; list at least one CPU, or remove the key to allow all",
        );
        return None;
    }
    let count = cpu_count();
    for cpu in cpus.iter().filter(|cpu| **cpu >= count) {
        c.problem(Some(who), field, format!("CPU {cpu} does not exist on this machine (CPUs 0 to {}); pick CPUs from that range", count - 1));
    }
    let mut unique = cpus.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != cpus.len() {
        c.warn(Some(who), field, "lists a CPU more than once");
    }
    Some(unique)
}

fn restart_policy(c: &mut Checker, who: &ProcessRef, raw: RawRestart) -> RestartPolicy {
    let d = RestartPolicy::default();
    let w = Some(who);
    let policy = RestartPolicy {
        min_uptime: c.seconds(
            w,
            "restart.min_uptime_sec",
            raw.min_uptime_sec,
            d.min_uptime.as_secs_f64(),
            false,
        ),
        initial_delay: c.seconds(
            w,
            "restart.initial_delay_sec",
            raw.initial_delay_sec,
            d.initial_delay.as_secs_f64(),
            false,
        ),
        factor: raw.factor.unwrap_or(d.factor),
        max_delay: c.seconds(
            w,
            "restart.max_delay_sec",
            raw.max_delay_sec,
            d.max_delay.as_secs_f64(),
            false,
        ),
        jitter: raw.jitter.unwrap_or(d.jitter),
        max_restarts: raw.max_restarts.unwrap_or(d.max_restarts),
        window: c.seconds(
            w,
            "restart.window_sec",
            raw.window_sec,
            d.window.as_secs_f64(),
            true,
        ),
    };
    if !(policy.factor.is_finite() && (1.0..=100.0).contains(&policy.factor)) {
        c.problem(
            w,
            "restart.factor",
            format!(
                "must be a number from 1 to 100, got `{}`; e.g. `factor: {}` doubles each delay",
                policy.factor, d.factor
            ),
        );
    }
    if !(policy.jitter.is_finite() && (0.0..=1.0).contains(&policy.jitter)) {
        c.problem(
            w,
            "restart.jitter",
            format!(
                "must be a fraction from 0 to 1, got `{}`; e.g. `jitter: {}` spreads delays by ±10 %",
                policy.jitter, d.jitter
            ),
        );
    }
    if policy.max_delay < policy.initial_delay && raw.max_delay_sec.is_some() {
        c.problem(
            w,
            "restart.max_delay_sec",
            format!(
                "`{}` is below `restart.initial_delay_sec` (`{}`); raise it or lower the initial delay",
                policy.max_delay.as_secs_f64(),
                policy.initial_delay.as_secs_f64()
            ),
        );
    }
    RestartPolicy {
        max_delay: policy
            .max_delay
            .max(policy.initial_delay)
            .max(Duration::ZERO),
        ..policy
    }
}
