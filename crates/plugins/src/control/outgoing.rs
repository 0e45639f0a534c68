//! Outgoing HTTP requests of control plugins (`wasi:http/outgoing-handler`): sent only to the hosts
//! `grants.http` names, each under a deadline, with its answer's body capped. A request to another host
//! fails with `HTTP-request-denied`, is logged and reported once per host, and (under `plugin check`)
//! recorded as an attempt. Under `plugin check` a granted request is not sent either: the check's
//! stand-in records it and answers `200` with an empty body.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt as _;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::watch::{Attempt, Recorder};
use pilot_core::extension::{PluginEvent, PluginEventSink};
use pilot_core::manifest::HttpGrant;

/// The longest an outgoing request may wait to connect, for its first byte, or between two bytes.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// The most bytes of an answer's body a plugin can read.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// What a plugin may send, shared by its Stores.
pub struct OutgoingGrants {
    plugin: String,
    grants: Vec<HttpGrant>,
    events: PluginEventSink,
    recorder: Option<Recorder>,
    reported: Mutex<HashSet<String>>,
}

impl OutgoingGrants {
    /// The grants of `plugin`; denials go to `events` and, for `plugin check`, `recorder`.
    pub fn new(
        plugin: &str,
        grants: Vec<HttpGrant>,
        events: PluginEventSink,
        recorder: Option<Recorder>,
    ) -> Arc<OutgoingGrants> {
        Arc::new(OutgoingGrants {
            plugin: plugin.to_string(),
            grants,
            events,
            recorder,
            reported: Mutex::new(HashSet::new()),
        })
    }

    /// Returns whether a request to `uri` is granted; a refusal is reported once per destination.
    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(authority) = uri.authority() else {
            return false;
        };
        let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let host = authority.host();
        if self.grants.iter().any(|g| g.allows(host, port)) {
            return true;
        }
        let target = format!("{host}:{port}");
        if let Some(recorder) = &self.recorder {
            recorder.record(Attempt {
                kind: "http",
                target: target.clone(),
            });
        }
        let first = self
            .reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target.clone());
        if first {
            let what = format!(
                "an HTTP request to `{}` (not in `plugins.{}.grants.http`)",
                pilot_core::manifest::escape_controls(&target),
                self.plugin
            );
            tracing::warn!("plugin `{}`: denied {what}", self.plugin);
            (self.events)(PluginEvent::Denied {
                plugin: self.plugin.clone(),
                what,
            });
        }
        false
    }
}

/// The WASI HTTP hooks of one Store: its plugin's grants (none for plugins that are not control
/// plugins, which cannot import `wasi:http` anyway).
#[derive(Clone, Default)]
pub struct Outgoing(pub Option<Arc<OutgoingGrants>>);

/// The stand-in's answer to a granted request under `plugin check`: `200`, no body; the request's
/// body is read (and dropped) so that a plugin writing it is never held up.
fn canned(
    request: http::Request<WasiBody>,
) -> (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
) {
    let empty = http_body_util::Empty::new()
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync();
    let mut response = http::Response::new(empty);
    *response.status_mut() = http::StatusCode::OK;
    let drain = async move {
        let body = http_body_util::Limited::new(request.into_body(), MAX_ANSWER_BYTES);
        let _ = tokio::time::timeout(REQUEST_DEADLINE, body.collect()).await;
        Ok(())
    };
    (response, Box::new(drain))
}

type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for Outgoing {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Sent {
        drop(fut);
        let granted = self.0.as_ref().is_some_and(|g| g.allows(request.uri()));
        if !granted {
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let stand_in = self
            .0
            .as_ref()
            .and_then(|g| g.recorder.as_ref()?.stand_in());
        if let Some(stand_in) = stand_in {
            stand_in.request(request.method(), request.uri());
            return Box::new(async move { Ok(canned(request)) });
        }
        let cap = |asked: Option<Duration>| {
            Some(asked.map_or(REQUEST_DEADLINE, |d| d.min(REQUEST_DEADLINE)))
        };
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: cap(options.connect_timeout),
            first_byte_timeout: cap(options.first_byte_timeout),
            between_bytes_timeout: cap(options.between_bytes_timeout),
        };
        Box::new(async move {
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            let response = response.map(|body| {
                http_body_util::Limited::new(body, MAX_ANSWER_BYTES)
                    .map_err(|_| Error::HttpResponseBodySize(Some(MAX_ANSWER_BYTES as u64)))
                    .boxed_unsync()
            });
            let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(io);
            Ok((response, io))
        })
    }
}
