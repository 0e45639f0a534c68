//! Attacks from another user of the same machine: the control socket and Process Pilot's protocol
//! serve only pilot-host's user and root whatever the file modes say, the socket is never open to
//! others even for a moment, `ctl` trusts only a folder `run` would use and prints nothing a server
//! sends raw, children do not get the token, and a file in the token's place is never deleted.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::attack::{get, request_as, root, NOBODY};
use crate::controlkit::{json, Controlled};
use crate::harness::*;
use crate::support::{pilot_host, run};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_control_socket_refuses_another_user_even_when_its_modes_let_them_in() {
    if !root("socket-peer") {
        return;
    }
    let dir = Scratch::new("sec-socket-peer");
    let c = Controlled::start(&dir, &crate::control::two(&dir, ""), &[]);
    let pid = c.wait_pid("a");
    // An operator loosens the modes (or serves the socket from a shared folder).
    chmod(&c.runtime, 0o711);
    chmod(c.socket.parent().unwrap(), 0o711);
    chmod(&c.socket, 0o666);
    let target = format!("unix:{}", c.socket.display());
    let answer = crate::attack::Answer::parse(&request_as(
        NOBODY,
        &target,
        &get("/v1/processes", &["Host: localhost"]),
    ));
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(
        answer
            .body
            .contains("user 65534 may not use this control socket"),
        "{}",
        answer.body
    );
    let restart = "POST /v1/processes/a/restart HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let answer = crate::attack::Answer::parse(&request_as(NOBODY, &target, restart));
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(c.pid("a"), Some(pid), "nothing was restarted");
    json(&c.unix(), "GET", "/v1/processes", None, 200);
}

#[test]
fn the_control_socket_is_born_private() {
    // strace holds pilot-host's chmod of the socket for 3 s: the socket's mode meanwhile is the one
    // it was born with.
    let dir = Scratch::new("sec-socket-born");
    let manifest = crate::control::two(&dir, "");
    let runtime = crate::controlkit::runtime_dir(&dir);
    let pilot = Pilot::start_wrapped(
        &[
            "strace",
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=chmod,fchmodat",
            "-e",
            "inject=chmod,fchmodat:delay_enter=3000000",
        ],
        &["run".as_ref(), manifest.as_os_str()],
        &[("XDG_RUNTIME_DIR", runtime.as_os_str())],
    );
    // Killing strace would leave its tracees running: they are killed by their pids instead, should
    // an assertion fail.
    let mut kill_on_drop = KillTreeOnDrop(Some(pilot.pid()));
    let folder = runtime.join("pilot-host");
    let mut socket = None;
    wait_until("the socket is bound", SOON, || {
        socket = std::fs::read_dir(&folder).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "sock"))
        });
        socket.is_some()
    });
    let socket = socket.unwrap();
    let mode = std::fs::symlink_metadata(&socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the socket was born {mode:o}");
    pilot.wait_log("control socket: ", Duration::from_secs(30));
    let c = pilot_host::ctl::Client::new(pilot_host::ctl::Target::Unix(socket));
    json(&c, "POST", "/v1/shutdown", None, 202);
    let mut pilot = pilot;
    pilot.wait_exit(Duration::from_secs(60));
    kill_on_drop.0 = None;
}

/// Serves `answer(request line)` on a unix socket at `path` until dropped.
struct FakeServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    fn start(path: &Path, answer: fn(&str) -> (u16, String)) -> FakeServer {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head);
                let (status, body) = answer(text.lines().next().unwrap_or(""));
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const EVIL: &str = r#"\u001b]0;pwned\u0007\u001b[2J"#;

