//! The HTTP API's routes and handlers, the same on the unix socket and on TCP (where a bearer token
//! is required).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::backend::{Backend, Until};
use super::error::ApiError;
use super::model::{ActionReply, LogsReply, RestartRequest};
use super::{dashboard, metrics, stream};

/// The largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// Returns the API; with `token`, every route but the dashboard's page needs `Authorization: Bearer`.
pub fn router(backend: Backend, token: Option<Arc<str>>) -> Router {
    let mut api = Router::new()
        .route("/v1/processes", get(list))
        .route("/v1/processes/{name}", get(one))
        .route("/v1/processes/{name}/start", post(start))
        .route("/v1/processes/{name}/stop", post(stop))
        .route("/v1/processes/{name}/restart", post(restart_one))
        .route("/v1/processes/{name}/logs", get(stream::logs))
        .route("/v1/restart", post(restart_many))
        .route("/v1/events", get(stream::events))
        .route("/v1/manifest", get(manifest))
        .route("/v1/plugins", get(plugins))
        .route("/v1/reload", post(reload))
        .route("/v1/shutdown", post(shutdown))
        .route("/metrics", get(metrics::metrics))
        .route("/plugins/{name}", any(super::plugins::root))
        .route("/plugins/{name}/", any(super::plugins::root))
        .route("/plugins/{name}/{*rest}", any(super::plugins::nested));
    if let Some(token) = token {
        api = api.route_layer(middleware::from_fn_with_state(token, require_token));
    }
    api.merge(dashboard::router())
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(backend)
}

async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| super::guard::bearer(v).unwrap_or(""));
    match given {
        Some(t) if same(t.trim().as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::unauthorized("the bearer token is wrong; use the one in the token file pilot-host printed at start").into_response(),
        None => ApiError::unauthorized("this request needs `Authorization: Bearer TOKEN`; the token is in the file pilot-host printed at start (or `token_file`, or PILOT_HOST_TOKEN)").into_response(),
    }
}

/// Compares in time independent of where the first difference is.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn unknown_route(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no such route: {} {}; see GET /v1/processes, /v1/events, /v1/manifest, /metrics",
        request.method(),
        request.uri().path()
    ))
}

async fn wrong_method(request: Request) -> Response {
    let mut e = ApiError::not_found(format!(
        "{} is not allowed on {}",
        request.method(),
        request.uri().path()
    ));
    e.status = StatusCode::METHOD_NOT_ALLOWED;
    e.kind = "method_not_allowed";
    e.into_response()
}

/// The `?wait=` of start and restart.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    wait: Option<String>,
}

fn until(query: Result<Query<WaitQuery>, QueryRejection>) -> Result<Until, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    match q.wait.as_deref() {
        None | Some("spawned") => Ok(Until::Spawned),
        Some("ready") => Ok(Until::Ready),
        Some(other) => Err(ApiError::bad_request(format!(
            "`wait={other}` is not known; use `wait=ready` or `wait=spawned` (the default)"
        ))),
    }
}

async fn reply(backend: &Backend, names: &[String]) -> Json<ActionReply> {
    let all = backend.processes().await;
    Json(ActionReply {
        processes: all
            .into_iter()
            .filter(|p| names.contains(&p.name))
            .collect(),
    })
}

async fn list(State(b): State<Backend>) -> Response {
    Json(b.processes().await).into_response()
}

async fn one(State(b): State<Backend>, Path(name): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(b.process(&name).await?).into_response())
}

async fn start(
    State(b): State<Backend>,
    Path(name): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<ActionReply>, ApiError> {
    let until = until(query)?;
    b.start(&name, until).await?;
    Ok(reply(&b, &[name]).await)
}

async fn stop(
    State(b): State<Backend>,
    Path(name): Path<String>,
) -> Result<Json<ActionReply>, ApiError> {
    b.stop(&name).await?;
    Ok(reply(&b, &[name]).await)
}

async fn restart_one(
    State(b): State<Backend>,
    Path(name): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<ActionReply>, ApiError> {
    let until = until(query)?;
    let names = [name];
    b.restart(&names, until).await?;
    Ok(reply(&b, &names).await)
}

async fn restart_many(
    State(b): State<Backend>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ActionReply>, ApiError> {
    let until = until(query)?;
    let request: RestartRequest = json_body(body)?;
    if request.processes.is_empty() {
        return Err(ApiError::bad_request(
            "`processes` is empty; name the processes to restart, e.g. {\"processes\": [\"api\"]}",
        ));
    }
    b.restart(&request.processes, until).await?;
    Ok(reply(&b, &request.processes).await)
}

/// Reads a JSON body, with errors that say what is wrong.
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(MAX_BODY)
        } else {
            ApiError::bad_request(format!("cannot read the request body: {}", e.body_text()))
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not the JSON expected ({e}); send e.g. {{\"processes\": [\"api\"]}}"
        ))
    })
}

async fn manifest(State(b): State<Backend>) -> Result<Response, ApiError> {
    Ok(Json(b.manifest().await?.raw.clone()).into_response())
}

async fn plugins(State(b): State<Backend>) -> Response {
    Json(b.plugins()).into_response()
}

async fn reload(State(b): State<Backend>) -> Result<Response, ApiError> {
    Ok(Json(b.reload().await?).into_response())
}

async fn shutdown(State(b): State<Backend>) -> Response {
    b.shutdown();
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "status": "shutting down" })),
    )
        .into_response()
}

/// Reads `LogsReply` for the logs route.
pub(super) async fn logs_reply(
    b: &Backend,
    name: &str,
    tail: Option<usize>,
) -> Result<LogsReply, ApiError> {
    Ok(LogsReply {
        process: name.to_string(),
        lines: b.logs(name, tail).await?,
    })
}
