//! The control plane under bad and heavy use: malformed JSON, unknown routes, oversized bodies, slow
//! headers, the connection cap, and a thousand idle event-stream clients.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::controlkit::{call, json, Controlled};
use crate::harness::*;

fn one(dir: &Scratch, control: &str) -> std::path::PathBuf {
    manifest(
        dir,
        &format!("{control}\nprocesses:\n  - {{ name: a, path: CHILD, args: [--name, a] }}\n"),
    )
}

#[test]
fn bad_requests_get_clear_json_errors_and_change_nothing() {
    let dir = Scratch::new("ctl-bad");
    let c = Controlled::start(&dir, &one(&dir, ""), &[]);
    let api = c.unix();
    let pid = c.wait_pid("a");
    let send = |body: &str| {
        let (status, text) = runtime_call(&c, body);
        (
            status,
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    };
    let (status, e) = send("{\"processes\": [\"a\"");
    assert_eq!(status, 400);
    assert_eq!(e["kind"], "bad_request");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("not the JSON expected"),
        "{e}"
    );
    let (status, e) = send("{\"procs\": [\"a\"]}");
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("procs"), "{e}");
    let (status, e) = send("{\"processes\": []}");
    assert_eq!(status, 400, "{e}");
    let big = format!("{{\"processes\": [\"{}\"]}}", "a".repeat(100 * 1024));
    let (status, e) = send(&big);
    assert_eq!(status, 413, "{e}");
    assert_eq!(e["kind"], "too_large");

    let e = json(&api, "GET", "/v2/everything", None, 404);
    assert_eq!(e["kind"], "not_found");
    assert!(
        e["error"].as_str().unwrap().contains("GET /v2/everything"),
        "{e}"
    );
    let e = json(&api, "DELETE", "/v1/processes", None, 405);
    assert_eq!(e["kind"], "method_not_allowed");
    let e = json(
        &api,
        "POST",
        "/v1/processes/a/start?wait=forever",
        None,
        400,
    );
    assert!(e["error"].as_str().unwrap().contains("wait=ready"), "{e}");
    let e = json(&api, "GET", "/v1/processes/a/logs?tail=many", None, 400);
    assert_eq!(e["kind"], "bad_request");
    assert_eq!(c.pid("a"), Some(pid), "nothing was restarted");
}

fn runtime_call(c: &Controlled, body: &str) -> (u16, String) {
    // A raw body (the library client sends only valid JSON values).
    let mut s = UnixStream::connect(&c.socket).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    write!(
        s,
        "POST /v1/restart HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // The server may answer 413 before reading the whole body, and close.
    let _ = s.write_all(body.as_bytes());
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let dir = Scratch::new("ctl-slow");
    let c = Controlled::start(&dir, &one(&dir, ""), &[]);
    let mut slow = UnixStream::connect(&c.socket).unwrap();
    slow.write_all(b"GET /v1/processes HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest);
    assert!(
        read.is_ok(),
        "the server closes the connection instead of waiting forever: {read:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "closed by the header deadline, not by the test's read timeout"
    );
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"));
    // Others are served meanwhile.
    json(&c.unix(), "GET", "/v1/processes", None, 200);
}

#[test]
fn connections_past_the_cap_are_answered_busy() {
    let dir = Scratch::new("ctl-cap");
    let c = Controlled::start(
        &dir,
        &one(&dir, "control_server: { max_connections: 3 }"),
        &[],
    );
    let idle: Vec<UnixStream> = (0..3)
        .map(|_| {
            let mut s = UnixStream::connect(&c.socket).unwrap();
            s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut head = [0u8; 12];
            s.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"HTTP/1.1 200");
            s
        })
        .collect();
    let (status, body) = call(&c.unix(), "GET", "/v1/processes", None);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("\"kind\":\"busy\"") && body.contains("3 control connections at most"),
        "{body}"
    );
    drop(idle);
    wait_until("a slot is free again", SOON, || {
        call(&c.unix(), "GET", "/v1/processes", None).0 == 200
    });
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn raise_nofile() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(65_536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

#[test]
fn a_thousand_idle_event_clients_cost_bounded_memory_and_all_hear_a_restart() {
    const CLIENTS: usize = 1000;
    raise_nofile();
    let dir = Scratch::new("ctl-thousand");
    let c = Controlled::start(&dir, &one(&dir, ""), &[]);
    let old = c.wait_pid("a");
    json(&c.unix(), "GET", "/v1/processes", None, 200);
    let before = rss_kib(c.pilot.pid());
    let mut clients: Vec<UnixStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = UnixStream::connect(&c.socket).unwrap();
            s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    for s in &mut clients {
        s.set_read_timeout(Some(SOON)).unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    let after = rss_kib(c.pilot.pid());
    let per_client = (after.saturating_sub(before)) as f64 / CLIENTS as f64;
    assert!(
        per_client < 64.0,
        "{per_client:.1} KiB per idle client ({before} KiB → {after} KiB)"
    );

    // Supervision goes on, and every client hears about it.
    let restarted = json(&c.unix(), "POST", "/v1/processes/a/restart", None, 200);
    let new = restarted["processes"][0]["pid"].as_u64().unwrap();
    assert_ne!(new, u64::from(old));
    let needle = format!("\"type\":\"spawned\",\"process\":\"a\",\"pid\":{new}");
    for (i, s) in clients.iter_mut().enumerate() {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(&needle) {
            let n = s
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("client {i}: {e}"));
            assert!(n > 0, "client {i}: the stream ended");
            seen.extend_from_slice(&buf[..n]);
        }
    }
}
