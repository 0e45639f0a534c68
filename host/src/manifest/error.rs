//! Errors of loading a manifest: one typed error per failure, and a `Problem` per invalid thing.

use std::fmt;
use std::path::PathBuf;

/// Loading a manifest failed; nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest `{}`: {source}", path.display())]
    Read {
        /// The manifest's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file's extension names no supported format.
    #[error("manifest `{}` has an unsupported extension; name it `.yaml`, `.yml` or `.json`", path.display())]
    Format {
        /// The manifest's path.
        path: PathBuf,
    },
    /// The YAML or JSON syntax is wrong.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        /// The manifest's path.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The manifest parsed but is invalid; every problem found is listed.
    #[error("manifest `{}` is invalid ({} {}):\n{}", path.display(), problems.len(),
        if problems.len() == 1 { "problem" } else { "problems" }, list(problems))]
    Invalid {
        /// The manifest's path.
        path: PathBuf,
        /// Every problem, in file order.
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which process a problem belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessRef {
    /// A process with a usable name.
    Named(String),
    /// A process without one: its 1-based position in `processes`.
    Index(usize),
}

impl fmt::Display for ProcessRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessRef::Named(name) => write!(f, "process `{name}`"),
            ProcessRef::Index(i) => write!(f, "process #{i}"),
        }
    }
}

/// One thing wrong (or, as a warning, doubtful) in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The process it is about, if any.
    pub process: Option<ProcessRef>,
    /// The key it is about, if any (`restart`, `ready_params.port`, `plugins.http-ready`).
    pub field: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.process, &self.field) {
            (Some(p), Some(field)) => write!(f, "{p}, `{field}`: {}", self.message),
            (Some(p), None) => write!(f, "{p}: {}", self.message),
            (None, Some(field)) => write!(f, "`{field}`: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl ManifestError {
    /// Returns every problem as one line each (a read or syntax error is one problem).
    pub fn problem_lines(&self) -> Vec<String> {
        match self {
            ManifestError::Invalid { problems, .. } => {
                problems.iter().map(ToString::to_string).collect()
            }
            other => vec![other.to_string()],
        }
    }
}
