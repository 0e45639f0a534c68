//! Why the control plane cannot start, and which of those reasons are the user's to fix.

use std::path::PathBuf;

use super::tls;

/// Why the control plane cannot start; nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The socket's folder is unsafe or cannot be made.
    #[error("control socket folder `{}` {problem}; fix it, or pass `--control-socket PATH` (or `--no-control`)", .dir.display())]
    Folder {
        /// The folder.
        dir: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Something that is not a socket is in the way.
    #[error("`{}` exists and is not a socket; remove it or pass another `--control-socket PATH`", .0.display())]
    NotASocket(PathBuf),
    /// Another pilot-host serves the socket.
    #[error("another pilot-host runs this manifest, pid {pid} (its control socket is `{socket}`); stop it first (`pilot-host ctl --socket {socket} shutdown`) or pass another `--control-socket PATH`", socket = .socket.display())]
    AlreadyRunning {
        /// The socket.
        socket: PathBuf,
        /// The pid serving it.
        pid: String,
    },
    /// A listener cannot be made.
    #[error(
        "cannot listen on {addr} for {what}: {source}; pick another address in `control_server`"
    )]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Something that pilot-host did not write is where it would write its token.
    #[error("`{}` exists and is not a token file pilot-host left behind; pilot-host writes the token it generates there, so move that file away, or set `control_server.token_file`, or pass another `--control-socket PATH`", .0.display())]
    TokenInTheWay(PathBuf),
    /// The TLS certificate or key cannot be used.
    #[error("cannot serve TLS: {0}; fix `control_server.tls`")]
    Tls(#[from] tls::TlsError),
    /// The token file cannot be read.
    #[error("cannot read the token file `{}`: {source}", .path.display())]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another file operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was tried.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl StartError {
    /// Returns whether the user's setup is at fault (exit 2) rather than the moment (exit 1: the
    /// address is taken, another run serves the manifest, a write failed).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            StartError::Folder { .. }
                | StartError::NotASocket(_)
                | StartError::TokenInTheWay(_)
                | StartError::Tls(_)
                | StartError::Token { .. }
        )
    }
}
