//! `process-graph`: Process Pilot's graph command line, for people coming from it.
//!
//! `process-graph manifest.json --format png --output-dir ./graphs --detailed`

use clap::Parser;

/// Draw a manifest's process dependency graph with Graphviz.
#[derive(Debug, Parser)]
#[command(name = "process-graph", version)]
struct ProcessGraph {
    #[command(flatten)]
    args: pilot_host::cli::GraphArgs,
}

fn main() -> std::process::ExitCode {
    let cli = ProcessGraph::parse();
    pilot_host::cli::init_tracing(None);
    pilot_host::cli::exit_code(pilot_host::cli::graph(&cli.args))
}
