//! Server-sent event streams: the supervisor's events, and a process's output as it is printed.
//!
//! Each stream holds one receiver of a bounded broadcast: an idle client costs its connection and
//! that receiver, and a client too slow to keep up is sent a `missed` message instead of slowing
//! anyone down.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt as _};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::backend::Backend;
use super::error::ApiError;
use pilot_core::supervisor::{Missed, Stream as Output, Subscription};

/// How often an idle stream sends a comment, so proxies and clients see it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn sse<S>(events: S) -> Response
where
    S: Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
{
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// The query of the events route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    stats: Option<bool>,
}

/// `GET /v1/events`: every event from now on, as JSON in `data:`, with its sequence number as `id:`;
/// with `?stats=true` also a sample of every process each stats interval (`"type": "stats"`).
pub async fn events(
    State(b): State<Backend>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!("bad query: {}; use `?stats=true`", e.body_text()))
    })?;
    let sub = b.subscribe();
    let events = stream::unfold(sub, |mut sub: Subscription| async move {
        let event = match sub.recv().await {
            Ok(record) => SseEvent::default()
                .id(record.seq.to_string())
                .json_data(&*record)
                .unwrap_or_default(),
            Err(Missed::Lagged(n)) => SseEvent::default()
                .data(serde_json::json!({ "type": "missed", "count": n }).to_string()),
            Err(Missed::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), sub))
    });
    if !q.stats.unwrap_or(false) {
        return Ok(sse(events));
    }
    let samples = stream::unfold(b.stats_feed(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(json) => {
                    return Some((Ok::<_, Infallible>(SseEvent::default().data(&*json)), rx))
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(sse(stream::select(events, samples)))
}

/// The query of the logs route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    tail: Option<usize>,
    follow: Option<bool>,
}

/// `GET /v1/processes/{name}/logs?tail=N&follow=true`: the last N lines as JSON, or with `follow`
/// those lines and then every new one as server-sent events.
pub async fn logs(
    State(b): State<Backend>,
    Path(name): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "bad query: {}; use `?tail=N` (a count) and `&follow=true`",
            e.body_text()
        ))
    })?;
    if !q.follow.unwrap_or(false) {
        return Ok(Json(super::api::logs_reply(&b, &name, q.tail).await?).into_response());
    }
    let (kept, rx) = b.follow_logs(&name, q.tail).await?;
    let kept = stream::iter(kept)
        .map(|line| Ok::<_, Infallible>(SseEvent::default().json_data(&line).unwrap_or_default()));
    let live = stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(line) => {
                let stream = match line.stream {
                    Output::Stdout => "stdout",
                    Output::Stderr => "stderr",
                };
                SseEvent::default()
                    .json_data(serde_json::json!({ "stream": stream, "text": line.text }))
                    .unwrap_or_default()
            }
            Err(RecvError::Lagged(n)) => SseEvent::default()
                .event("missed")
                .data(serde_json::json!({ "count": n }).to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), rx))
    });
    Ok(sse(kept.chain(live)))
}
