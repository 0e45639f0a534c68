//! Turning a parsed document into a [`Manifest`], collecting every problem in one pass.
//!
//! First each key is read on its own, so one wrong type or unknown key does not hide the others; then
//! each process is checked ([`super::process`]); then what spans processes: names, dependencies, cycles.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::explain::{closest, list, serde_message};
use super::model::{Manifest, PluginSettings, ProcessSpec};
use super::process::{self, ProcessInput};
use super::raw::{RawManifest, RawPluginSettings, RawProcess};
use super::resolve::{absolute, shown};
use super::{Catalog, Problem, ProcessRef};
use crate::graph::DepGraph;

/// Collects problems and warnings while checking one manifest.
pub(super) struct Checker<'a> {
    /// Things that make the manifest invalid.
    pub problems: Vec<Problem>,
    /// Things that are doubtful but allowed.
    pub warnings: Vec<Problem>,
    /// What the loaded plugins provide.
    pub catalog: &'a Catalog,
    /// The folder relative paths resolve against.
    pub base: PathBuf,
}

impl Checker<'_> {
    /// Records a problem.
    pub fn problem(
        &mut self,
        process: Option<&ProcessRef>,
        field: &str,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            process: process.cloned(),
            field: (!field.is_empty()).then(|| field.to_string()),
            message: message.into(),
        });
    }

    /// Records a warning.
    pub fn warn(&mut self, process: Option<&ProcessRef>, field: &str, message: impl Into<String>) {
        self.warnings.push(Problem {
            process: process.cloned(),
            field: (!field.is_empty()).then(|| field.to_string()),
            message: message.into(),
        });
    }

    /// Returns whether a problem about `field` of `process` was recorded already.
    pub fn reported(&self, process: Option<&ProcessRef>, field: &str) -> bool {
        self.problems
            .iter()
            .any(|p| p.process.as_ref() == process && p.field.as_deref() == Some(field))
    }

    /// Reads `object` into `T` one key at a time, recording each key that fails and leaving it out.
    pub fn typed<T: DeserializeOwned + Default>(
        &mut self,
        object: Map<String, Value>,
        process: Option<&ProcessRef>,
        prefix: &str,
    ) -> T {
        let mut clean = Map::new();
        for (key, value) in object {
            if let Some(value) = self.keep::<T>(process, prefix, &[&key], value) {
                clean.insert(key, value);
            }
        }
        serde_json::from_value(Value::Object(clean)).unwrap_or_default()
    }

    /// Returns what `T` accepts of `value` at `path`, recording a problem for each rejected part.
    ///
    /// Mappings that `T` expects (`restart`, `plugins.<name>`) are checked key by key, so a problem
    /// names the deepest key at fault (`restart.factor`) and the other keys are still used.
    fn keep<T: DeserializeOwned>(
        &mut self,
        process: Option<&ProcessRef>,
        prefix: &str,
        path: &[&str],
        value: Value,
    ) -> Option<Value> {
        let error = serde_json::from_value::<T>(nest(path, value.clone())).err();
        let expects_mapping =
            || serde_json::from_value::<T>(nest(path, Value::Object(Map::new()))).is_ok();
        let field = format!("{prefix}{}", path.join("."));
        // serde would also fill a struct from a list, by position; a manifest must name its keys.
        if value.is_array() && expects_mapping() {
            self.problem(process, &field, "expected a mapping, found a list");
            return None;
        }
        let Some(error) = error else {
            return Some(value);
        };
        if let Value::Object(inner) = value {
            if !inner.is_empty() && expects_mapping() {
                let mut kept = Map::new();
                for (key, v) in inner {
                    let deeper: Vec<&str> = path.iter().copied().chain([key.as_str()]).collect();
                    if let Some(v) = self.keep::<T>(process, prefix, &deeper, v) {
                        kept.insert(key, v);
                    }
                }
                let kept = Value::Object(kept);
                if serde_json::from_value::<T>(nest(path, kept.clone())).is_ok() {
                    return Some(kept);
                }
            }
        }
        let key = path.last().copied().unwrap_or_default();
        self.problem(process, &field, serde_message(key, &error.to_string()));
        None
    }

    /// Converts seconds to a duration: finite and ≥ 0 (or > 0 with `positive`).
    pub fn seconds(
        &mut self,
        process: Option<&ProcessRef>,
        field: &str,
        value: Option<f64>,
        default: f64,
        positive: bool,
    ) -> Duration {
        let v = value.unwrap_or(default);
        let ok = v.is_finite() && if positive { v > 0.0 } else { v >= 0.0 } && v < 1e9;
        if ok {
            return Duration::from_secs_f64(v);
        }
        let want = if positive { "> 0" } else { "≥ 0" };
        self.problem(
            process,
            field,
            format!(
                "must be a finite number of seconds {want}, got `{v}`; e.g. `{field}: {default}`"
            ),
        );
        Duration::from_secs_f64(default)
    }
}

