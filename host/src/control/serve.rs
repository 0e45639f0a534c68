//! Serving connections: one accept loop per listener, caps on connections, deadlines, and hyper's
//! HTTP/1 on top (the same for TCP and the unix socket).
//!
//! The unix socket serves only pilot-host's own user and root, as the kernel says the peer is
//! (SO_PEERCRED, on every accept); anyone else is answered 403.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::error::ApiError;
use super::peer;

/// How long a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections past the cap still get an answer (`503`, or `403` for another user), this many at a
/// time; the rest are closed.
const REJECTING: usize = 64;

/// Accepts connections on the unix socket and serves `router` on each, at most `max` at once, until
/// the task is aborted (which closes every connection it serves).
pub async fn unix_loop(listener: UnixListener, router: Router, max: usize) {
    let permits = Arc::new(Semaphore::new(max));
    let rejects = Arc::new(Semaphore::new(REJECTING));
    let mut connections = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                pause_after(e).await;
                continue;
            }
        };
        let uid = stream.peer_cred().map(|c| c.uid());
        if let Some(refused) = match uid {
            Ok(uid) if peer::allowed(uid) => None,
            Ok(uid) => Some(peer::refusal(uid, "this control socket")),
            Err(e) => Some(format!("pilot-host cannot tell who connected ({e})")),
        } {
            tracing::debug!("control socket: {refused}");
            if let Ok(permit) = rejects.clone().try_acquire_owned() {
                connections.spawn(serve_io(stream, forbidden(refused), permit, false));
            }
        } else if let Ok(permit) = permits.clone().try_acquire_owned() {
            connections.spawn(serve_io(stream, router.clone(), permit, true));
        } else if let Ok(permit) = rejects.clone().try_acquire_owned() {
            connections.spawn(serve_io(stream, busy(max), permit, false));
        }
    }
}

/// Accepts connections on TCP and serves `router` on each, at most `max` at once, until the task is
/// aborted (which closes every connection it serves).
pub async fn tcp_loop(listener: TcpListener, router: Router, max: usize) {
    let permits = Arc::new(Semaphore::new(max));
    let rejects = Arc::new(Semaphore::new(REJECTING));
    let mut connections = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                pause_after(e).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            connections.spawn(serve_io(stream, router.clone(), permit, true));
        } else if let Ok(permit) = rejects.clone().try_acquire_owned() {
            connections.spawn(serve_io(stream, busy(max), permit, false));
        }
    }
}

/// Lets connections end before accepting more, after an accept failed (out of file descriptors,
/// most likely).
async fn pause_after(e: std::io::Error) {
    tracing::warn!("control server: cannot accept a connection: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// A router that answers every request with 503, for connections past the cap.
fn busy(max: usize) -> Router {
    Router::new().fallback(move || async move {
        ApiError {
            status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
            kind: "busy",
            message: format!(
                "pilot-host serves {max} control connections at most; close some and try again"
            ),
        }
    })
}

/// A router that answers every request with 403, for another user on the unix socket.
fn forbidden(message: String) -> Router {
    Router::new().fallback(move || async move {
        ApiError {
            status: axum::http::StatusCode::FORBIDDEN,
            kind: "forbidden",
            message,
        }
    })
}

async fn serve_io<T>(io: T, router: Router, permit: OwnedSemaphorePermit, keep_alive: bool)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_http(io, router, keep_alive).await;
    drop(permit);
}

async fn serve_http<T>(io: T, router: Router, keep_alive: bool)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(keep_alive)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = connection.await {
        tracing::debug!("control connection ended: {e}");
    }
}
