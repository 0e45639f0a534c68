//! `file-ready`: a pilot-host plugin whose ready strategy `file-ready` says a process is ready once a
//! file exists: Process Pilot's `FileReadyPlugin`, polled by the host instead of sleeping in a loop.
//!
//! ```yaml
//! processes:
//!   - name: db
//!     path: ./db
//!     ready_strategy: file-ready
//!     ready_params: { path: /tmp/db.ready }   # relative paths are taken from the process's working directory
//! plugins:
//!   file-ready: { allow_read: [/tmp] }         # the folder the file appears in
//! ```
//!
//! A file the plugin cannot see because its folder is not granted reads as "not yet", with a reason
//! that says what to grant, so a missing grant shows up in the timeout message.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use pilot_plugin_sdk::{
    export_plugin, Description, Params, Plugin, PluginError, ProcessInfo, ReadyStatus,
};

/// The plugin; it keeps no state.
#[derive(Default)]
struct FileReady;

impl Plugin for FileReady {
    fn describe(&self) -> Description {
        Description::new("file-ready", env!("CARGO_PKG_VERSION")).ready_strategy("file-ready")
    }

    fn ready_check(
        &self,
        _strategy: &str,
        process: &ProcessInfo,
        params: &Params,
    ) -> Result<ReadyStatus, PluginError> {
        let path = resolve(params.str("path")?, &process.working_directory);
        check(&path)
    }
}

/// Returns `path`, taken relative to `working_directory` unless it is absolute.
fn resolve(path: &str, working_directory: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        Path::new(working_directory).join(path)
    }
}

/// Answers whether `path` exists; explains why not, including a missing grant.
fn check(path: &Path) -> Result<ReadyStatus, PluginError> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(ReadyStatus::Ready),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let folder = path.parent().unwrap_or(Path::new("/"));
            if std::fs::metadata(folder).is_ok() {
                Ok(ReadyStatus::not_yet(format!(
                    "`{}` does not exist yet",
                    path.display()
                )))
            } else {
                Ok(ReadyStatus::not_yet(format!(
                    "`{}` is not visible: its folder `{}` does not exist or is not granted \
                     (add it to `plugins.file-ready.allow_read`)",
                    path.display(),
                    folder.display()
                )))
            }
        }
        Err(e) => Err(PluginError::unavailable(format!(
            "cannot look at `{}`: {e} (is its folder in `plugins.file-ready.allow_read`?)",
            path.display()
        ))),
    }
}

export_plugin!(FileReady);

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(status: ReadyStatus) -> String {
        match status {
            ReadyStatus::NotYet(r) => r,
            ReadyStatus::Ready => panic!("want not-yet, got ready"),
        }
    }

    #[test]
    fn relative_paths_start_at_the_working_directory() {
        assert_eq!(resolve("x.ready", "/srv/db"), Path::new("/srv/db/x.ready"));
        assert_eq!(
            resolve("/tmp/x.ready", "/srv/db"),
            Path::new("/tmp/x.ready")
        );
    }

    #[test]
    fn ready_once_the_file_exists() {
        let dir = std::env::temp_dir().join(format!("file-ready-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("flag");
        let _ = std::fs::remove_file(&file);
        assert!(reason(check(&file).unwrap()).ends_with("does not exist yet"));
        std::fs::write(&file, b"").unwrap();
        assert!(check(&file).unwrap().is_ready());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(reason(check(&file).unwrap()).contains("is not granted"));
    }
}