/// Returns `value` wrapped in one single-key mapping per element of `path`.
fn nest(path: &[&str], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, key| {
        Value::Object(Map::from_iter([(key.to_string(), inner)]))
    })
}

/// Validates a parsed document loaded from `source`.
pub(super) fn validate(
    doc: Value,
    source: &Path,
    catalog: &Catalog,
) -> Result<(Manifest, Vec<Problem>), Vec<Problem>> {
    let folder = source.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut c = Checker {
        problems: Vec::new(),
        warnings: Vec::new(),
        catalog,
        base: folder.clone(),
    };
    let Value::Object(mut top) = doc else {
        let found = kind_of(&doc);
        let fix = if doc.is_array() {
            "; put the list under `processes:`"
        } else {
            "; e.g. `processes: [{ name: web, path: ./web }]`"
        };
        c.problem(
            None,
            "",
            format!("the top level must be a mapping with a `processes` list, found {found}{fix}"),
        );
        return Err(c.problems);
    };
    let processes = top.shift_remove("processes");
    let mut raw: RawManifest = c.typed(top, None, "");

    if let Some(dir) = &raw.base_directory {
        let path = absolute(dir, &folder);
        if path.is_dir() {
            c.base = path;
        } else {
            c.problem(
                None,
                "base_directory",
                format!(
                    "{} is not an existing folder; create it or fix the path",
                    shown(dir, &path)
                ),
            );
        }
    }
    let kill_timeout = c.seconds(None, "kill_timeout", raw.kill_timeout, 5.0, false);
    let stats_interval = c.seconds(
        None,
        "stats_interval_sec",
        raw.stats_interval_sec,
        1.0,
        true,
    );
    let ready_check_interval = c.seconds(
        None,
        "ready_check_interval_sec",
        raw.ready_check_interval_sec,
        0.1,
        true,
    );
    let (control_server, named_plugin) = match raw.control_server.as_ref() {
        Some(s) => super::control::control_server(&mut c, s),
        None => (None, None),
    };
    let control_plugins =
        super::control::control_plugins(&mut c, named_plugin, raw.control_plugins.as_deref());
    let plugins = plugin_settings(&mut c, raw.plugins.as_ref());

    let (specs, raws) = read_processes(&mut c, processes);
    cross_checks(&mut c, &raws);
    raw.processes = Some(raws.into_iter().map(|(_, raw)| raw).collect());

    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    let manifest = Manifest {
        source: source.to_path_buf(),
        base_directory: c.base,
        kill_timeout,
        control_server,
        stats_interval,
        ready_check_interval,
        plugins,
        control_plugins,
        processes: specs.into_iter().flatten().collect(),
        raw,
    };
    Ok((manifest, c.warnings))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

type Named = (Option<ProcessRef>, RawProcess);

/// Reads every process entry; returns the valid specs and, for cross checks, every entry as read.
fn read_processes(
    c: &mut Checker,
    processes: Option<Value>,
) -> (Vec<Option<ProcessSpec>>, Vec<Named>) {
    let items = match processes {
        None | Some(Value::Null) => {
            c.problem(None, "processes", "is missing; add a list of processes, e.g. `processes: [{ name: web, path: ./web }]`");
            return (Vec::new(), Vec::new());
        }
        Some(Value::Array(items)) if items.is_empty() => {
            c.problem(None, "processes", "is empty; add at least one process");
            return (Vec::new(), Vec::new());
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            c.problem(
                None,
                "processes",
                format!(
                    "must be a list of processes, found {}; write each process as a list item, e.g. `processes: [{{ name: web, path: ./web }}]`",
                    kind_of(&other)
                ),
            );
            return (Vec::new(), Vec::new());
        }
    };
    let mut specs = Vec::new();
    let mut raws = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(object) = item else {
            let who = ProcessRef::Index(i + 1);
            c.problem(
                Some(&who),
                "",
                format!(
                    "must be a mapping with at least `name` and `path`, found {}",
                    kind_of(&item)
                ),
            );
            raws.push((None, RawProcess::default()));
            continue;
        };
        let who = match object.get("name") {
            // A repeated name would be ambiguous in messages: such a process goes by its position.
            Some(Value::String(n)) if process::valid_name(n) && seen.insert(n.clone()) => {
                ProcessRef::Named(n.clone())
            }
            _ => ProcessRef::Index(i + 1),
        };
        let raw: RawProcess = c.typed(object, Some(&who), "");
        specs.push(process::check(
            c,
            ProcessInput {
                who: &who,
                raw: &raw,
            },
        ));
        let named = matches!(who, ProcessRef::Named(_)).then_some(who);
        raws.push((named, raw));
    }
    (specs, raws)
}

