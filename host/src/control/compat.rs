//! Process Pilot's own control protocol (`control_server: tcp`): one JSON request per TCP connection,
//! `{"action": "restart", "processes": ["api"]}`, answered `{"status": "success"}` or
//! `{"status": "error", "message": "..."}`, then closed. Actions: `restart` (as Process Pilot),
//! `start`, `stop` and `status` (added). Unauthenticated like the original, so loopback only.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::backend::{Backend, Until};

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

/// Accepts connections until aborted, at most `max` served at once (the rest are closed).
pub async fn accept_loop(listener: TcpListener, backend: Backend, max: usize) {
    let permits = std::sync::Arc::new(Semaphore::new(max));
    let mut connections = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let backend = backend.clone();
        connections.spawn(async move {
            handle(stream, &backend).await;
            drop(permit);
        });
    }
}

async fn handle(mut stream: TcpStream, backend: &Backend) {
    let answer = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Err(_) => error("no complete request within 10 s"),
        Ok(Err(message)) => error(&message),
        Ok(Ok(request)) => dispatch(request, backend).await,
    };
    let mut text = answer.to_string();
    text.push('\n');
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads until the bytes form one JSON value (or the client closes its side).
async fn read_request(stream: &mut TcpStream) -> Result<Request, String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return Err(format!(
                "the request is larger than {} KiB",
                MAX_REQUEST / 1024
            ));
        }
        match serde_json::from_slice::<Value>(&buf) {
            Ok(value) => {
                return serde_json::from_value(value).map_err(|e| {
                    format!("bad request ({e}); send e.g. {{\"action\": \"restart\", \"processes\": [\"api\"]}}")
                })
            }
            Err(e) if e.is_eof() && n > 0 => continue,
            Err(e) => return Err(format!("the request is not JSON: {e}")),
        }
    }
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
