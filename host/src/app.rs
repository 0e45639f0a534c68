//! The application: what `pilot-host run` does, as a library function that the command line, the
//! tests and the control plane share. It loads the plugins and the manifest, starts the guard process,
//! supervises, answers signals (SIGINT/SIGTERM: the ordered stop, a second SIGINT: kill at once,
//! SIGHUP: reload the manifest), and reports how it ended.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::extension::{Extensions, NoExtensions};
use crate::manifest::{self, Catalog, Loaded, ManifestError};
use crate::plugin::{self, ControlPlugins, LoadedControl, LoadedPlugin, PluginHost, PluginSet};
use crate::supervisor::{self, Bus, Event, Guard, Handle, Outcome};

/// How a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// The user's input is wrong: exit 2.
    BadInput(anyhow::Error),
    /// Something failed at run time: exit 1.
    Runtime(anyhow::Error),
}

impl From<ManifestError> for Failure {
    fn from(e: ManifestError) -> Self {
        // A manifest that cannot be read (missing, a folder, not UTF-8, a FIFO, too big) is bad
        // input like an invalid one.
        Failure::BadInput(e.into())
    }
}

/// What `run` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// The manifest.
    pub manifest: PathBuf,
    /// The folder of plugin components, if any.
    pub plugins: Option<PathBuf>,
    /// Colour the output prefixes.
    pub colour: bool,
    /// Serve the control plane (the unix socket, and what the manifest's `control_server` adds).
    pub control: bool,
    /// The control socket, instead of the one derived from the manifest's path.
    pub control_socket: Option<PathBuf>,
    /// Keep running when every process has ended (the control plane may start them again).
    pub stay_alive: bool,
    /// The guard process, if the caller started it (the command line forks it before any thread
    /// exists); else `run` starts one.
    pub guard: Option<Arc<Guard>>,
}

/// A manifest with the plugins it was checked against.
pub struct Setup {
    /// The manifest.
    pub loaded: Loaded,
    /// The plugins, compiled and described but not configured.
    pub plugins: Vec<LoadedPlugin>,
    /// The control plugins, compiled and described but not started.
    pub controls: Vec<LoadedControl>,
    /// The plugin runtime, when a plugin folder was given.
    pub host: Option<PluginHost>,
    /// The names the plugins provide.
    pub catalog: Catalog,
}

/// Loads the plugins in `dir` (if any), then the manifest against what they provide; prints warnings.
pub async fn prepare(path: &Path, dir: Option<&Path>) -> Result<Setup, Failure> {
    let (host, plugins, controls, catalog) = match dir {
        None => (None, Vec::new(), Vec::new(), Catalog::default()),
        Some(dir) => {
            if !dir.is_dir() {
                return Err(Failure::BadInput(anyhow::anyhow!(
                    "plugin folder `{}` does not exist; pass an existing folder to `--plugins`",
                    dir.display()
                )));
            }
            let host = PluginHost::new(plugin::default_cache_dir()).map_err(|e| {
                Failure::Runtime(anyhow::anyhow!("cannot start the plugin runtime: {e:#}"))
            })?;
            let (folder, failed) = host.load_dir(dir).await.map_err(|e| {
                Failure::BadInput(anyhow::anyhow!(
                    "cannot list plugin folder `{}`: {e}",
                    dir.display()
                ))
            })?;
            if !failed.is_empty() {
                let list: Vec<String> = failed.iter().map(|e| format!("  - {e}")).collect();
                return Err(Failure::BadInput(anyhow::anyhow!(
                    "{} of {} plugins in `{}` cannot be used; nothing was started:\n{}",
                    failed.len(),
                    failed.len() + folder.plugins.len() + folder.controls.len(),
                    dir.display(),
                    list.join("\n")
                )));
            }
            let catalog = plugin::folder_catalog(&folder).map_err(|clashes| {
                Failure::BadInput(anyhow::anyhow!(
                    "plugins clash:\n  - {}",
                    clashes.join("\n  - ")
                ))
            })?;
            (Some(host), folder.plugins, folder.controls, catalog)
        }
    };
    let loaded = {
        let (path, catalog) = (path.to_path_buf(), catalog.clone());
        tokio::task::spawn_blocking(move || manifest::load(&path, &catalog))
            .await
            .map_err(|e| Failure::Runtime(e.into()))??
    };
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(Setup {
        loaded,
        plugins,
        controls,
        host,
        catalog,
    })
}

