//! `pilot-host plugin new`: writes a buildable plugin project in Rust, C, Python or JavaScript.
//!
//! The project holds its source (a ready strategy, a lifecycle hook, a stat handler or a control
//! plugin, written with the language's SDK), the SDK itself and the WIT contract (embedded in this
//! binary, so a project made outside this repository builds), a build script (or `Cargo.toml`), a manifest that uses the
//! plugin, and a README on how to build and check it. Everything is checked before anything is
//! written, and the files are written into a temporary folder that is renamed into place, so bad input
//! or a failed write leaves nothing behind; that folder is made exclusively under a random name and
//! no link is followed while writing ([`stage`]).

mod files;
mod stage;

use std::path::{Path, PathBuf};

/// The language of a new plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with `cargo build --target wasm32-wasip2`.
    Rust,
    /// C, with wit-bindgen, clang (wasm32-wasi) and wasm-tools.
    C,
    /// Python, with componentize-py.
    Python,
    /// JavaScript, with componentize-js.
    Js,
}

/// What a new plugin provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Kind {
    /// A ready strategy (ready once a file exists).
    #[default]
    Ready,
    /// A lifecycle hook (logs every event).
    Hook,
    /// A stat handler (restarts a process whose memory stays too high).
    Stats,
    /// A control plugin: HTTP endpoints under `/plugins/NAME/` and events.
    Control,
}

/// What `plugin new` was asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// The plugin's name (also its strategy, hook or handler name).
    pub name: String,
    /// Its language.
    pub lang: Lang,
    /// What it provides.
    pub kind: Kind,
    /// The project folder (default: `./NAME`).
    pub dir: Option<PathBuf>,
}

