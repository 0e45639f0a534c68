//! Process Pilot's own control protocol (`control_server: tcp`): one JSON request per TCP connection,
//! `{"action": "restart", "processes": ["api"]}`, answered `{"status": "success"}` or
//! `{"status": "error", "message": "..."}`, then closed. Actions: `restart` (as Process Pilot),
//! `start`, `stop` and `status` (added).
//!
//! The protocol has no authentication, so it listens on loopback only, and each connection is
//! accepted only from pilot-host's own user or root, as the kernel names the client's socket's owner
//! ([`super::peer`]); anyone else gets the protocol's error answer. `process_pilot_any_user: true`
//! lifts that check, as Process Pilot had none.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::backend::{Backend, Until};
use super::frame::{JsonFrame, Progress};
use super::peer;

/// The largest request read.
const MAX_REQUEST: usize = 64 * 1024;
/// How long a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One request.
#[derive(Debug, Deserialize)]
struct Request {
    action: String,
    #[serde(default)]
    processes: Vec<String>,
}

/// Accepts connections until aborted, at most `max` served at once (the rest are closed); with
/// `any_user` false, only pilot-host's own user and root are served.
pub async fn accept_loop(listener: TcpListener, backend: Backend, max: usize, any_user: bool) {
    let permits = std::sync::Arc::new(Semaphore::new(max));
    let mut connections = JoinSet::new();
    let mut warned = HashSet::new();
    loop {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let refused = if any_user {
            None
        } else {
            refusal(&stream, peer, &mut warned)
        };
        let backend = backend.clone();
        connections.spawn(async move {
            handle(stream, &backend, refused).await;
            drop(permit);
        });
    }
}

/// Returns why the client at `peer` is refused, or `None` when it is pilot-host's user or root.
fn refusal(
    stream: &TcpStream,
    peer: SocketAddr,
    warned: &mut HashSet<Option<u32>>,
) -> Option<String> {
    let uid = stream
        .local_addr()
        .and_then(|local| peer::tcp_peer_uid(local, peer));
    let (key, message) = match uid {
        Ok(uid) if peer::allowed(uid) => return None,
        Ok(uid) => (
            Some(uid),
            peer::refusal(uid, "this Process Pilot control port"),
        ),
        Err(e) => (
            None,
            format!("pilot-host cannot tell which user connected from {peer} ({e}), so it refuses"),
        ),
    };
    if warned.insert(key) {
        tracing::warn!(
            "Process Pilot protocol: refused a connection from {peer}: {message} (set `control_server.process_pilot_any_user: true` to let every local user in, as Process Pilot did)"
        );
    }
    Some(message)
}

async fn handle(mut stream: TcpStream, backend: &Backend, refused: Option<String>) {
    // The request is read first even when refusing: closing with unread bytes would reset the
    // connection and lose the answer.
    let request = tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await;
    let answer = match (refused, request) {
        (Some(message), _) => error(&message),
        (None, Err(_)) => error("no complete request within 10 s"),
        (None, Ok(Err(message))) => error(&message),
        (None, Ok(Ok(request))) => dispatch(request, backend).await,
    };
    let mut text = answer.to_string();
    text.push('\n');
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads until the bytes form one JSON object (or the client closes its side), then parses it once.
async fn read_request(stream: &mut TcpStream) -> Result<Request, String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    let mut frame = JsonFrame::default();
    let end = loop {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break buf.len();
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return Err(format!(
                "the request is larger than {} KiB",
                MAX_REQUEST / 1024
            ));
        }
        match frame.scan(&buf) {
            Progress::Complete(end) => break end,
            Progress::NotAContainer => return Err(bad_request("it is not a JSON object")),
            Progress::More => {}
        }
    };
    let value: Value =
        serde_json::from_slice(&buf[..end]).map_err(|e| format!("the request is not JSON: {e}"))?;
    serde_json::from_value(value).map_err(|e| bad_request(&e.to_string()))
}

fn bad_request(why: &str) -> String {
    format!("bad request ({why}); send e.g. {{\"action\": \"restart\", \"processes\": [\"api\"]}}")
}

fn error(message: &str) -> Value {
    json!({ "status": "error", "message": message })
}

async fn dispatch(request: Request, backend: &Backend) -> Value {
    let names = &request.processes;
    if request.action != "status" && names.is_empty() {
        return error(&format!(
            "`{}` needs `processes`, e.g. [\"api\"]",
            request.action
        ));
    }
    let known = backend.processes().await;
    if request.action != "restart" {
        // Restart checks every name itself; the others act one by one, so check first.
        if let Some(unknown) = names.iter().find(|n| !known.iter().any(|p| &&p.name == n)) {
            let list: Vec<String> = known.iter().map(|p| format!("`{}`", p.name)).collect();
            return error(&format!(
                "no process is called `{unknown}` (known: {})",
                list.join(", ")
            ));
        }
    }
    let result = match request.action.as_str() {
        "restart" => backend.restart(names, Until::Spawned).await,
        "start" => {
            let mut result = Ok(());
            for name in names {
                result = backend.start(name, Until::Spawned).await;
                if result.is_err() {
                    break;
                }
            }
            result
        }
        "stop" => {
            let mut result = Ok(());
            for name in names {
                result = backend.stop(name).await;
                if result.is_err() {
                    break;
                }
            }
            result
        }
        "status" => return json!({ "status": "success", "processes": backend.processes().await }),
        other => {
            return error(&format!(
                "unknown action `{other}`; known: `restart`, `start`, `stop`, `status`"
            ))
        }
    };
    match result {
        Ok(()) => json!({ "status": "success" }),
        Err(e) => error(&e.to_string()),
    }
}