/// Prints one line per control plugin: where it is served, and whether it was compiled or loaded
/// from the cache.
pub fn describe_controls(controls: &[LoadedControl]) {
    for c in controls {
        let d = &c.description;
        let how = if c.from_cache {
            "loaded from the compile cache"
        } else {
            "compiled"
        };
        println!(
            "control plugin `{}` {} ({}, {how} in {:.1} ms): serves /plugins/{}/",
            d.name,
            crate::manifest::escape_controls(&d.version),
            c.file.file_name().unwrap_or_default().to_string_lossy(),
            c.compile_time.as_secs_f64() * 1000.0,
            d.name
        );
    }
}

/// Prints one line per plugin: what it provides, and whether it was compiled or loaded from the cache.
pub fn describe_plugins(plugins: &[LoadedPlugin]) {
    for p in plugins {
        let d = &p.description;
        let how = if p.from_cache {
            "loaded from the compile cache"
        } else {
            "compiled"
        };
        let mut provides = Vec::new();
        for (kind, names) in [
            ("ready strategies", &d.ready_strategies),
            ("lifecycle hooks", &d.lifecycle_hooks),
            ("stat handlers", &d.stat_handlers),
        ] {
            if !names.is_empty() {
                let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                provides.push(format!("{kind} {}", names.join(", ")));
            }
        }
        println!(
            "plugin `{}` {} ({}, {how} in {:.1} ms): {}",
            d.name,
            d.version,
            p.file.file_name().unwrap_or_default().to_string_lossy(),
            p.compile_time.as_secs_f64() * 1000.0,
            if provides.is_empty() {
                "provides nothing".to_string()
            } else {
                provides.join("; ")
            }
        );
    }
}

