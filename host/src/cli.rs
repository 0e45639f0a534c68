//! The command line: argument parsing and the commands, each a thin layer over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use crate::app::Failure;
use crate::app::{self, describe_controls, describe_plugins, prepare};
use crate::graph::DepGraph;
use crate::manifest::{self, Catalog};
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
        /// The control socket (default: one per manifest, in $XDG_RUNTIME_DIR/pilot-host/).
        #[arg(long, value_name = "PATH", conflicts_with = "no_control")]
        control_socket: Option<PathBuf>,
        /// No control plane: no socket, no HTTP, no Process Pilot protocol.
        #[arg(long)]
        no_control: bool,
        /// Keep running when every process has ended, so the control plane can start them again;
        /// end with `pilot-host ctl shutdown` or SIGTERM.
        #[arg(long, conflicts_with = "no_control")]
        stay_alive: bool,
    },
    /// Control a running pilot-host: status, start, stop, restart, logs, events, reload, shutdown.
    /// Exit 0 done, 1 refused, 2 cannot connect or bad usage.
    Ctl(crate::ctl::CtlArgs),
    /// Vet plugins: component type, imports as capabilities, and smoke tests under production limits.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Print the manifest's JSON Schema.
    Schema,
    /// The guard process (internal): kills the process groups it is told about when its input ends,
    /// then every process marked with the run's id.
    #[command(name = "__guard", hide = true)]
    Guard {
        /// The run's id (`PILOT_HOST_RUN`).
        #[arg(default_value = "")]
        run_id: String,
    },
}

/// Plugin subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Check plugin files; exit 1 on any finding (2 when an input cannot be read).
    Check(Box<crate::plugin_check::CheckArgs>),
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
        Command::Run {
            manifest,
            plugins,
            control_socket,
            no_control,
            stay_alive,
        } => run_manifest(
            &manifest,
            plugins.as_deref(),
            RunControl {
                socket: control_socket,
                enabled: !no_control,
                stay_alive,
            },
        ),
        Command::Ctl(args) => return crate::ctl::run(args),
        Command::Plugin(PluginCommand::Check(args)) => plugin_check(&args),
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
        Command::Guard { run_id } => return crate::supervisor::pgroup::run_guard(&run_id),
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

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot start the async runtime: {e}")))
}

fn validate(path: &Path, plugins: Option<&Path>) -> Result<(), Failure> {
    let prepared = runtime()?.block_on(prepare(path, plugins))?;
    describe_plugins(&prepared.plugins);
    describe_controls(&prepared.controls);
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

/// The control plane's flags of `run`.
struct RunControl {
    socket: Option<PathBuf>,
    enabled: bool,
    stay_alive: bool,
}

fn run_manifest(path: &Path, plugins: Option<&Path>, control: RunControl) -> Result<(), Failure> {
    use std::io::IsTerminal as _;
    // While pilot-host has one thread: the descriptor table grows for free (for about 1600
    // processes; see `reserve_descriptors`), and the guard is forked, so nothing is loaded again
    // (see `Guard::fork`).
    crate::supervisor::pgroup::raise_nofile_limit();
    crate::supervisor::spawn::reserve_descriptors(1600);
    let guard = crate::supervisor::Guard::fork(&app::new_run_id())
        .map_err(|e| tracing::debug!("{e}; starting the guard by exec"))
        .ok()
        .map(std::sync::Arc::new);
    let config = app::RunConfig {
        manifest: path.to_path_buf(),
        plugins: plugins.map(Path::to_path_buf),
        colour: std::io::stdout().is_terminal(),
        control: control.enabled,
        control_socket: control.socket,
        stay_alive: control.stay_alive,
        guard: guard.clone(),
    };
    let runtime = runtime()?;
    let outcome = runtime.block_on(app::run(config, std::future::pending()));
    if let (Err(_), Some(guard)) = (&outcome, &guard) {
        // Refused before anything started: nothing for the guard to sweep.
        guard.ended_cleanly();
    }
    // Plugin calls may still be parked in host calls; do not wait for them.
    runtime.shutdown_background();
    app::outcome_result(&outcome?)
}

fn plugin_check(args: &crate::plugin_check::CheckArgs) -> Result<(), Failure> {
    use crate::plugin_check::{run, CheckFailure};
    let runtime = runtime()?;
    let result = runtime.block_on(run(args));
    // Plugin threads may still be parked in host calls; do not wait for them.
    runtime.shutdown_background();
    result.map_err(|e| match e {
        CheckFailure::BadInput(m) => Failure::BadInput(anyhow::anyhow!(m)),
        CheckFailure::Failed(m) => Failure::Runtime(anyhow::anyhow!(m)),
    })
}