/// Checks what spans processes: unique names, known dependencies, no cycles.
fn cross_checks(c: &mut Checker, raws: &[Named]) {
    let mut first_use: HashMap<&str, usize> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    for (i, (_, raw)) in raws.iter().enumerate() {
        let Some(name) = raw.name.as_deref().filter(|n| process::valid_name(n)) else {
            continue;
        };
        match first_use.get(name) {
            Some(&first) => c.problem(
                Some(&ProcessRef::Index(i + 1)),
                "name",
                format!(
                    "`{name}` is already used by process #{}; names must be unique",
                    first + 1
                ),
            ),
            None => {
                first_use.insert(name, i);
                names.push(name);
            }
        }
    }
    for (who, raw) in raws {
        let Some(who) = who else { continue };
        let me = raw.name.as_deref().unwrap_or_default();
        let mut seen = Vec::new();
        for dep in raw.dependencies.iter().flatten() {
            if dep == me {
                c.problem(
                    Some(who),
                    "dependencies",
                    format!("depends on itself; remove `{me}` from `dependencies`"),
                );
            } else if !first_use.contains_key(dep.as_str()) {
                let known: Vec<&str> = names.iter().copied().filter(|n| *n != me).collect();
                let fix = match closest(dep, known.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => "define it or remove it from `dependencies`".to_string(),
                };
                c.problem(
                    Some(who),
                    "dependencies",
                    format!(
                        "`{dep}` is not defined (known: {}); {fix}",
                        list(&known, 12)
                    ),
                );
            } else if seen.contains(&dep) {
                c.warn(
                    Some(who),
                    "dependencies",
                    format!("`{dep}` is listed twice"),
                );
            }
            seen.push(dep);
        }
    }
    let unique: Vec<&RawProcess> = raws
        .iter()
        .filter(|(w, _)| w.is_some())
        .map(|(_, r)| r)
        .collect();
    let graph = DepGraph::new(unique.iter().map(|r| {
        (
            r.name.as_deref().unwrap_or_default(),
            r.dependencies.iter().flatten(),
        )
    }));
    for cycle in graph.cycles() {
        c.problem(
            None,
            "",
            format!(
                "dependency cycle: {}; remove one of these dependencies",
                cycle.join(" -> ")
            ),
        );
    }
}

fn plugin_settings(
    c: &mut Checker,
    raw: Option<&BTreeMap<String, RawPluginSettings>>,
) -> BTreeMap<String, PluginSettings> {
    let mut out = BTreeMap::new();
    for (name, s) in raw.into_iter().flatten() {
        let field = |k: &str| format!("plugins.{name}.{k}");
        if c.catalog.loaded && !c.catalog.accept_any && !c.catalog.plugins.contains(name) {
            let known: Vec<&String> = c.catalog.plugins.iter().collect();
            c.problem(
                None,
                &format!("plugins.{name}"),
                format!(
                    "no loaded plugin is called `{name}` (loaded: {})",
                    list(&known, 12)
                ),
            );
        }
        for (key, v) in [
            ("fuel", s.fuel),
            ("memory_mib", s.memory_mib),
            ("call_timeout_ms", s.call_timeout_ms),
        ] {
            if v == Some(0) {
                c.problem(
                    None,
                    &field(key),
                    "must be greater than 0, got `0`; raise it, or remove the key to use the host's default",
                );
            }
        }
        let paths = |c: &mut Checker, key: &str, list: &Option<Vec<String>>| -> Vec<PathBuf> {
            let mut out = Vec::new();
            for p in list.iter().flatten() {
                let abs = absolute(p, &c.base);
                if abs.exists() {
                    out.push(abs);
                } else {
                    c.problem(
                        None,
                        &field(key),
                        format!(
                            "{} does not exist; create it or remove the grant",
                            shown(p, &abs)
                        ),
                    );
                }
            }
            out
        };
        let allow_read = paths(c, "allow_read", &s.allow_read);
        let allow_write = paths(c, "allow_write", &s.allow_write);
        let mut allow_tcp = Vec::new();
        for dest in s.allow_tcp.iter().flatten() {
            match dest.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
                Some((host, Ok(port))) if !host.is_empty() && port > 0 => allow_tcp.push((host.trim_matches(['[', ']']).to_string(), port)),
                _ => c.problem(None, &field("allow_tcp"), format!("`{dest}` is not `host:port` with a port from 1 to 65535; e.g. `127.0.0.1:8080`")),
            }
        }
        for var in s.allow_env.iter().flatten() {
            if let Some(why) = process::bad_env_name(var) {
                c.problem(None, &field("allow_env"), why);
            }
        }
        out.insert(
            name.clone(),
            PluginSettings {
                fuel: s.fuel,
                memory_bytes: s.memory_mib.map(|m| m.saturating_mul(1 << 20)),
                call_timeout: s.call_timeout_ms.map(Duration::from_millis),
                allow_read,
                allow_write,
                allow_tcp,
                allow_env: s.allow_env.clone().unwrap_or_default(),
                config: s.config.clone(),
                grants: super::control::grants(c, name, s.grants.as_ref()),
            },
        );
    }
    out
}