/// Runs `config` until every process has ended, pilot-host is signalled, or `shutdown` completes;
/// returns how every process ended.
pub async fn run(
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Outcome, Failure> {
    crate::supervisor::pgroup::raise_nofile_limit();
    let prepared = prepare(&config.manifest, config.plugins.as_deref()).await?;
    describe_plugins(&prepared.plugins);
    describe_controls(&prepared.controls);
    let manifest = prepared.loaded.manifest;
    let events = Bus::new();
    let plugin_events: crate::extension::PluginEventSink = {
        let events = events.clone();
        Arc::new(move |event| events.send(Event::Plugin(event)))
    };
    let handle_cell = plugin::control::HandleCell::default();
    let controls = match &prepared.host {
        Some(host) if !manifest.control_plugins.is_empty() => ControlPlugins::start(
            host,
            &prepared.controls,
            &manifest,
            &events,
            handle_cell.clone(),
            plugin_events.clone(),
        )
        .await
        .map_err(|errors| {
            Failure::BadInput(anyhow::anyhow!(
                "control plugins cannot start; nothing was started:\n  - {}",
                errors.join("\n  - ")
            ))
        })?,
        _ => ControlPlugins::default(),
    };
    let controls = Arc::new(controls);
    let extensions: Arc<dyn Extensions> = match prepared.host {
        None => Arc::new(NoExtensions),
        Some(host) => Arc::new(
            PluginSet::start(&host, prepared.plugins, &manifest, {
                let events = events.clone();
                Arc::new(move |event| events.send(Event::Plugin(event)))
            })
            .await
            .map_err(|errors| {
                Failure::BadInput(anyhow::anyhow!(
                    "plugins cannot start; nothing was started:\n  - {}",
                    errors.join("\n  - ")
                ))
            })?,
        ),
    };
    // Bound before anything starts: a second run of the same manifest is refused here.
    let control = crate::control::Settings::for_run(
        &config.manifest,
        manifest.control_server.as_ref(),
        config.control_socket.clone(),
        config.control,
    );
    let control = crate::control::bind(&control).await.map_err(|e| {
        if e.is_bad_input() {
            Failure::BadInput(e.into())
        } else {
            Failure::Runtime(e.into())
        }
    })?;
    let stats_interval = manifest.stats_interval;
    let guard = config.guard.clone().or_else(|| {
        std::env::current_exe()
            .and_then(|exe| Guard::start(&exe, &new_run_id()))
            .map_err(|e| tracing::warn!("cannot start the guard process ({e}); children may be orphaned if pilot-host is killed"))
            .ok()
            .map(Arc::new)
    });
    let run_id = guard
        .as_ref()
        .map_or_else(new_run_id, |g| g.run_id().to_string());
    let options = supervisor::Options {
        guard: guard.clone(),
        extensions,
        colour: config.colour,
        events,
        catalog: prepared.catalog,
        adopt_orphans: true,
        run_id: Some(run_id),
        stay_alive: config.stay_alive,
        ..Default::default()
    };
    let signals = Signals::new()?;
    let supervisor = supervisor::start(manifest, options);
    let _ = handle_cell.set(supervisor.handle());
    tokio::spawn(signals.serve(supervisor.handle(), shutdown));
    let _control = control.serve(
        crate::control::Backend::new(supervisor.handle(), stats_interval)
            .with_control_plugins(controls.clone()),
    );
    let outcome = supervisor.wait().await;
    // Control plugins stop after the processes, with the events of the final stop delivered.
    controls.stop().await;
    if let Some(guard) = &guard {
        guard.ended_cleanly();
    }
    Ok(outcome)
}

/// A new id for a run, which its children carry in their environment.
pub fn new_run_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// Returns `Ok` if every process ended as configured, else the failure naming each one that did not.
pub fn outcome_result(outcome: &Outcome) -> Result<(), Failure> {
    let failed = outcome.failed();
    if failed.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = failed
        .iter()
        .map(|s| {
            format!(
                "`{}` {} ({})",
                s.name,
                s.state.as_str(),
                s.reason.as_deref().unwrap_or("no reason given")
            )
        })
        .collect();
    Err(Failure::Runtime(anyhow::anyhow!(
        "{} of {} processes did not end as configured: {}",
        failed.len(),
        outcome.statuses.len(),
        list.join("; ")
    )))
}

/// The signals pilot-host answers, registered before anything starts.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, Failure> {
        use tokio::signal::unix::{signal, SignalKind};
        let on = |kind| signal(kind).map_err(|e| Failure::Runtime(e.into()));
        Ok(Signals {
            interrupt: on(SignalKind::interrupt())?,
            terminate: on(SignalKind::terminate())?,
            hangup: on(SignalKind::hangup())?,
        })
    }

    /// SIGINT/SIGTERM (or `shutdown`): the ordered stop; then a second SIGINT kills at once. SIGHUP
    /// reloads the manifest, before and during the stop alike (a stop refuses it).
    async fn serve(mut self, handle: Handle, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => {
                    tracing::info!("SIGINT received; stopping (press Ctrl-C again to kill at once)");
                    break;
                }
                _ = self.terminate.recv() => {
                    tracing::info!("SIGTERM received; stopping");
                    break;
                }
                () = &mut shutdown => break,
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP received; reloading the manifest");
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        match handle.reload().await {
                            Ok(report) => tracing::info!(
                                "reloaded: added {:?}, removed {:?}, changed {:?}, restarted with them {:?}",
                                report.added, report.removed, report.changed, report.restarted
                            ),
                            Err(e) => tracing::error!("reload refused: {e}"),
                        }
                    });
                }
            }
        }
        handle.shutdown();
        if self.interrupt.recv().await.is_some() {
            tracing::warn!("second SIGINT: killing every process group now");
            handle.kill_all();
        }
    }
}
