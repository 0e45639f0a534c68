//! The one load path of `run`, `validate` and `plugin check`: read the file, compile it (or load it from
//! the cache) off the async workers, check the `pilot:plugin` version it was built against, link it
//! (pre-instantiate), and ask a fresh instance to describe itself on a plugin thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};

use super::actor::Actor;
use super::bindings::{Description, PilotPlugin, PilotPluginPre};
use super::engine::PluginEngine;
use super::interface::{check_interface, World};
pub use super::interface::{description_problems, WIT_VERSION};
use super::sandbox::{CallError, Identity, Observed, StoreState};
use pilot_core::extension::PluginEventSink;
use pilot_core::manifest::{escape_controls, PluginSettings};

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
    /// The file is not a WebAssembly component.
    #[error("plugin `{}` is not a WebAssembly component (a core module, or not wasm at all); build it for `wasm32-wasip2` or wrap it with `wasm-tools component new`", file.display())]
    NotComponent {
        /// The file.
        file: PathBuf,
    },
    /// wasmtime rejects the component.
    #[error("plugin `{}` is not a usable WebAssembly component: {message}", file.display())]
    Compile {
        /// The file.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// The component was built against another major or minor version of `pilot:plugin`.
    #[error("plugin `{}` was built against `pilot:plugin@{found}`, but this pilot-host implements `pilot:plugin@{WIT_VERSION}` (it loads plugins built against any 0.1.x); rebuild the plugin against pilot-host's `wit/` (or its SDK) at 0.1", file.display())]
    WitVersion {
        /// The file.
        file: PathBuf,
        /// The version it was built against.
        found: String,
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
    #[error("plugin `{}`:\n    - {}", file.display(), problems.join("\n    - "))]
    Description {
        /// The file.
        file: PathBuf,
        /// Every problem.
        problems: Vec<String>,
    },
}

/// A compiled component, not yet linked.
pub(super) struct Compiled {
    pub component: Component,
    pub from_cache: bool,
    pub compile_time: Duration,
    pub size: u64,
}

/// A loaded plugin of either world.
pub enum AnyPlugin {
    /// Ready strategies, lifecycle hooks, stat handlers (`pilot-plugin`).
    Plugin(LoadedPlugin),
    /// A control plugin (`pilot-control`).
    Control(super::control::LoadedControl),
}

/// What a plugin folder holds.
#[derive(Default)]
pub struct Folder {
    /// Plugins of the `pilot-plugin` world, in file name order.
    pub plugins: Vec<LoadedPlugin>,
    /// Control plugins, in file name order.
    pub controls: Vec<super::control::LoadedControl>,
}

/// A compiled, linked, described plugin, not yet configured.
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
    /// The component file's size in bytes.
    pub size: u64,
    /// The compiled component.
    pub component: Component,
    pub(super) pre: PilotPluginPre<StoreState>,
}

/// The engine and linker every plugin is loaded with.
#[derive(Clone)]
pub struct PluginHost {
    /// The engine.
    pub engine: PluginEngine,
    pub(crate) linker: Arc<Linker<StoreState>>,
    /// The linker of control plugins: also `wasi:http` and `pilot:plugin/control`.
    pub(crate) control_linker: Arc<Linker<StoreState>>,
}

