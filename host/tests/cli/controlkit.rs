//! Helpers of the control-plane tests: a `pilot-host run` with its own runtime folder (so its socket
//! is its own), and HTTP requests to it over the socket or TCP through the library's client.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use pilot_host::ctl::{Client, Target};

use crate::harness::{Pilot, Scratch, SOON};

/// A running pilot-host and where its control plane listens.
pub struct Controlled {
    /// The pilot-host.
    pub pilot: Pilot,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its runtime folder (XDG_RUNTIME_DIR).
    pub runtime: PathBuf,
}

/// Returns a runtime folder inside `dir` for XDG_RUNTIME_DIR (made 0700, as systemd makes it).
pub fn runtime_dir(dir: &Scratch) -> PathBuf {
    use std::os::unix::fs::DirBuilderExt as _;
    let path = dir.join("run");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&path)
        .unwrap();
    path
}

impl Controlled {
    /// Starts `pilot-host run MANIFEST EXTRA...` with XDG_RUNTIME_DIR in `dir`, and waits for its
    /// control socket.
    pub fn start(dir: &Scratch, manifest: &Path, extra: &[&str]) -> Controlled {
        Controlled::start_env(dir, manifest, extra, &[])
    }

    /// As [`Controlled::start`], with more environment variables.
    pub fn start_env(
        dir: &Scratch,
        manifest: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Controlled {
        let runtime = runtime_dir(dir);
        let mut args: Vec<&std::ffi::OsStr> = vec!["run".as_ref(), manifest.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let mut all: Vec<(&str, &std::ffi::OsStr)> = vec![("XDG_RUNTIME_DIR", runtime.as_os_str())];
        all.extend(env.iter().map(|(k, v)| (*k, std::ffi::OsStr::new(v))));
        let pilot = Pilot::start_env(&args, &all);
        let line = pilot.wait_log("control socket: ", SOON);
        let socket = PathBuf::from(after(&line, "control socket: ").split(" (").next().unwrap());
        Controlled {
            pilot,
            socket,
            runtime,
        }
    }

    /// Returns a client of the socket.
    pub fn unix(&self) -> Client {
        Client::new(Target::Unix(self.socket.clone()))
    }

    /// Returns the HTTP address printed at start (`dashboard: http://ADDR/`).
    pub fn http_addr(&self) -> String {
        let line = self.pilot.wait_log("dashboard: http://", SOON);
        after(&line, "dashboard: http://")
            .split('/')
            .next()
            .unwrap()
            .to_string()
    }

    /// Returns the token file printed at start.
    pub fn token_file(&self) -> PathBuf {
        let line = self.pilot.wait_log("bearer token in ", SOON);
        PathBuf::from(after(&line, "bearer token in ").trim_end_matches(')'))
    }

    /// Returns a TCP client with `token`.
    pub fn tcp(&self, token: &str) -> Client {
        Client::new(Target::Tcp {
            authority: self.http_addr(),
            token: token.to_string(),
            tls: None,
        })
    }

    /// Returns the pid of `name` from `GET /v1/processes`.
    pub fn pid(&self, name: &str) -> Option<u32> {
        let (_, body) = call(&self.unix(), "GET", "/v1/processes", None);
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["pid"].as_u64())
            .map(|p| p as u32)
    }

    /// Waits until `name` has a pid and returns it.
    pub fn wait_pid(&self, name: &str) -> u32 {
        let mut pid = None;
        crate::harness::wait_until(&format!("`{name}` runs"), SOON, || {
            pid = self.pid(name);
            pid.is_some()
        });
        pid.unwrap()
    }
}

/// Returns the text of `line` after `marker`.
pub fn after<'a>(line: &'a str, marker: &str) -> &'a str {
    let at = line
        .find(marker)
        .unwrap_or_else(|| panic!("no `{marker}` in `{line}`"));
    &line[at + marker.len()..]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sends one request and returns the status code and the body; panics past a deadline.
pub fn call(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    let method: hyper::Method = method.parse().unwrap();
    runtime().block_on(async {
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            client.call(method.clone(), path, body.as_ref()),
        )
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within 30 s"))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (
            answer.0.as_u16(),
            String::from_utf8_lossy(&answer.1).into_owned(),
        )
    })
}

/// Sends one request and returns the JSON body, asserting the status.
#[track_caller]
pub fn json(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    want: u16,
) -> serde_json::Value {
    let (status, text) = call(client, method, path, body);
    assert_eq!(
        status, want,
        "{method} {path}: want {want}, got {status}: {text}"
    );
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
}

/// Opens the server-sent event stream `path`, runs `trigger` once it is open, then reads `data:`
/// messages until `done` says so or `timeout` passes; returns the messages read.
pub fn sse_until(
    client: &Client,
    path: &str,
    timeout: Duration,
    trigger: impl FnOnce() + Send + 'static,
    mut done: impl FnMut(&str) -> bool,
) -> Vec<String> {
    runtime().block_on(async {
        let response = client.send(hyper::Method::GET, path, None).await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        let triggered = tokio::task::spawn_blocking(trigger);
        let mut seen = Vec::new();
        let read = pilot_host::ctl::read_events(response.into_body(), |_, data| {
            seen.push(data.to_string());
            !done(data)
        });
        let _ = tokio::time::timeout(timeout, read).await;
        triggered.await.unwrap();
        seen
    })
}
