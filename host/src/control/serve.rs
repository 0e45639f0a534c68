//! Serving connections: one accept loop per listener, a cap on connections served at once, a deadline
//! for request headers, and hyper's HTTP/1 on top (the same code for TCP and the unix socket).

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

/// How long a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections past the cap still get a `503` answer, this many at a time; the rest are closed.
const REJECTING: usize = 64;

/// A socket to accept HTTP connections on.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A unix socket.
    Unix(UnixListener),
}

/// Accepts connections on `listener` and serves `router` on each, at most `max` at once, until the
/// task is aborted (which closes every connection it serves).
pub async fn accept_loop(listener: Listener, router: Router, max: usize) {
    let permits = Arc::new(Semaphore::new(max));
    let rejects = Arc::new(Semaphore::new(REJECTING));
    let mut connections = JoinSet::new();
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
        };
        while connections.try_join_next().is_some() {}
        let conn = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors, most likely: let connections end before accepting more.
                tracing::warn!("control server: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            connections.spawn(conn.serve(router.clone(), Some(permit), true));
        } else if let Ok(permit) = rejects.clone().try_acquire_owned() {
            connections.spawn(conn.serve(busy(max), Some(permit), false));
        }
    }
}

/// A router that answers every request with 503, for connections past the cap.
fn busy(max: usize) -> Router {
    Router::new().fallback(move || async move {
        super::error::ApiError {
            status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
            kind: "busy",
            message: format!(
                "pilot-host serves {max} control connections at most; close some and try again"
            ),
        }
    })
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Conn {
    async fn serve(self, router: Router, permit: Option<OwnedSemaphorePermit>, keep_alive: bool) {
        match self {
            Conn::Tcp(s) => {
                let _ = s.set_nodelay(true);
                serve_http(s, router, keep_alive).await
            }
            Conn::Unix(s) => serve_http(s, router, keep_alive).await,
        }
        drop(permit);
    }
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
