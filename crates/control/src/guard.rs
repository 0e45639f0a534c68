//! The guard in front of the HTTP API on TCP, before any route: the `Host` check ([`super::hosts`],
//! 421), the back-off of addresses that keep sending wrong tokens ([`super::throttle`], 429), and
//! the marking of a connection whose request carries the right token, which then keeps its slot
//! ([`super::slots`]). The routes check the token themselves as before; this layer only reads it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::error::ApiError;
use super::hosts::Hosts;
use super::slots::Slot;
use super::throttle::Throttle;

/// What the listener knows of the connection a request came on (in the request's extensions).
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client's address.
    pub peer: SocketAddr,
    /// Its slot, if it holds one.
    pub slot: Option<Arc<Slot>>,
}

/// The guard's state: the token, the hosts answered for, and the failures per address.
#[derive(Debug)]
pub struct Guard {
    token: Arc<str>,
    hosts: Hosts,
    throttle: Mutex<Throttle>,
}

impl Guard {
    /// A guard of a listener with `token` that answers for `hosts`.
    pub fn new(token: Arc<str>, hosts: Hosts) -> Arc<Guard> {
        Arc::new(Guard {
            token,
            hosts,
            throttle: Mutex::new(Throttle::default()),
        })
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Returns `router` behind `guard`.
pub fn protect(router: Router, guard: Arc<Guard>) -> Router {
    router.layer(middleware::from_fn_with_state(guard, check))
}

/// Returns the token of an `Authorization` value of the `Bearer` scheme, whose name is matched
/// without regard to case (RFC 7235); `None` for another scheme.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

async fn check(State(g): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if let Some(refused) = misdirected(&g.hosts, &request) {
        return refused.into_response();
    }
    let conn = request.extensions().get::<Connection>().cloned();
    let ip = conn.as_ref().map(|c| c.peer.ip());
    if let Some(wait) = ip.and_then(|ip| g.throttle().blocked(ip, Instant::now())) {
        return too_many(wait);
    }
    // A request without a bearer token guesses nothing: it is neither right nor wrong.
    let verdict = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .filter(|given| !given.is_empty())
        .map(|given| super::api::same(given.as_bytes(), g.token.as_bytes()));
    if verdict == Some(true) {
        if let Some(slot) = conn.as_ref().and_then(|c| c.slot.as_ref()) {
            slot.authenticate();
        }
        if let Some(ip) = ip {
            g.throttle().succeeded(ip);
        }
    }
    let response = next.run(request).await;
    if let (Some(false), Some(ip)) = (verdict, ip) {
        if response.status() == StatusCode::UNAUTHORIZED {
            if let Some(wait) = g.throttle().failed(ip, Instant::now()) {
                tracing::warn!(
                    "control API: {ip} keeps sending wrong tokens; its requests are refused for {} s",
                    wait.as_secs()
                );
            }
        }
    }
    response
}

/// Returns the 421 answer when the request names a host this listener does not answer for.
fn misdirected(hosts: &Hosts, request: &Request) -> Option<ApiError> {
    let header = request
        .headers()
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let named = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .into_iter()
        .chain(header.clone());
    let refused = match header {
        None => Some("the request has no `Host` header".to_string()),
        Some(_) => named
            .filter(|h| !hosts.allows(h))
            .map(|h| format!("this pilot-host does not answer for the host `{h}`"))
            .next(),
    }?;
    Some(ApiError {
        status: StatusCode::MISDIRECTED_REQUEST,
        kind: "misdirected",
        message: format!("{refused}; use its address (e.g. `127.0.0.1`), or add the name to `control_server.allowed_hosts`"),
    })
}

fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        kind: "too_many_failures",
        message: format!(
            "too many wrong tokens came from this address; try again in {secs} s with the right one"
        ),
    }
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc "), Some("abc"));
        assert_eq!(bearer("BEARER\tabc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
