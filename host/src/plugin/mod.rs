//! Plugins: WebAssembly components that provide ready strategies, lifecycle hooks and stat handlers,
//! each run in a sandbox the host can always stop.
//!
//! [`PluginHost`] compiles (or loads from the cache) and describes components; [`PluginSet`] holds one
//! [`Sandbox`] per plugin and implements the supervisor's [`Extensions`] by dispatching on names.

mod bindings;
pub mod check;
mod engine;
mod log;
pub mod sandbox;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Linker;

pub use self::bindings::Description;
use self::bindings::{PilotPlugin, PilotPluginPre};
pub use self::engine::{default_cache_dir, PluginEngine};
pub use self::sandbox::{CallError, Limits, Sandbox};
use self::sandbox::StoreState;
use crate::manifest::{Catalog, PluginSettings};

/// Loading a plugin failed; the plugin is left out.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin `{}`: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a WebAssembly component, or wasmtime rejects it.
    #[error("plugin `{}` is not a usable WebAssembly component: {message}", file.display())]
    Compile {
        /// The file.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// The component needs imports pilot-host does not offer, or lacks the `pilot:plugin` exports.
    #[error("plugin `{}` does not fit pilot-host's plugin interface (pilot:plugin@0.1.x): {message}", file.display())]
    Link {
        /// The file.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// `describe` failed.
    #[error("plugin `{}`: `describe` {error}", file.display())]
    Describe {
        /// The file.
        file: PathBuf,
        /// Why.
        error: CallError,
    },
    /// `describe` answered something unusable.
    #[error("plugin `{}`: {message}", file.display())]
    Description {
        /// The file.
        file: PathBuf,
        /// Why.
        message: String,
    },
}

/// A compiled, described plugin, not yet configured.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// Where it came from.
    pub file: PathBuf,
    /// What it says of itself.
    pub description: Description,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
    /// How long compiling (or loading from the cache) took.
    pub compile_time: Duration,
    pre: PilotPluginPre<StoreState>,
}

/// The engine and linker every plugin is loaded with.
#[derive(Clone)]
pub struct PluginHost {
    /// The engine.
    pub engine: PluginEngine,
    pub(crate) linker: Arc<Linker<StoreState>>,
}

