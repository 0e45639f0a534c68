//! `http-ready`: a pilot-host plugin whose ready strategy `http` says a process is ready once an HTTP
//! GET to `ready_params.url` answers 2xx.
//!
//! ```yaml
//! processes:
//!   - name: api
//!     path: ./api
//!     ready_strategy: http
//!     ready_params: { url: "http://127.0.0.1:8080/health", timeout_ms: 200 }
//! plugins:
//!   http-ready: { allow_tcp: ["127.0.0.1:8080"] }
//! ```
//!
//! Plain HTTP/1.0 over a TCP socket (no TLS, no redirects); the host must grant the destination with
//! `allow_tcp`. Hosts must be IP addresses or `localhost`: name lookups are not granted to plugins.
//! Each check connects once with a short timeout (`timeout_ms`, default 250) and answers at once; the
//! host repeats it until ready or `ready_timeout_sec` passes.

mod url;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use pilot_plugin_sdk::{
    export_plugin, Description, Params, Plugin, PluginError, ProcessInfo, ReadyStatus,
};

use crate::url::HttpUrl;

/// The plugin; it keeps no state.
#[derive(Default)]
struct HttpReady;

impl Plugin for HttpReady {
    fn describe(&self) -> Description {
        Description::new("http-ready", env!("CARGO_PKG_VERSION")).ready_strategy("http")
    }

    fn ready_check(
        &self,
        _strategy: &str,
        _process: &ProcessInfo,
        params: &Params,
    ) -> Result<ReadyStatus, PluginError> {
        let url = HttpUrl::parse(params.str("url")?)?;
        let timeout_ms = params.u64_or("timeout_ms", 250)?;
        if timeout_ms == 0 {
            return Err(PluginError::invalid_config(
                "`ready_params.timeout_ms` must be at least 1",
            ));
        }
        probe(&url, Duration::from_millis(timeout_ms))
    }
}

/// Sends one GET to `url` and reads its status line, each step bounded by `timeout`.
fn probe(url: &HttpUrl, timeout: Duration) -> Result<ReadyStatus, PluginError> {
    let addr = SocketAddr::new(url.ip, url.port);
    // On wasip2 a refused connection can show up as a stream that is not connected, not as an error:
    // `peer_addr` tells them apart.
    let mut stream =
        match TcpStream::connect_timeout(&addr, timeout).and_then(|s| s.peer_addr().map(|_| s)) {
            Ok(stream) => stream,
            Err(e) => return connect_failed(url, addr, &e),
        };
    let line = match exchange(&mut stream, url, timeout) {
        Ok(line) => line,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            return Ok(ReadyStatus::not_yet(format!(
                "GET {url}: no answer within {} ms",
                timeout.as_millis()
            )))
        }
        Err(e) => return Ok(ReadyStatus::not_yet(format!("GET {url}: {e}"))),
    };
    match status_code(&line) {
        Some(code) if (200..300).contains(&code) => Ok(ReadyStatus::Ready),
        Some(code) => Ok(ReadyStatus::not_yet(format!("GET {url} answered {code}"))),
        None => Ok(ReadyStatus::not_yet(format!(
            "GET {url} answered something that is not HTTP: {:?}",
            line.chars().take(80).collect::<String>()
        ))),
    }
}

/// Turns a failed connect into an answer: refused or timed out is "not yet", denied is an error.
fn connect_failed(
    url: &HttpUrl,
    addr: SocketAddr,
    e: &std::io::Error,
) -> Result<ReadyStatus, PluginError> {
    match e.kind() {
        ErrorKind::PermissionDenied => Err(PluginError::unavailable(format!(
            "connecting to {addr} is not allowed: grant it with \
             `plugins.http-ready.allow_tcp: [\"{addr}\"]`"
        ))),
        ErrorKind::ConnectionRefused | ErrorKind::NotConnected => Ok(ReadyStatus::not_yet(
            format!("GET {url}: connection refused (nothing listens on {addr} yet)"),
        )),
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Ok(ReadyStatus::not_yet(format!(
            "GET {url}: no connection within the timeout"
        ))),
        _ => Ok(ReadyStatus::not_yet(format!(
            "GET {url}: cannot connect: {e}"
        ))),
    }
}

/// Sends the request and returns the response's status line.
fn exchange(stream: &mut TcpStream, url: &HttpUrl, timeout: Duration) -> std::io::Result<String> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: pilot-host-http-ready\r\nConnection: close\r\n\r\n",
        url.path, url.authority
    );
    stream.write_all(request.as_bytes())?;
    read_status_line(stream)
}

/// Reads up to the end of the first line (at most 1 KiB).
fn read_status_line(stream: &mut TcpStream) -> Result<String, std::io::Error> {
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while buf.len() < 1024 && !buf.contains(&b'\n') {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(String::from_utf8_lossy(line).trim_end().to_string())
}

/// Returns the status code of an HTTP status line such as `HTTP/1.1 200 OK`.
fn status_code(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

export_plugin!(HttpReady);

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::TcpListener;

    /// Serves one connection with `answer` (nothing when empty) on a fresh port; returns its URL.
    fn serve_once(answer: &'static str) -> HttpUrl {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 512];
            let _ = stream.read(&mut request);
            if answer.is_empty() {
                std::thread::sleep(Duration::from_millis(500));
            } else {
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        HttpUrl::parse(&format!("http://127.0.0.1:{port}/health")).unwrap()
    }

    fn check(url: &HttpUrl) -> ReadyStatus {
        probe(url, Duration::from_millis(200)).unwrap()
    }

    #[test]
    fn answers_by_status_code() {
        assert!(check(&serve_once("HTTP/1.1 204 No Content\r\n\r\n")).is_ready());
        let reason = match check(&serve_once("HTTP/1.0 503 Busy\r\n\r\n")) {
            ReadyStatus::NotYet(r) => r,
            ReadyStatus::Ready => panic!("503 is not ready"),
        };
        assert!(reason.ends_with("/health answered 503"), "{reason}");
    }

    #[test]
    fn refused_and_silent_are_not_yet() {
        let refused = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            drop(listener);
            HttpUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap()
        };
        match check(&refused) {
            ReadyStatus::NotYet(r) => assert!(r.contains("connection refused"), "{r}"),
            ReadyStatus::Ready => panic!("nothing listens"),
        }
        match check(&serve_once("")) {
            ReadyStatus::NotYet(r) => assert!(r.contains("no answer within 200 ms"), "{r}"),
            ReadyStatus::Ready => panic!("nothing answered"),
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code("HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(status_code("HTTP/1.0 503"), Some(503));
        assert_eq!(status_code("SSH-2.0-OpenSSH"), None);
        assert_eq!(status_code(""), None);
    }
}
