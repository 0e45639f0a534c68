//! `/plugins/<name>/...`: requests to control plugins, behind the API's token and limits. The plugin
//! sees the path after its mount point, the query, the method, the body and the headers, except
//! `Authorization` (the API's token is never shown to a plugin). Its answer is served as an opaque,
//! script-isolated document (`Content-Security-Policy: sandbox`, never framed), so a plugin's page
//! cannot act as the dashboard's origin.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;

use super::api::MAX_BODY;
use super::backend::Backend;
use super::error::ApiError;
use pilot_plugins::control::{Served, MAX_REQUESTS};

/// Headers of a plugin's answer that the control plane sets itself.
const HOP_BY_HOP: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
    header::UPGRADE,
    header::TE,
];

/// `/plugins/{name}`: the plugin's root.
pub(super) async fn root(
    State(b): State<Backend>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    forward(b, name, String::new(), request).await
}

/// `/plugins/{name}/{*rest}`.
pub(super) async fn nested(
    State(b): State<Backend>,
    Path((name, rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    forward(b, name, rest, request).await
}

async fn forward(b: Backend, name: String, rest: String, request: Request) -> Response {
    let Some(plugin) = b.control_plugins().get(&name).cloned() else {
        let known: Vec<String> = b
            .control_plugins()
            .names()
            .iter()
            .map(|n| format!("`{n}`"))
            .collect();
        return ApiError::not_found(format!(
            "no control plugin is called `{}` (running: {}); name it in the manifest's `control_server` or `control_plugins`",
            pilot_core::manifest::escape_controls(&name),
            if known.is_empty() { "none".into() } else { known.join(", ") }
        ))
        .into_response();
    };
    let (mut parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return ApiError::too_large(MAX_BODY).into_response()
        }
        Err(e) => {
            return ApiError::bad_request(format!("cannot read the request body: {e}"))
                .into_response()
        }
    };
    let path = match parts.uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    parts.uri = match path.parse() {
        Ok(uri) => uri,
        Err(_) => return ApiError::bad_request("the path is not a valid URI").into_response(),
    };
    parts.headers.remove(header::AUTHORIZATION);
    if !parts.headers.contains_key(header::HOST) {
        parts
            .headers
            .insert(header::HOST, HeaderValue::from_static("localhost"));
    }
    let label = plugin.label.clone();
    match plugin.serve(http::Request::from_parts(parts, body)).await {
        Served::Answer(answer) => answer_of(answer),
        Served::Quarantined => unavailable(
            "quarantined",
            format!("{label} is quarantined after failing 3 calls in a row; fix it and restart pilot-host"),
        ),
        Served::Busy => unavailable(
            "busy",
            format!("{label} serves {MAX_REQUESTS} requests already; try again"),
        ),
        Served::Timeout(after) => unavailable(
            "timeout",
            format!("{label} did not answer within {} ms; stopped", after.as_millis()),
        ),
        Served::TooLarge => ApiError {
            status: StatusCode::BAD_GATEWAY,
            kind: "answer_too_large",
            message: format!(
                "{label} answered more than {} MiB; the answer was dropped",
                pilot_plugins::control::MAX_RESPONSE_BYTES >> 20
            ),
        }
        .into_response(),
        Served::Failed(why) => ApiError {
            status: StatusCode::BAD_GATEWAY,
            kind: "plugin_failed",
            message: format!("{label} failed: {}", pilot_core::manifest::escape_controls(&why)),
        }
        .into_response(),
    }
}

fn unavailable(kind: &'static str, message: String) -> Response {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind,
        message,
    }
    .into_response()
}

/// The plugin's answer, with the control plane's own framing and isolation headers.
fn answer_of(answer: http::Response<Bytes>) -> Response {
    let (mut parts, body) = answer.into_parts();
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    parts.headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox allow-scripts allow-forms; frame-ancestors 'none'"),
    );
    parts.headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    parts
        .headers
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Response::from_parts(parts, Body::from(body))
}
