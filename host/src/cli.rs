//! The command line: argument parsing and the commands, each a thin layer over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::graph::DepGraph;
use crate::manifest::{self, Catalog, Loaded, ManifestError};
use crate::plugin::{self, LoadedPlugin, PluginHost, PluginSet};
use crate::render::{self, GraphFormat};

/// The top-level command line of `pilot-host`.
#[derive(Debug, Parser)]
#[command(
    name = "pilot-host",
    version,
    about = "Supervises processes from a manifest; runs plugins as sandboxed WebAssembly"
)]
pub struct Cli {
    /// Log filter: error, warn, info, debug, trace, or a RUST_LOG-style directive. Overrides RUST_LOG.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a manifest and print its start order; exit 2 listing every problem.
    Validate {
        /// The manifest (.yaml, .yml or .json).
        manifest: PathBuf,
        /// Folder of plugin components whose names the manifest may use.
        #[arg(long, value_name = "DIR")]
        plugins: Option<PathBuf>,
    },
    /// Draw the dependency graph with Graphviz.
    Graph(GraphArgs),
    /// Run the manifest's processes until they end or pilot-host is stopped (SIGINT/SIGTERM; a second
    /// SIGINT kills at once). Exit 0 if everything ended as configured, 1 if a process failed.
    Run {
        /// The manifest (.yaml, .yml or .json).
        manifest: PathBuf,
        /// Folder of plugin components (`*.wasm`).
        #[arg(long, value_name = "DIR")]
        plugins: Option<PathBuf>,
    },
    /// Vet plugins: component type, imports as capabilities, and smoke tests under production limits.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Print the manifest's JSON Schema.
    Schema,
    /// The guard process (internal): kills the process groups it is told about when its input ends.
    #[command(name = "__guard", hide = true)]
    Guard,
}

/// Plugin subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Check plugin files; exit 1 on any finding (2 when a file cannot be read).
    Check {
        /// The `.wasm` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
        /// Configuration to `init` the plugins with, as JSON (as `plugins.<name>.config` would).
        #[arg(long, value_name = "JSON")]
        config: Option<String>,
        /// Wall-clock limit of each call in milliseconds (default: the production limit, 1000).
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
    },
    /// Write a new plugin project (source, SDK, build script, manifest) that builds and passes `check`.
    New {
        /// The plugin's name (also its strategy, hook or handler name), e.g. `disk-ready`.
        name: String,
        /// Its language (Go and TinyGo are not supported: their toolchains are not reachable here).
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// What it provides.
        #[arg(long, value_enum, default_value = "ready")]
        kind: crate::scaffold::Kind,
        /// The project folder (default: `./NAME`); it must not exist or be empty.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Arguments of `graph`, shared with the `process-graph` binary.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The manifest (.yaml, .yml or .json).
    pub manifest: PathBuf,
    /// Output format; png, svg and pdf need Graphviz's `dot`.
    #[arg(long, value_enum, default_value = "png")]
    pub format: GraphFormat,
    /// Folder to write the graph into (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub output_dir: PathBuf,
    /// Add tooltips (path, ready strategy, timeouts); shown in SVG.
    #[arg(long)]
    pub detailed: bool,
}

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
        match e {
            ManifestError::Read { ref source, .. }
                if source.kind() != std::io::ErrorKind::NotFound =>
            {
                Failure::Runtime(e.into())
            }
            other => Failure::BadInput(other.into()),
        }
    }
}

