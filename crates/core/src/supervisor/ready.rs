//! The built-in ready strategies, event-driven, and the loop around plugin ready checks.
//!
//! - `tcp`: connect attempts at a pace that grows with the time waited, so readiness is seen within
//!   0.25 % of the time waited (probing at least every 0.2 ms and at most every 5 ms apart).
//! - `file`: inotify on the folder, with a 100 ms fallback check; a stale file is removed before the
//!   process starts, so an old run cannot make a new one look ready.
//! - `pipe`: a FIFO, created 0600 if absent (and removed once ready), read without blocking; ready on a
//!   line `ready`. A FIFO a service puts at the path itself is opened and read too.
//!
//! Why the pace and the FIFO handling are what they are: `docs/design/readiness.md`.

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
pub enum ReadyPrep {
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
        /// Its device and inode, to tell it from a FIFO a service puts in its place.
        id: (u64, u64),
    },
}

/// Readers that keep draining FIFOs after readiness, so the child never meets a closed pipe; they stop
/// when this is dropped.
#[derive(Debug, Default)]
pub struct Drain(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Drain {
    fn drop(&mut self) {
        for reader in &self.0 {
            reader.abort();
        }
    }
}

fn fifo_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.file_type().is_fifo().then(|| (meta.dev(), meta.ino()))
}

/// Prepares `strategy` before the spawn: removes a stale ready file, creates and opens the FIFO.
pub fn prepare(strategy: &ReadyStrategy) -> Result<ReadyPrep, String> {
    match strategy {
        ReadyStrategy::File { path } => match std::fs::remove_file(path) {
            Ok(()) => {
                tracing::debug!("removed stale ready file `{}`", path.display());
                Ok(ReadyPrep::Nothing)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ReadyPrep::Nothing),
            Err(e) => Err(format!(
                "cannot remove stale ready file `{}`: {e}",
                path.display()
            )),
        },
        ReadyStrategy::Pipe { path } => open_fifo(path),
        _ => Ok(ReadyPrep::Nothing),
    }
}

fn open_fifo(path: &Path) -> Result<ReadyPrep, String> {
    use std::os::unix::fs::FileTypeExt;
    let created = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_fifo() => false,
        Ok(_) => return Err(format!("`{}` exists and is not a FIFO", path.display())),
        Err(_) => {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| format!("cannot create FIFO `{}`: {e}", path.display()))?;
            true
        }
    };
    let receiver = pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
        .map_err(|e| format!("cannot open FIFO `{}`: {e}", path.display()))?;
    let id = fifo_id(path).ok_or_else(|| format!("FIFO `{}` vanished", path.display()))?;
    Ok(ReadyPrep::Pipe {
        receiver,
        path: path.to_path_buf(),
        created,
        id,
    })
}

/// Everything a readiness wait needs, owned, so the wait can run beside the process's other work.
pub struct ReadyWait {
    /// The strategy.
    pub strategy: ReadyStrategy,
    /// What `prepare` made.
    pub prepared: ReadyPrep,
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
/// A pipe's readers are handed back so they drain the FIFOs until the process exits.
pub async fn wait(w: ReadyWait) -> Result<Drain, String> {
    match (&w.strategy, w.prepared) {
        (ReadyStrategy::Tcp { host, port }, _) => tcp(host, *port, &w.why_not)
            .await
            .map(|()| Drain::default()),
        (ReadyStrategy::File { path }, _) => {
            note(&w.why_not, || {
                format!("`{}` does not exist", path.display())
            });
            file(path).await.map(|()| Drain::default())
        }
        (
            ReadyStrategy::Pipe { .. },
            ReadyPrep::Pipe {
                receiver,
                path,
                created,
                id,
            },
        ) => {
            note(&w.why_not, || {
                format!("no line `ready` in FIFO `{}`", path.display())
            });
            Ok(fifo(receiver, &path, created, id).await)
        }
        (ReadyStrategy::Pipe { path }, ReadyPrep::Nothing) => {
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
        .map(|()| Drain::default()),
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
            (start.elapsed() / 400).clamp(Duration::from_micros(200), Duration::from_millis(5));
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

/// Reads lines from `receiver` until it ends; tells `ready` when a line `ready` arrives.
fn read_fifo(
    receiver: pipe::Receiver,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(receiver);
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) if line.trim() == "ready" => {
                    let _ = ready.send(());
                }
                Ok(_) => {}
            }
        }
    })
}

async fn fifo(receiver: pipe::Receiver, path: &Path, created: bool, ours: (u64, u64)) -> Drain {
    use notify::Watcher;
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
    let mut drain = Drain(vec![read_fifo(receiver, ready_tx.clone())]);
    let mut opened = vec![ours];
    // A service may replace our FIFO with its own: watch the folder and read every new one too.
    let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let _watcher = notify::recommended_watcher(move |_| {
        let _ = tx.send(());
    })
    .and_then(|mut w| {
        let dir = path.parent().unwrap_or(Path::new("/"));
        w.watch(dir, notify::RecursiveMode::NonRecursive)
            .map(|()| w)
    });
    loop {
        tokio::select! {
            _ = ready.recv() => break,
            _ = changes.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if let Some(id) = fifo_id(path).filter(|id| !opened.contains(id)) {
            opened.push(id);
            match pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(path)
            {
                Ok(receiver) => {
                    tracing::debug!("reading the new FIFO at `{}` too", path.display());
                    drain.0.push(read_fifo(receiver, ready_tx.clone()));
                }
                Err(e) => tracing::debug!("cannot open the new FIFO `{}`: {e}", path.display()),
            }
        }
    }
    if created && fifo_id(path) == Some(ours) {
        let _ = std::fs::remove_file(path);
    }
    drain
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
