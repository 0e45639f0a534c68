//! The command line: argument parsing and the commands, each a thin layer over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::graph::DepGraph;
use crate::manifest::{self, Catalog, Loaded, ManifestError};
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
    /// Print the manifest's JSON Schema.
    Schema,
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

/// Loads a manifest for a command, printing its warnings.
pub fn load(path: &Path, plugins: Option<&Path>) -> Result<Loaded, Failure> {
    let catalog = match plugins {
        None => Catalog::default(),
        Some(dir) if !dir.is_dir() => {
            return Err(Failure::BadInput(anyhow::anyhow!(
                "plugin folder `{}` does not exist; pass an existing folder to `--plugins`",
                dir.display()
            )))
        }
        Some(_) => Catalog::default(),
    };
    let loaded = manifest::load(path, &catalog)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(loaded)
}

fn validate(path: &Path, plugins: Option<&Path>) -> Result<(), Failure> {
    let loaded = load(path, plugins)?;
    let m = &loaded.manifest;
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
    let loaded = load(&args.manifest, None)?;
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
