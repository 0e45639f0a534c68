//! Errors of loading a manifest: one typed error per failure, and a `Problem` per invalid thing.

use std::fmt;
use std::path::PathBuf;

/// Loading a manifest failed; nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest `{}`: {error}", path.display())]
    Read {
        /// The manifest's path.
        path: PathBuf,
        /// Why (printed in the message, not again as a cause).
        error: std::io::Error,
    },
    /// The path names something other than a regular file (a folder, a FIFO, a device, a socket),
    /// which is refused before it is read: a FIFO would be read forever.
    #[error("manifest `{}` is {what}, not a regular file; give the path of the manifest file", path.display())]
    NotAFile {
        /// The manifest's path.
        path: PathBuf,
        /// What it is, e.g. "a folder".
        what: &'static str,
    },
    /// The file is larger than any manifest needs to be.
    #[error("manifest `{}` is {size} bytes, above the limit of {limit} bytes; is it the right file?", path.display())]
    TooBig {
        /// The manifest's path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit, [`crate::manifest::MAX_MANIFEST_BYTES`].
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("manifest `{}` is not UTF-8 text (line {line}, column {column} holds an invalid byte); save it as UTF-8", path.display())]
    NotUtf8 {
        /// The manifest's path.
        path: PathBuf,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 1-based byte column of the first invalid byte.
        column: usize,
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
