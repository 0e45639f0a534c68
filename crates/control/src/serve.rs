//! Serving connections: one accept loop per listener, caps on connections, deadlines, and hyper's
//! HTTP/1 on top (the same for TCP, TLS and the unix socket).
//!
//! The unix socket serves only pilot-host's own user and root, as the kernel says the peer is
//! (SO_PEERCRED, on every accept); anyone else is answered 403. On TCP every connection must send
//! its first request within [`FIRST_REQUEST_TIMEOUT`] (the TLS handshake included), and its slot is
//! kept for it only once it shows the token ([`super::slots`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::error::ApiError;
use super::guard::Connection;
use super::peer;
use super::slots::{Slot, Slots};

/// How long a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a TCP client has, from its connect, to send its first request's headers.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Connections past the cap still get an answer (`503`, or `403` for another user), this many at a
/// time; the rest are closed.
const REJECTING: usize = 64;

/// Returns how many unauthenticated TCP connections one address may hold, of `max` in all: an
/// eighth, at least 8 (a browser opens 6) and at most 256.
pub fn per_address(max: usize) -> usize {
    (max / 8).clamp(8, 256).min(max)
}

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

/// Accepts connections on TCP (with TLS when `tls` is given) and serves `router` on each, in `max`
/// slots kept for clients with the token, until the task is aborted.
pub async fn tcp_loop(listener: TcpListener, tls: Option<TlsAcceptor>, router: Router, max: usize) {
    let slots = Slots::new(max, per_address(max));
    let rejects = Arc::new(Semaphore::new(REJECTING));
    let mut connections = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                pause_after(e).await;
                continue;
            }
        };
        let tls = tls.clone();
        if let Some(slot) = slots.admit(peer.ip()) {
            let tcp = Tcp { stream, peer, tls };
            connections.spawn(tcp.serve(router.clone(), Some(slot), true));
        } else if let Ok(permit) = rejects.clone().try_acquire_owned() {
            let tcp = Tcp { stream, peer, tls };
            let busy = busy(max);
            connections.spawn(async move {
                tcp.serve(busy, None, false).await;
                drop(permit);
            });
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

/// A TCP connection just accepted.
struct Tcp {
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
}

impl Tcp {
    /// Serves `router` until the connection ends, misses the first-request deadline, or loses its
    /// slot to another.
    async fn serve(self, router: Router, slot: Option<Slot>, keep_alive: bool) {
        let Tcp { stream, peer, tls } = self;
        let _ = stream.set_nodelay(true);
        let slot = slot.map(Arc::new);
        let first = Arc::new(Notify::new());
        let connection = Connection {
            peer,
            slot: slot.clone(),
        };
        let heard = first.clone();
        let service = router.map_request(move |mut request: hyper::Request<Incoming>| {
            heard.notify_one();
            request.extensions_mut().insert(connection.clone());
            request
        });
        let serve = async {
            match tls {
                None => serve_http(stream, service, keep_alive).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => serve_http(stream, service, keep_alive).await,
                    Err(e) => tracing::debug!("control connection: TLS handshake failed: {e}"),
                },
            }
        };
        let watch = async {
            if tokio::time::timeout(FIRST_REQUEST_TIMEOUT, first.notified())
                .await
                .is_err()
            {
                tracing::debug!("control connection from {peer}: no request within 3 s");
                return;
            }
            match &slot {
                Some(slot) => slot.displaced().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = serve => {}
            () = watch => {}
        }
    }
}

async fn serve_http<T, S>(io: T, service: S, keep_alive: bool)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<
            hyper::Request<Incoming>,
            Response = axum::response::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(keep_alive)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    if let Err(e) = connection.await {
        tracing::debug!("control connection ended: {e}");
    }
}
