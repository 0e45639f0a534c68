//! The dependency graph as Graphviz DOT, written by us, and rendered to PNG, SVG or PDF by Graphviz.
//!
//! Nodes are filled by ready strategy as in Process Pilot (tcp light blue, file light green, pipe light
//! yellow, a plugin's lavender, none white); an edge runs from a dependency to the process that needs
//! it, so arrows follow the start order.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::manifest::{Manifest, ProcessSpec, ReadyStrategy};

/// Output formats of `pilot-host graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Portable Network Graphics, via Graphviz.
    Png,
    /// Scalable Vector Graphics, via Graphviz; the only format that shows `--detailed` tooltips.
    Svg,
    /// PDF, via Graphviz.
    Pdf,
    /// Graphviz source, written without Graphviz.
    Dot,
}

impl GraphFormat {
    /// Returns the file extension, which is also Graphviz's `-T` name.
    pub fn extension(self) -> &'static str {
        match self {
            GraphFormat::Png => "png",
            GraphFormat::Svg => "svg",
            GraphFormat::Pdf => "pdf",
            GraphFormat::Dot => "dot",
        }
    }
}

/// Rendering the graph failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Graphviz's `dot` is not installed.
    #[error("Graphviz's `dot` program was not found on PATH; install Graphviz (`apt-get install graphviz`, `brew install graphviz`, `choco install graphviz`) or use `--format dot`")]
    GraphvizMissing,
    /// `dot` ran and failed.
    #[error("Graphviz's `dot` failed: {0}")]
    Graphviz(String),
    /// The output could not be written.
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Returns the fill colour of a process's node.
pub fn fill_colour(process: &ProcessSpec) -> &'static str {
    match process.ready.as_ref().map(|r| &r.strategy) {
        Some(ReadyStrategy::Tcp { .. }) => "lightblue",
        Some(ReadyStrategy::File { .. }) => "lightgreen",
        Some(ReadyStrategy::Pipe { .. }) => "lightyellow",
        Some(ReadyStrategy::Plugin { .. }) => "lavender",
        None => "white",
    }
}

/// Quotes `text` as a DOT string.
fn quote(text: &str) -> String {
    format!(
        "\"{}\"",
        text.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

fn tooltip(p: &ProcessSpec) -> String {
    let ready = match p.ready.as_ref() {
        None => "none (ready once spawned)".to_string(),
        Some(r) => {
            let what = match &r.strategy {
                ReadyStrategy::Tcp { host, port } => format!("tcp {host}:{port}"),
                ReadyStrategy::File { path } => format!("file {}", path.display()),
                ReadyStrategy::Pipe { path } => format!("pipe {}", path.display()),
                ReadyStrategy::Plugin { name, .. } => format!("plugin strategy {name}"),
            };
            format!("{what}, ready timeout {} s", r.timeout.as_secs_f64())
        }
    };
    format!(
        "path: {}\nready strategy: {ready}\nstop timeout: {} s\nshutdown strategy: {}",
        p.executable.display(),
        p.timeout.as_secs_f64(),
        p.shutdown_strategy.as_str()
    )
}

/// Returns the manifest's dependency graph as DOT; `detailed` adds tooltips.
pub fn to_dot(manifest: &Manifest, detailed: bool) -> String {
    let mut out = String::from("digraph processes {\n");
    out.push_str("  rankdir=LR;\n");
    out.push_str("  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n");
    for p in &manifest.processes {
        let _ = write!(
            out,
            "  {} [fillcolor={}",
            quote(&p.name),
            quote(fill_colour(p))
        );
        if detailed {
            let _ = write!(out, ", tooltip={}", quote(&tooltip(p)));
        }
        out.push_str("];\n");
    }
    for p in &manifest.processes {
        for dep in &p.dependencies {
            let _ = writeln!(out, "  {} -> {};", quote(dep), quote(&p.name));
        }
    }
    out.push_str("}\n");
    out
}

/// Writes the graph of `manifest` as `format` into `output_dir`; returns the file written.
pub fn write_graph(
    manifest: &Manifest,
    format: GraphFormat,
    output_dir: &Path,
    detailed: bool,
) -> Result<PathBuf, RenderError> {
    let dot = to_dot(manifest, detailed);
    std::fs::create_dir_all(output_dir).map_err(|source| RenderError::Write {
        path: output_dir.to_owned(),
        source,
    })?;
    let stem = manifest
        .source
        .file_stem()
        .map_or("processes".into(), |s| s.to_string_lossy().into_owned());
    let output = output_dir.join(format!("{stem}.{}", format.extension()));
    if format == GraphFormat::Dot {
        std::fs::write(&output, dot).map_err(|source| RenderError::Write {
            path: output.clone(),
            source,
        })?;
        return Ok(output);
    }
    render_with_graphviz(&dot, format, &output)?;
    Ok(output)
}

/// Runs Graphviz's `dot` on `dot`, writing `output`.
pub fn render_with_graphviz(
    dot: &str,
    format: GraphFormat,
    output: &Path,
) -> Result<(), RenderError> {
    let mut child = Command::new("dot")
        .arg(format!("-T{}", format.extension()))
        .arg("-o")
        .arg(output)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RenderError::GraphvizMissing,
            _ => RenderError::Graphviz(e.to_string()),
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let written = stdin.write_all(dot.as_bytes());
    drop(stdin);
    let result = child
        .wait_with_output()
        .map_err(|e| RenderError::Graphviz(e.to_string()))?;
    written.map_err(|e| RenderError::Graphviz(e.to_string()))?;
    if !result.status.success() {
        return Err(RenderError::Graphviz(
            String::from_utf8_lossy(&result.stderr).trim().to_string(),
        ));
    }
    Ok(())
}