fn evil_answers(request: &str) -> (u16, String) {
    let process = format!(
        r#"{{"name": "a{EVIL}", "state": "running", "pid": 42, "ready": true, "uptime_sec": 1.0, "restarts": 0, "cpu_percent": 0.0, "rss_bytes": 0, "cpu_seconds_total": 0.0, "dependencies": []}}"#
    );
    if request.starts_with("GET /v1/processes/a/logs") {
        (
            200,
            format!(
                r#"{{"process": "a", "lines": [{{"seq": 1, "stream": "stdout", "text": "line{EVIL}"}}]}}"#
            ),
        )
    } else if request.starts_with("GET /v1/processes") {
        (200, format!("[{process}]"))
    } else if request.contains("/stop") {
        (200, format!(r#"{{"processes": [{process}]}}"#))
    } else {
        (
            409,
            format!(r#"{{"error": "refused{EVIL}", "kind": "failed"}}"#),
        )
    }
}

fn ctl(runtime: &Path, args: &[&str]) -> crate::support::Run {
    run(pilot_host()
        .arg("ctl")
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime))
}

#[test]
fn ctl_refuses_a_socket_folder_that_run_would_refuse() {
    let dir = Scratch::new("sec-ctl-folder");
    let runtime = crate::controlkit::runtime_dir(&dir);
    let folder = runtime.join("pilot-host");
    std::fs::create_dir(&folder).unwrap();
    let _fake = FakeServer::start(&folder.join("stack-0123456789abcdef.sock"), evil_answers);
    chmod(&folder, 0o777);
    let out = ctl(&runtime, &["status"]);
    out.expect_code(2).stderr_has(&format!(
        "control socket folder `{}` can be written by others (mode 777)",
        folder.display()
    ));
    assert!(
        out.stdout.is_empty(),
        "nothing from that server: {}",
        out.stdout
    );
    if root("ctl-folder-owner") {
        chmod(&folder, 0o700);
        std::os::unix::fs::chown(&folder, Some(NOBODY), Some(NOBODY)).unwrap();
        ctl(&runtime, &["status"])
            .expect_code(2)
            .stderr_has("belongs to user 65534, not to you");
        std::os::unix::fs::chown(&folder, Some(0), Some(0)).unwrap();
        ctl(&runtime, &["status"]).expect_code(0);
    }
}

#[test]
fn ctl_prints_no_control_character_a_server_sends() {
    let dir = Scratch::new("sec-ctl-escapes");
    let socket = dir.join("fake.sock");
    let _fake = FakeServer::start(&socket, evil_answers);
    let runtime = crate::controlkit::runtime_dir(&dir);
    let s = socket.to_str().unwrap();
    for (args, code) in [
        (vec!["--socket", s, "status"], 0),
        (vec!["--socket", s, "stop", "a"], 0),
        (vec!["--socket", s, "logs", "a"], 0),
        (vec!["--socket", s, "restart", "a"], 1),
    ] {
        let out = ctl(&runtime, &args);
        out.expect_code(code);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            !all.contains(['\x1b', '\x07']),
            "{args:?} printed a control character: {all:?}"
        );
        assert!(all.contains("\\u{1b}"), "{args:?} shows it escaped: {all}");
    }
}

#[test]
fn process_pilots_protocol_serves_only_pilot_hosts_user_and_root() {
    if !root("process-pilot-peer") {
        return;
    }
    let dir = Scratch::new("sec-pp-peer");
    let manifest = crate::control::two(&dir, "control_server: { process_pilot: \"127.0.0.1:0\" }");
    let c = Controlled::start(&dir, &manifest, &[]);
    let addr = process_pilot_addr(&c);
    let old = c.wait_pid("a");
    let restart = r#"{"action": "restart", "processes": ["a"]}"#;
    let answer: serde_json::Value =
        serde_json::from_str(&request_as(NOBODY, &format!("tcp:{addr}"), restart)).unwrap();
    assert_eq!(answer["status"], "error", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("user 65534 may not use this Process Pilot control port"),
        "{answer}"
    );
    assert_eq!(c.pid("a"), Some(old), "nothing restarted");
    c.pilot
        .wait_log("refused a connection from 127.0.0.1", SOON);
    let answer: serde_json::Value =
        serde_json::from_str(&request_as(0, &format!("tcp:{addr}"), restart)).unwrap();
    assert_eq!(answer["status"], "success", "{answer}");
    assert_ne!(c.pid("a"), Some(old));
    drop(c);

    let dir = Scratch::new("sec-pp-any");
    let manifest = crate::control::two(
        &dir,
        "control_server: { process_pilot: \"127.0.0.1:0\", process_pilot_any_user: true }",
    );
    let c = Controlled::start(&dir, &manifest, &[]);
    let addr = process_pilot_addr(&c);
    c.wait_pid("a");
    let answer: serde_json::Value =
        serde_json::from_str(&request_as(NOBODY, &format!("tcp:{addr}"), restart)).unwrap();
    assert_eq!(answer["status"], "success", "{answer}");
}

fn process_pilot_addr(c: &Controlled) -> String {
    let line = c.pilot.wait_log("Process Pilot control protocol on ", SOON);
    crate::controlkit::after(&line, "protocol on ")
        .split(": ")
        .next()
        .unwrap()
        .to_string()
}

/// Returns the CPU time pilot-host has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[test]
fn a_request_sent_a_byte_at_a_time_is_parsed_once() {
    let dir = Scratch::new("sec-pp-bytes");
    let manifest = crate::control::two(&dir, "control_server: { process_pilot: \"127.0.0.1:0\" }");
    let c = Controlled::start(&dir, &manifest, &[]);
    let addr = process_pilot_addr(&c);
    c.wait_pid("b");
    // 24 KiB of names, a byte every 50 µs or so: each partial parse of the old reader cost as much as
    // the bytes so far (3.4 s of CPU here, against 0.4 s of reads once parsed once).
    let names = vec!["\"a\""; 6_000].join(",");
    let request = format!(r#"{{"action": "status", "processes": [{names}]}}"#);
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(SOON)).unwrap();
    let before = cpu_seconds(c.pilot.pid());
    let started = std::time::Instant::now();
    for byte in request.as_bytes() {
        stream.write_all(&[*byte]).unwrap();
        // Let the server read what came, so that its reads stay small.
        std::thread::sleep(Duration::from_micros(50));
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let spent = cpu_seconds(c.pilot.pid()) - before;
    eprintln!(
        "a {} byte request, a byte at a time over {:?}: {spent:.2} s of pilot-host's CPU",
        request.len(),
        started.elapsed()
    );
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["status"], "success", "{answer}");
    assert!(spent < 1.5, "{spent:.2} s of CPU for one request");
}

#[test]
fn children_get_the_token_only_from_their_own_env() {
    let dir = Scratch::new("sec-child-env");
    let manifest = manifest(
        &dir,
        "processes:\n  - { name: plain, path: CHILD, args: [--print-env, PILOT_HOST_TOKEN] }\n  - { name: owned, path: CHILD, args: [--print-env, PILOT_HOST_TOKEN], env: { PILOT_HOST_TOKEN: its-own } }\n",
    );
    let pilot = Pilot::start_env(
        &["run".as_ref(), manifest.as_os_str()],
        &[("PILOT_HOST_TOKEN", "the-control-token".as_ref())],
    );
    pilot.wait_out("plain | PILOT_HOST_TOKEN=<unset>", SOON);
    pilot.wait_out("owned | PILOT_HOST_TOKEN=its-own", SOON);
    assert!(!pilot.stdout_text().contains("the-control-token"));
}

fn token_run(dir: &Scratch) -> (PathBuf, Pilot) {
    let manifest = crate::control::two(dir, "control_server: { listen: \"127.0.0.1:0\" }");
    let socket = dir.join("shared/stack.sock");
    let mut args: Vec<std::ffi::OsString> = vec!["run".into(), manifest.into()];
    args.extend(["--control-socket".into(), socket.clone().into()]);
    let pilot = Pilot::start_env(&args, &[("PILOT_HOST_TOKEN", "".as_ref())]);
    (dir.join("shared/stack.token"), pilot)
}

#[test]
fn a_file_where_the_token_goes_is_refused_not_deleted() {
    let dir = Scratch::new("sec-token-in-the-way");
    let precious = dir.write("shared/stack.token", "my own notes\n");
    let (token, mut pilot) = token_run(&dir);
    assert_eq!(token, precious);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(2));
    let err = pilot.stderr_text();
    assert!(
        err.contains(&format!(
            "`{}` exists and is not a token file pilot-host left behind",
            precious.display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "my own notes\n"
    );
    assert!(pilot.logs_with(": started, pid").is_empty());

    // A token a killed run left behind is replaced.
    std::fs::remove_file(&precious).unwrap();
    let left = format!("{}\n", "ab".repeat(32));
    std::fs::write(&precious, &left).unwrap();
    chmod(&precious, 0o600);
    let (token, pilot) = token_run(&dir);
    pilot.wait_log("replacing the token file", SOON);
    pilot.wait_log("b: started, pid", SOON);
    let new = std::fs::read_to_string(&token).unwrap();
    assert_ne!(new, left);
    assert_eq!(new.trim().len(), 64);
}
