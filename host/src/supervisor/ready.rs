//! The built-in ready strategies, event-driven, and the loop around plugin ready checks.
//!
//! - `tcp`: connect attempts at a pace that grows with the time waited (every 0.25 ms at first, every
//!   5 ms at most), so readiness is seen within 1 % of the wait or 5 ms, and a slow process costs little.
//!   The pauses use a [`FineTimer`]: tokio's millisecond timer would stretch them to 1 to 2 ms.
//! - `file`: inotify on the folder (through notify), with a 100 ms fallback check; a stale file is
//!   removed before the process starts, so an old run cannot make a new one look ready.
//! - `pipe`: a FIFO, created 0600 if absent (and removed once ready), read without blocking; ready on a
//!   line `ready`. It is opened read-write so a writer that opens and closes without a word is no EOF.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::net::unix::pipe;
use tokio::time::Instant;

use super::fine_timer::FineTimer;
use crate::extension::{Extensions, ProcessInfo, ReadyAnswer};
use crate::manifest::ReadyStrategy;

/// What must exist before the process is spawned.
#[derive(Debug)]
pub enum Prepared {
    /// Nothing.
    Nothing,
    /// The read end of the FIFO, and whether we created it.
    Pipe {
        /// The FIFO, open read-write.
        receiver: pipe::Receiver,
        /// Its path.
        path: PathBuf,
        /// Whether we created it (and so remove it).
        created: bool,
    },
}

/// Prepares `strategy` before the spawn: removes a stale ready file, creates and opens the FIFO.
pub fn prepare(strategy: &ReadyStrategy) -> Result<Prepared, String> {
    match strategy {
        ReadyStrategy::File { path } => match std::fs::remove_file(path) {
            Ok(()) => {
                tracing::debug!("removed stale ready file `{}`", path.display());
                Ok(Prepared::Nothing)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Prepared::Nothing),
            Err(e) => Err(format!(
                "cannot remove stale ready file `{}`: {e}",
                path.display()
            )),
        },
        ReadyStrategy::Pipe { path } => open_fifo(path),
        _ => Ok(Prepared::Nothing),
    }
}

fn open_fifo(path: &Path) -> Result<Prepared, String> {
    use std::os::unix::fs::FileTypeExt;
    let created = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_fifo() => false,
        Ok(_) => return Err(format!("`{}` exists and is not a FIFO", path.display())),
        Err(_) => {
            let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|_| format!("`{}` contains a NUL byte", path.display()))?;
            // SAFETY: c_path is a valid NUL-terminated string.
            if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(format!("cannot create FIFO `{}`: {e}", path.display()));
            }
            true
        }
    };
    let receiver = pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
        .map_err(|e| format!("cannot open FIFO `{}`: {e}", path.display()))?;
    Ok(Prepared::Pipe {
        receiver,
        path: path.to_path_buf(),
        created,
    })
}

/// Everything a readiness wait needs, owned, so the wait can run beside the process's other work.
pub struct ReadyWait {
    /// The strategy.
    pub strategy: ReadyStrategy,
    /// What `prepare` made.
    pub prepared: Prepared,
    /// The process, for plugin checks.
    pub info: ProcessInfo,
    /// The plugins.
    pub extensions: Arc<dyn Extensions>,
    /// Why it is not ready yet, for the message when the deadline passes.
    pub why_not: Arc<std::sync::Mutex<String>>,
}

fn note(why_not: &std::sync::Mutex<String>, reason: impl FnOnce() -> String) {
    if let Ok(mut slot) = why_not.lock() {
        *slot = reason();
    }
}

/// Waits until ready; an error is the reason it never will be. The caller bounds it with the timeout.
/// A pipe's reader is handed back so it is drained until the process exits.
pub async fn wait(w: ReadyWait) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    match (&w.strategy, w.prepared) {
        (ReadyStrategy::Tcp { host, port }, _) => tcp(host, *port, &w.why_not).await.map(|()| None),
        (ReadyStrategy::File { path }, _) => {
            note(&w.why_not, || {
                format!("`{}` does not exist", path.display())
            });
            file(path).await.map(|()| None)
        }
        (
            ReadyStrategy::Pipe { .. },
            Prepared::Pipe {
                receiver,
                path,
                created,
            },
        ) => {
            note(&w.why_not, || {
                format!("no line `ready` in FIFO `{}`", path.display())
            });
            fifo(receiver, &path, created).await.map(Some)
        }
        (ReadyStrategy::Pipe { path }, Prepared::Nothing) => {
            Err(format!("FIFO `{}` was not prepared", path.display()))
        }
        (ReadyStrategy::Plugin { name, params }, _) => plugin(
            &*w.extensions,
            name,
            &w.info,
            &params.to_string(),
            &w.why_not,
        )
        .await
        .map(|()| None),
    }
}

async fn tcp(host: &str, port: u16, why_not: &std::sync::Mutex<String>) -> Result<(), String> {
    let start = Instant::now();
    let timer = FineTimer::new();
    loop {
        match tokio::net::TcpStream::connect((host, port)).await {
            Ok(_) => return Ok(()),
            Err(e) => note(why_not, || {
                format!("connecting to `{host}:{port}` fails: {e}")
            }),
        }
        let pause =
            (start.elapsed() / 100).clamp(Duration::from_micros(250), Duration::from_millis(5));
        timer.sleep(pause).await;
    }
}

async fn file(path: &Path) -> Result<(), String> {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Watch the folder: the file does not exist yet. If that fails, the fallback check still works.
    let watcher = notify::recommended_watcher(move |_| {
        let _ = tx.send(());
    })
    .and_then(|mut w| {
        let dir = path.parent().unwrap_or(Path::new("/"));
        w.watch(dir, notify::RecursiveMode::NonRecursive)
            .map(|()| w)
    });
    if let Err(e) = &watcher {
        tracing::debug!(
            "cannot watch the folder of `{}` ({e}); checking every 100 ms",
            path.display()
        );
    }
    loop {
        if path.exists() {
            return Ok(());
        }
        tokio::select! {
            _ = rx.recv(), if watcher.is_ok() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

async fn fifo(
    receiver: pipe::Receiver,
    path: &Path,
    created: bool,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let mut lines = tokio::io::BufReader::new(receiver);
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) => return Err(format!("FIFO `{}` was closed", path.display())),
            Ok(_) if line.trim() == "ready" => break,
            Ok(_) => {}
            Err(e) => return Err(format!("cannot read FIFO `{}`: {e}", path.display())),
        }
    }
    if created {
        let _ = std::fs::remove_file(path);
    }
    // Keep reading so the child never meets a closed pipe (SIGPIPE) if it writes again.
    Ok(tokio::spawn(async move {
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut lines, &mut sink).await;
    }))
}

async fn plugin(
    ext: &dyn Extensions,
    name: &str,
    info: &ProcessInfo,
    params: &str,
    why_not: &std::sync::Mutex<String>,
) -> Result<(), String> {
    loop {
        match ext.ready_check(name, info, params).await {
            ReadyAnswer::Ready => return Ok(()),
            ReadyAnswer::NotYet(reason) => note(why_not, || format!("`{name}` says: {reason}")),
            ReadyAnswer::Error(e) => note(why_not, || format!("`{name}` failed: {e}")),
        }
        tokio::time::sleep(ext.ready_check_interval()).await;
    }
}