impl PluginHost {
    /// Creates the host; `cache_dir` of `None` disables the compile cache.
    pub fn new(cache_dir: Option<PathBuf>) -> wasmtime::Result<PluginHost> {
        let engine = PluginEngine::new(cache_dir)?;
        let mut linker = Linker::new(&engine.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        PilotPlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
        Ok(PluginHost { engine, linker: Arc::new(linker) })
    }

    /// Compiles (or loads from the cache) the component at `file`, links it, and asks it to describe itself.
    pub async fn load_file(&self, file: &Path) -> Result<LoadedPlugin, LoadError> {
        let wasm = std::fs::read(file).map_err(|source| LoadError::Read { file: file.to_owned(), source })?;
        let started = Instant::now();
        let (component, from_cache) = self
            .engine
            .compile(&wasm)
            .map_err(|e| LoadError::Compile { file: file.to_owned(), message: format!("{e:#}") })?;
        let compile_time = started.elapsed();
        let link = |e: wasmtime::Error| LoadError::Link { file: file.to_owned(), message: format!("{e:#}") };
        let pre = PilotPluginPre::new(self.linker.instantiate_pre(&component).map_err(link)?).map_err(link)?;
        let label = file.file_name().map_or("plugin".into(), |n| n.to_string_lossy().into_owned());
        let mut probe = Sandbox::new(self.engine.clone(), pre.clone(), &label, "?", PluginSettings::default());
        let description =
            probe.describe().await.map_err(|error| LoadError::Describe { file: file.to_owned(), error })?;
        check_description(&description).map_err(|message| LoadError::Description { file: file.to_owned(), message })?;
        Ok(LoadedPlugin { file: file.to_owned(), description, from_cache, compile_time, pre })
    }

    /// Loads every `*.wasm` in `dir`, in name order; failures are returned beside the successes.
    pub async fn load_dir(&self, dir: &Path) -> std::io::Result<(Vec<LoadedPlugin>, Vec<LoadError>)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
            .collect();
        files.sort();
        let mut loaded = Vec::new();
        let mut failed = Vec::new();
        for file in files {
            match self.load_file(&file).await {
                Ok(plugin) => loaded.push(plugin),
                Err(e) => failed.push(e),
            }
        }
        Ok((loaded, failed))
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_description(d: &Description) -> Result<(), String> {
    let names = std::iter::once(&d.name).chain(&d.ready_strategies).chain(&d.lifecycle_hooks).chain(&d.stat_handlers);
    for name in names {
        if !valid_name(name) {
            return Err(format!("`describe` gave the name `{}`; names are 1 to 64 letters, digits, `-`, `_`, `.`", crate::plugin::log::sanitize(name)));
        }
    }
    if let Some(builtin) = d.ready_strategies.iter().find(|s| crate::manifest::BUILTIN_READY.contains(&s.as_str())) {
        return Err(format!("ready strategy `{builtin}` would shadow the built-in one; rename it"));
    }
    Ok(())
}

/// Returns the names the plugins provide, or every clash of two plugins claiming one name.
pub fn catalog(plugins: &[LoadedPlugin]) -> Result<Catalog, Vec<String>> {
    let mut catalog = Catalog { loaded: true, ..Catalog::default() };
    let mut owners: HashMap<(&str, String), &Path> = HashMap::new();
    let mut clashes = Vec::new();
    for p in plugins {
        let d = &p.description;
        let own_name = vec![d.name.clone()];
        let kinds: [(&str, &Vec<String>); 4] = [
            ("plugin", &own_name),
            ("ready strategy", &d.ready_strategies),
            ("lifecycle hook", &d.lifecycle_hooks),
            ("stat handler", &d.stat_handlers),
        ];
        for (kind, names) in kinds {
            for name in names {
                if let Some(first) = owners.insert((kind, name.clone()), &p.file) {
                    if first != p.file {
                        clashes.push(format!(
                            "{kind} `{name}` is provided by both `{}` and `{}`; remove one of them from the plugin folder",
                            first.display(),
                            p.file.display()
                        ));
                    }
                }
            }
        }
        catalog.plugins.insert(d.name.clone());
        catalog.ready_strategies.extend(d.ready_strategies.iter().cloned());
        catalog.lifecycle_hooks.extend(d.lifecycle_hooks.iter().cloned());
        catalog.stat_handlers.extend(d.stat_handlers.iter().cloned());
    }
    if clashes.is_empty() {
        Ok(catalog)
    } else {
        Err(clashes)
    }
}

/// One configured sandbox per plugin, reachable by the names it provides.
pub struct PluginSet {
    sandboxes: Vec<Arc<tokio::sync::Mutex<Sandbox>>>,
    labels: Vec<String>,
    ready: HashMap<String, usize>,
    hooks: HashMap<String, usize>,
    handlers: HashMap<String, usize>,
    interval: Duration,
}

mod extensions;

impl PluginSet {
    /// Configures every plugin with its manifest settings and makes its first instance (so a bad
    /// configuration is reported before anything starts); returns every plugin's error.
    pub async fn start(
        host: &PluginHost,
        plugins: Vec<LoadedPlugin>,
        settings: &BTreeMap<String, PluginSettings>,
        ready_interval: Duration,
    ) -> Result<PluginSet, Vec<String>> {
        let mut set = PluginSet {
            sandboxes: Vec::new(),
            labels: Vec::new(),
            ready: HashMap::new(),
            hooks: HashMap::new(),
            handlers: HashMap::new(),
            interval: ready_interval,
        };
        let mut errors = Vec::new();
        for (i, p) in plugins.into_iter().enumerate() {
            let d = &p.description;
            let mut sandbox = Sandbox::new(
                host.engine.clone(),
                p.pre.clone(),
                &d.name,
                &d.version,
                settings.get(&d.name).cloned().unwrap_or_default(),
            );
            let label = format!("plugin `{}` {}", d.name, d.version);
            if let Err(e) = sandbox.call(|_, _| Box::pin(async { Ok(()) })).await {
                errors.push(format!("{label}: cannot start: {e}"));
            }
            set.ready.extend(d.ready_strategies.iter().map(|n| (n.clone(), i)));
            set.hooks.extend(d.lifecycle_hooks.iter().map(|n| (n.clone(), i)));
            set.handlers.extend(d.stat_handlers.iter().map(|n| (n.clone(), i)));
            set.labels.push(label);
            set.sandboxes.push(Arc::new(tokio::sync::Mutex::new(sandbox)));
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    /// Returns the sandbox of the plugin called `name` (for tests and benchmarks).
    pub fn sandbox(&self, name: &str) -> Option<Arc<tokio::sync::Mutex<Sandbox>>> {
        self.labels
            .iter()
            .position(|l| l.starts_with(&format!("plugin `{name}` ")))
            .map(|i| self.sandboxes[i].clone())
    }
}