impl PluginHost {
    /// Creates the host; `cache_dir` of `None` disables the compile cache.
    pub fn new(cache_dir: Option<PathBuf>) -> wasmtime::Result<PluginHost> {
        let engine = PluginEngine::new(cache_dir)?;
        let mut linker = Linker::new(&engine.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        super::watch::add_to_linker(&mut linker)?;
        PilotPlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
        let control_linker = super::control::linker(&engine)?;
        Ok(PluginHost {
            engine,
            linker: Arc::new(linker),
            control_linker: Arc::new(control_linker),
        })
    }

    /// Compiles (or loads from the cache) the component at `file`, links it, and asks it to describe
    /// itself; its log lines are tagged with the file's name until it has said its own. A description
    /// that breaks the naming rule is an error.
    pub async fn load_file(&self, file: &Path) -> Result<LoadedPlugin, LoadError> {
        let plugin = self.load_unchecked(file, None).await?;
        let problems = description_problems(&plugin.description);
        if !problems.is_empty() {
            return Err(LoadError::Description {
                file: file.to_owned(),
                problems,
            });
        }
        Ok(plugin)
    }

    /// [`PluginHost::load_file`] without judging the description (`plugin check` reports its problems
    /// as findings and goes on), recording what `describe` tries beyond its grants into `observed`.
    pub async fn load_unchecked(
        &self,
        file: &Path,
        observed: Option<Observed>,
    ) -> Result<LoadedPlugin, LoadError> {
        let compiled = self.compile_file(file).await?;
        if super::interface::is_control(&self.engine, &compiled.component) {
            return Err(LoadError::Link {
                file: file.to_owned(),
                message: "it is a control plugin (`pilot-control` world), which serves HTTP and events rather than ready checks, hooks or handlers; name it in `control_server` or `control_plugins`".into(),
            });
        }
        self.link_plugin(file, compiled, observed).await
    }

    /// Loads the plugin or control plugin at `file`, whichever it is, judging its description.
    pub async fn load_any(&self, file: &Path) -> Result<AnyPlugin, LoadError> {
        let compiled = self.compile_file(file).await?;
        if super::interface::is_control(&self.engine, &compiled.component) {
            return super::control::load(self, file, compiled)
                .await
                .map(AnyPlugin::Control);
        }
        let plugin = self.link_plugin(file, compiled, None).await?;
        let problems = description_problems(&plugin.description);
        if !problems.is_empty() {
            return Err(LoadError::Description {
                file: file.to_owned(),
                problems,
            });
        }
        Ok(AnyPlugin::Plugin(plugin))
    }

    /// Returns whether `file` is a control plugin (false if it cannot be compiled).
    pub async fn is_control_file(&self, file: &Path) -> bool {
        match self.compile_file(file).await {
            Ok(c) => super::interface::is_control(&self.engine, &c.component),
            Err(_) => false,
        }
    }

    /// Reads and compiles `file` (or loads it from the cache) off the async workers.
    pub(super) async fn compile_file(&self, file: &Path) -> Result<Compiled, LoadError> {
        let f = file.to_owned();
        let engine = self.engine.clone();
        // Reading and compiling block (a large component compiles for seconds): off the async workers.
        tokio::task::spawn_blocking(move || {
            let wasm = std::fs::read(&f).map_err(|source| LoadError::Read {
                file: f.clone(),
                source,
            })?;
            if !is_component(&wasm) {
                return Err(LoadError::NotComponent { file: f });
            }
            let started = Instant::now();
            let (component, from_cache) =
                engine.compile(&wasm).map_err(|e| LoadError::Compile {
                    file: f.clone(),
                    message: format!("{e:#}"),
                })?;
            Ok(Compiled {
                component,
                from_cache,
                compile_time: started.elapsed(),
                size: wasm.len() as u64,
            })
        })
        .await
        .map_err(|e| LoadError::Compile {
            file: file.to_owned(),
            message: format!("the compile task failed: {e}"),
        })?
    }

    async fn link_plugin(
        &self,
        file: &Path,
        compiled: Compiled,
        observed: Option<Observed>,
    ) -> Result<LoadedPlugin, LoadError> {
        let Compiled {
            component,
            from_cache,
            compile_time,
            size,
        } = compiled;
        check_interface(&self.engine, &component, file, World::Plugin)?;
        // The error may quote names from the component: shown escaped.
        let link = |e: wasmtime::Error| LoadError::Link {
            file: file.to_owned(),
            message: escape_controls(&format!("{e:#}")),
        };
        let pre = PilotPluginPre::new(self.linker.instantiate_pre(&component).map_err(link)?)
            .map_err(link)?;
        let description = self.describe(file, &pre, observed).await?;
        Ok(LoadedPlugin {
            file: file.to_owned(),
            description,
            from_cache,
            compile_time,
            size,
            component,
            pre,
        })
    }

    async fn describe(
        &self,
        file: &Path,
        pre: &PilotPluginPre<StoreState>,
        observed: Option<Observed>,
    ) -> Result<Description, LoadError> {
        let label = file
            .file_name()
            .map_or("plugin".into(), |n| n.to_string_lossy().into_owned());
        let who = Identity {
            name: label,
            version: "?".into(),
            events: no_events(),
        };
        let describe_error = |error| LoadError::Describe {
            file: file.to_owned(),
            error,
        };
        let actor = Actor::spawn(
            self.engine.clone(),
            pre.clone(),
            who,
            PluginSettings::default(),
            observed,
        )
        .map_err(|e| describe_error(CallError::Trap(format!("cannot start its actor: {e}"))))?;
        actor
            .with(|sandbox| Box::pin(sandbox.describe()))
            .await
            .unwrap_or_else(|| Err(CallError::Trap("its actor stopped".into())))
            .map_err(describe_error)
    }

    /// Loads every `*.wasm` in `dir`, in name order, plugins and control plugins alike; failures are
    /// returned beside the successes.
    pub async fn load_dir(&self, dir: &Path) -> std::io::Result<(Folder, Vec<LoadError>)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
            .collect();
        files.sort();
        let mut folder = Folder::default();
        let mut failed = Vec::new();
        for file in files {
            match self.load_any(&file).await {
                Ok(AnyPlugin::Plugin(plugin)) => folder.plugins.push(plugin),
                Ok(AnyPlugin::Control(control)) => folder.controls.push(control),
                Err(e) => failed.push(e),
            }
        }
        Ok((folder, failed))
    }
}

impl LoadedPlugin {
    /// Starts an actor for this plugin with `settings`, reporting to `events`.
    pub fn actor(
        &self,
        host: &PluginHost,
        settings: PluginSettings,
        events: PluginEventSink,
        observed: Option<Observed>,
    ) -> std::io::Result<Actor> {
        let who = Identity {
            name: self.description.name.clone(),
            version: self.description.version.clone(),
            events,
        };
        Actor::spawn(
            host.engine.clone(),
            self.pre.clone(),
            who,
            settings,
            observed,
        )
    }

    /// Creates a sandbox for this plugin with `settings`, owned by the caller (for benchmarks).
    pub fn sandbox(&self, host: &PluginHost, settings: PluginSettings) -> super::Sandbox {
        let who = Identity {
            name: self.description.name.clone(),
            version: self.description.version.clone(),
            events: no_events(),
        };
        let grants = super::sandbox::Grants::resolve(settings, None);
        super::Sandbox::new(host.engine.clone(), self.pre.clone(), who, grants)
    }
}

/// An event sink that drops every event.
pub fn no_events() -> PluginEventSink {
    Arc::new(|_| {})
}

/// Returns whether `wasm` starts like a component (not a core module).
pub fn is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[6..8] == [0x01, 0x00]
}
