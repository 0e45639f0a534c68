//! Turning paths as written in a manifest into absolute paths, as Process Pilot did: a bare name through
//! PATH, a relative path against the base directory, a `*` pattern by search.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// An executable found for a `path`, with a warning when the choice was ambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The absolute executable.
    pub path: PathBuf,
    /// Set when a pattern matched several executables.
    pub warning: Option<String>,
}

/// Returns `written` made absolute: `~/` expands to `$HOME`, relative paths join `base`.
pub fn absolute(written: &str, base: &Path) -> PathBuf {
    let expanded = match (written.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(written),
    };
    normalize(&base.join(expanded))
}

/// Returns `written` in backticks, followed by what it resolved to when that reads differently.
pub fn shown(written: &str, resolved: &Path) -> String {
    if Path::new(written) == resolved {
        format!("`{written}`")
    } else {
        format!("`{written}` (resolved to `{}`)", resolved.display())
    }
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Finds the executable for `written`; `search_path` is the PATH the child will see.
pub fn executable(
    written: &str,
    base: &Path,
    search_path: Option<&OsStr>,
) -> Result<Resolved, String> {
    if written.trim().is_empty() {
        return Err("is empty; give the executable to run, e.g. `path: ./bin/server`".into());
    }
    if written.contains(['*', '?', '[']) {
        return by_pattern(written, base);
    }
    if !written.contains('/') {
        return on_path(written, search_path);
    }
    let path = absolute(written, base);
    match check_executable(&path) {
        Ok(()) => Ok(Resolved {
            path,
            warning: None,
        }),
        Err(why) if why == MISSING && !Path::new(written).is_absolute() => Err(format!(
            "{} {why}; relative paths start at the manifest's folder (or `base_directory`)",
            shown(written, &path)
        )),
        Err(why) => Err(format!("{} {why}", shown(written, &path))),
    }
}

const MISSING: &str = "does not exist";

fn check_executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|_| MISSING.to_string())?;
    if meta.is_dir() {
        return Err("is a directory, not an executable; name the program inside it".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "is not executable; run `chmod +x {}`",
            path.display()
        ));
    }
    Ok(())
}

fn on_path(name: &str, search_path: Option<&OsStr>) -> Result<Resolved, String> {
    let dirs = search_path.map(std::env::split_paths).into_iter().flatten();
    for dir in dirs {
        let candidate = dir.join(name);
        if check_executable(&candidate).is_ok() {
            let path = if candidate.is_absolute() {
                candidate
            } else {
                absolute(
                    &candidate.to_string_lossy(),
                    &std::env::current_dir().unwrap_or_default(),
                )
            };
            return Ok(Resolved {
                path,
                warning: None,
            });
        }
    }
    Err(format!(
        "`{name}` was not found on PATH; give its path (e.g. `./{name}` or `/usr/bin/{name}`) or add its folder to PATH"
    ))
}

fn by_pattern(written: &str, base: &Path) -> Result<Resolved, String> {
    let pattern = absolute(written, base);
    let pattern_text = pattern.to_string_lossy();
    let entries = glob::glob(&pattern_text)
        .map_err(|e| format!("`{written}` is not a valid pattern: {e}"))?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|p| check_executable(p).is_ok())
        .collect();
    found.sort();
    let Some(first) = found.first().cloned() else {
        return Err(format!(
            "no executable matches `{written}` (searched `{pattern_text}`); fix the pattern or give the executable's path"
        ));
    };
    let warning = (found.len() > 1).then(|| {
        let others: Vec<String> = found[1..]
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect();
        format!(
            "`{written}` matches {} executables; using the first, `{}` (also: {})",
            found.len(),
            first.display(),
            others.join(", ")
        )
    });
    Ok(Resolved {
        path: first,
        warning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pilot-resolve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn touch(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn bare_name_is_found_on_path() {
        let dir = scratch("path");
        touch(&dir.join("tool"), 0o755);
        let search = std::env::join_paths([Path::new("/nonexistent"), &dir]).unwrap();
        let found = executable("tool", Path::new("/"), Some(&search)).unwrap();
        assert_eq!(found.path, dir.join("tool"));
        let err = executable("no-such-tool", Path::new("/"), Some(&search)).unwrap_err();
        assert!(err.contains("was not found on PATH"), "{err}");
    }

    #[test]
    fn relative_path_joins_the_base_and_must_be_executable() {
        let dir = scratch("rel");
        std::fs::create_dir(dir.join("bin")).unwrap();
        touch(&dir.join("bin/run"), 0o755);
        touch(&dir.join("bin/data"), 0o644);
        assert_eq!(
            executable("./bin/run", &dir, None).unwrap().path,
            dir.join("bin/run")
        );
        assert_eq!(
            executable("bin/../bin/run", &dir, None).unwrap().path,
            dir.join("bin/run")
        );
        let err = executable("./bin/data", &dir, None).unwrap_err();
        assert!(err.contains("is not executable; run `chmod +x"), "{err}");
        let err = executable("./bin", &dir, None).unwrap_err();
        assert!(err.contains("is a directory"), "{err}");
        let err = executable("./bin/missing", &dir, None).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn pattern_takes_the_first_match_and_warns_about_the_rest() {
        let dir = scratch("glob");
        touch(&dir.join("server-2"), 0o755);
        touch(&dir.join("server-1"), 0o755);
        touch(&dir.join("server-3.txt"), 0o644);
        let found = executable("server-*", &dir, None).unwrap();
        assert_eq!(found.path, dir.join("server-1"));
        let warning = found.warning.unwrap();
        assert!(warning.contains("matches 2 executables"), "{warning}");
        let err = executable("client-*", &dir, None).unwrap_err();
        assert!(err.starts_with("no executable matches `client-*`"), "{err}");
    }

    #[test]
    fn single_pattern_match_has_no_warning() {
        let dir = scratch("glob1");
        touch(&dir.join("only-1"), 0o755);
        assert_eq!(executable("only-*", &dir, None).unwrap().warning, None);
    }
}