/// Why a project was not written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a plugin name.
    #[error("plugin name `{name}` is invalid: {why}; use 1 to 64 lowercase letters, digits and `-`, starting with a letter (e.g. `disk-ready`)")]
    Name {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// The folder exists and holds files.
    #[error("folder `{}` already exists and is not empty; choose another with `--dir`, or remove it", .0.display())]
    NotEmpty(PathBuf),
    /// The folder's path is not a folder.
    #[error("`{}` exists and is not a folder; choose another with `--dir`", .0.display())]
    NotAFolder(PathBuf),
    /// The folder's path is a symbolic link.
    #[error("`{}` is a symbolic link, and `plugin new` writes only into a real folder; pass the folder it points to, or another `--dir`", .0.display())]
    Link(PathBuf),
    /// Writing failed (nothing is left behind).
    #[error("cannot write the project into `{}`: {source}", dir.display())]
    Write {
        /// The project folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A written project.
#[derive(Debug, Clone)]
pub struct Created {
    /// The project folder.
    pub dir: PathBuf,
    /// The files written, relative to `dir`.
    pub files: Vec<PathBuf>,
    /// The component the build makes, relative to `dir`.
    pub component: PathBuf,
    /// The command that builds it, run in `dir`.
    pub build: &'static str,
}

impl ScaffoldError {
    /// Returns whether the request was at fault (exit 2) rather than the file system (exit 1).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ScaffoldError::Write { .. })
    }
}

/// Runs `plugin new`: writes the project and prints what to do next.
pub fn run(request: &Request) -> Result<(), ScaffoldError> {
    let created = create(request)?;
    println!(
        "created {} plugin `{}` in `{}` ({} files)",
        match request.lang {
            Lang::Rust => "Rust",
            Lang::C => "C",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        },
        request.name,
        created.dir.display(),
        created.files.len()
    );
    println!("next, in that folder (README.md says how to install the build tools):");
    println!("  {}", created.build);
    println!("  pilot-host plugin check {}", created.component.display());
    println!("  pilot-host run manifest.yaml --plugins .");
    Ok(())
}

/// Ready strategy names the host provides itself; a plugin may not shadow them.
const BUILTIN: [&str; 3] = ["tcp", "pipe", "file"];

/// Checks that `name` can name a plugin, a crate, a C file and a Python module.
pub fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let bad = |why: &str| {
        Err(ScaffoldError::Name {
            name: name.escape_debug().to_string(),
            why: why.to_string(),
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("it must be 1 to 64 characters long");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("it must start with a lowercase letter");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return bad(&format!("`{}` is not allowed", c.escape_default()));
    }
    if name.ends_with('-') || name.contains("--") {
        return bad("a `-` must stand between two letters or digits");
    }
    if BUILTIN.contains(&name) {
        return bad("it is the name of a built-in ready strategy");
    }
    Ok(())
}

/// Writes the project; nothing is written when the request is bad or a write fails.
pub fn create(request: &Request) -> Result<Created, ScaffoldError> {
    check_name(&request.name)?;
    let dir = request
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&request.name));
    let existed = check_folder(&dir)?;
    let project = files::project(&request.name, request.lang, request.kind);
    let write_err = |source| ScaffoldError::Write {
        dir: dir.clone(),
        source,
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(write_err)?;
    stage::write_project(&dir, &parent, existed, &project.files).map_err(write_err)?;
    Ok(Created {
        dir,
        files: project
            .files
            .iter()
            .map(|f| PathBuf::from(&f.path))
            .collect(),
        component: project.component,
        build: project.build,
    })
}

/// Returns whether `dir` exists (empty); fails when it holds anything, is not a folder or is a link.
fn check_folder(dir: &Path) -> Result<bool, ScaffoldError> {
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(ScaffoldError::Link(dir.to_path_buf()));
    }
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(ScaffoldError::NotEmpty(dir.to_path_buf()))
            } else {
                Ok(true)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(_) if dir.exists() => Err(ScaffoldError::NotAFolder(dir.to_path_buf())),
        Err(source) => Err(ScaffoldError::Write {
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_fit_every_language() {
        for good in ["a", "disk-ready", "x2", "a-b-c"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "1 to 64"),
            ("Disk", "lowercase letter"),
            ("2x", "lowercase letter"),
            ("a_b", "`_` is not allowed"),
            ("a b", "` ` is not allowed"),
            ("a/b", "`/` is not allowed"),
            ("a-", "between two"),
            ("a--b", "between two"),
            ("tcp", "built-in"),
        ] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let long = "a".repeat(65);
        assert!(check_name(&long).is_err());
    }

    /// Every control project's `plugin-check.yaml` is a valid control spec for it that grants the
    /// `read` its handler needs; the C one carries the SDK's outgoing HTTP source.
    #[test]
    fn control_projects_carry_a_valid_spec_granting_read() {
        let dir = tempfile::tempdir().unwrap();
        for lang in [Lang::Rust, Lang::C, Lang::Python, Lang::Js] {
            let project = files::project("my-ops", lang, Kind::Control);
            let file = |path: &str| {
                project
                    .files
                    .iter()
                    .find(|f| f.path == path)
                    .unwrap_or_else(|| panic!("{lang:?}: no {path}"))
            };
            let spec = dir.path().join(format!("{lang:?}.yaml"));
            std::fs::write(&spec, &file("plugin-check.yaml").contents).unwrap();
            let text = std::fs::read_to_string(&spec).unwrap();
            assert!(
                text.contains("plugin: my-ops\n") && text.contains("grants: { control: [read] }"),
                "{lang:?}: {text}"
            );
            crate::plugin::check::spec::Spec::read(&spec)
                .unwrap_or_else(|e| panic!("{lang:?}: {e}\n{text}"));
            let readme = String::from_utf8_lossy(&file("README.md").contents).into_owned();
            assert!(
                readme.contains("pilot-host plugin check my-ops.wasm "),
                "{lang:?}: {readme}"
            );
            if lang == Lang::C {
                file("sdk/pilot_control_http.c");
            }
        }
    }
}