/// Sets up logging from `--log-level` or RUST_LOG (default `info`), to stderr.
pub fn init_tracing(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Reporting a failed write with eprintln! would panic when stderr is a closed pipe.
        .log_internal_errors(false)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.log_level.as_deref());
    let result = match cli.command {
        Command::Validate { manifest, plugins } => validate(&manifest, plugins.as_deref()),
        Command::Graph(args) => graph(&args),
        Command::Run { manifest, plugins } => run_manifest(&manifest, plugins.as_deref()),
        Command::Plugin(PluginCommand::Check {
            files,
            json,
            config,
            timeout_ms,
        }) => plugin_check(&files, json, config.as_deref(), timeout_ms),
        Command::Plugin(PluginCommand::New {
            name,
            lang,
            kind,
            dir,
        }) => crate::scaffold::run(&crate::scaffold::Request {
            name,
            lang,
            kind,
            dir,
        })
        .map_err(|e| {
            if e.is_bad_input() {
                Failure::BadInput(e.into())
            } else {
                Failure::Runtime(e.into())
            }
        }),
        Command::Guard => return crate::supervisor::pgroup::run_guard(),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&manifest::schema()).expect("a schema serializes")
            );
            Ok(())
        }
    };
    exit_code(result)
}

/// Prints a failure and maps it to an exit code: 0 ok, 1 runtime failure, 2 bad input.
pub fn exit_code(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::BadInput(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A manifest with the plugins it was checked against.
pub struct Prepared {
    /// The manifest.
    pub loaded: Loaded,
    /// The plugins, compiled and described but not configured.
    pub plugins: Vec<LoadedPlugin>,
    /// The plugin runtime, when `--plugins` was given.
    pub host: Option<PluginHost>,
}

/// Loads the plugins in `dir` (if any), then the manifest against what they provide; prints warnings.
pub async fn prepare(path: &Path, dir: Option<&Path>) -> Result<Prepared, Failure> {
    let (host, plugins, catalog) = match dir {
        None => (None, Vec::new(), Catalog::default()),
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
            let (plugins, failed) = host.load_dir(dir).await.map_err(|e| {
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
                    failed.len() + plugins.len(),
                    dir.display(),
                    list.join("\n")
                )));
            }
            let catalog = plugin::catalog(&plugins).map_err(|clashes| {
                Failure::BadInput(anyhow::anyhow!(
                    "plugins clash:\n  - {}",
                    clashes.join("\n  - ")
                ))
            })?;
            (Some(host), plugins, catalog)
        }
    };
    let loaded = manifest::load(path, &catalog)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(Prepared {
        loaded,
        plugins,
        host,
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot start the async runtime: {e}")))
}

fn describe_plugins(plugins: &[LoadedPlugin]) {
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
                provides.push(format!(
                    "{kind} {}",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
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

fn validate(path: &Path, plugins: Option<&Path>) -> Result<(), Failure> {
    let prepared = runtime()?.block_on(prepare(path, plugins))?;
    describe_plugins(&prepared.plugins);
    let m = &prepared.loaded.manifest;
    let graph = DepGraph::new(
        m.processes
            .iter()
            .map(|p| (p.name.as_str(), &p.dependencies)),
    );
    let levels = graph
        .start_levels()
        .expect("a valid manifest has no cycles");
    let count = m.processes.len();
    println!(
        "manifest `{}` is valid: {count} {} in {} start {}",
        path.display(),
        if count == 1 { "process" } else { "processes" },
        levels.len(),
        if levels.len() == 1 { "level" } else { "levels" }
    );
    for (i, level) in levels.iter().enumerate() {
        println!("  level {}: {}", i + 1, level.join(", "));
    }
    Ok(())
}

/// Runs `graph`: writes the dependency graph and prints the file's path.
pub fn graph(args: &GraphArgs) -> Result<(), Failure> {
    // Drawing needs no plugins: their names are taken as written.
    let loaded = manifest::load(&args.manifest, &Catalog::accept_any())?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    if args.detailed && args.format != GraphFormat::Svg && args.format != GraphFormat::Dot {
        eprintln!("warning: `--detailed` tooltips show only in SVG output");
    }
    let written = render::write_graph(
        &loaded.manifest,
        args.format,
        &args.output_dir,
        args.detailed,
    )
    .map_err(|e| Failure::Runtime(e.into()))?;
    println!("{}", written.display());
    Ok(())
}

fn run_manifest(path: &Path, plugins: Option<&Path>) -> Result<(), Failure> {
    crate::supervisor::pgroup::raise_nofile_limit();
    let runtime = runtime()?;
    let outcome = runtime.block_on(async {
        let prepared = prepare(path, plugins).await?;
        describe_plugins(&prepared.plugins);
        let manifest = prepared.loaded.manifest;
        let extensions: std::sync::Arc<dyn crate::extension::Extensions> = match prepared.host {
            None => std::sync::Arc::new(crate::extension::NoExtensions),
            Some(host) => std::sync::Arc::new(
                PluginSet::start(&host, prepared.plugins, &manifest)
                    .await
                    .map_err(|errors| {
                        Failure::BadInput(anyhow::anyhow!(
                            "plugins cannot start; nothing was started:\n  - {}",
                            errors.join("\n  - ")
                        ))
                    })?,
            ),
        };
        supervise(manifest, extensions).await
    })?;
    // Plugin calls may still be parked in host calls; do not wait for them.
    runtime.shutdown_background();
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

async fn supervise(
    manifest: crate::manifest::Manifest,
    extensions: std::sync::Arc<dyn crate::extension::Extensions>,
) -> Result<crate::supervisor::Outcome, Failure> {
    use std::io::IsTerminal as _;
    use tokio::signal::unix::{signal, SignalKind};
    let guard = std::env::current_exe()
        .and_then(|exe| crate::supervisor::Guard::start(&exe))
        .map_err(|e| tracing::warn!("cannot start the guard process ({e}); grandchildren may be orphaned if pilot-host is killed"))
        .ok()
        .map(std::sync::Arc::new);
    let options = crate::supervisor::Options {
        guard,
        extensions,
        colour: std::io::stdout().is_terminal(),
        ..Default::default()
    };
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| Failure::Runtime(e.into()))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| Failure::Runtime(e.into()))?;
    let supervisor = crate::supervisor::start(manifest, options);
    let handle = supervisor.handle();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received; stopping (press Ctrl-C again to kill at once)"),
            _ = terminate.recv() => tracing::info!("SIGTERM received; stopping"),
        }
        handle.shutdown();
        if interrupt.recv().await.is_some() {
            tracing::warn!("second SIGINT: killing every process group now");
            handle.kill_all();
        }
    });
    Ok(supervisor.wait().await)
}

