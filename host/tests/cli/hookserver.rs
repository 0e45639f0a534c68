//! A webhook receiver for the tests: an HTTP/1.1 server on 127.0.0.1 (a port the OS picks) that
//! records each request's method, path and body and answers 200; it stops when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The body.
    pub body: String,
}

impl Received {
    /// Returns the body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

type Log = Arc<(Mutex<Vec<Received>>, Condvar)>;

/// The running server.
pub struct Hook {
    /// Where it listens, `127.0.0.1:PORT`.
    pub addr: String,
    log: Log,
    stop: Arc<AtomicBool>,
}

impl Hook {
    /// Starts the server.
    pub fn start() -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log: Log = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let l = l.clone();
                    std::thread::spawn(move || serve(conn, &l));
                }
            }
        });
        Hook { addr, log, stop }
    }

    /// Returns the URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Returns what it received so far.
    pub fn received(&self) -> Vec<Received> {
        self.log.0.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received, at most `timeout`; returns it.
    #[track_caller]
    pub fn wait(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.log;
        let mut got = lock.lock().unwrap();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("waited {timeout:?} for {what}; received: {:#?}", *got);
            }
            got = cvar.wait_timeout(got, left).unwrap().0;
        }
        got.clone()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(conn: TcpStream, log: &Log) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        );
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (lock, cvar) = &**log;
        lock.lock().unwrap().push(Received {
            method,
            path,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        cvar.notify_all();
        let mut w = &conn;
        if w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}