fn plugin_check(
    files: &[PathBuf],
    json: bool,
    config: Option<&str>,
    timeout_ms: Option<u64>,
) -> Result<(), Failure> {
    let config = config
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .map_err(|e| Failure::BadInput(anyhow::anyhow!("`--config` is not JSON: {e}")))?;
    for file in files {
        if !file.is_file() {
            return Err(Failure::BadInput(anyhow::anyhow!(
                "`{}` is not a file",
                file.display()
            )));
        }
    }
    let settings = crate::manifest::PluginSettings {
        config,
        call_timeout: timeout_ms.map(std::time::Duration::from_millis),
        ..Default::default()
    };
    let runtime = runtime()?;
    let reports = runtime.block_on(async {
        let host = PluginHost::new(plugin::default_cache_dir()).map_err(|e| {
            Failure::Runtime(anyhow::anyhow!("cannot start the plugin runtime: {e:#}"))
        })?;
        let mut reports = Vec::new();
        for file in files {
            reports.push(plugin::check::check_file(&host, file, &settings).await);
        }
        Ok::<_, Failure>(reports)
    })?;
    runtime.shutdown_background();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("reports serialize")
        );
    } else {
        for r in &reports {
            r.print();
        }
    }
    let findings: usize = reports.iter().map(|r| r.findings.len()).sum();
    if findings == 0 {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow::anyhow!(
            "{findings} {} in {} of {} plugins",
            if findings == 1 { "finding" } else { "findings" },
            reports.iter().filter(|r| !r.findings.is_empty()).count(),
            reports.len()
        )))
    }
}
