//! The control plane's API over the unix socket and over TCP, with and without the token; the
//! socket's folder and files; a second run of one manifest; Process Pilot's TCP protocol.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use crate::controlkit::{call, json, sse_until, Controlled};
use crate::harness::*;

/// Two processes, `b` depending on `a`; `a` prints a line every 50 ms.
fn two(dir: &Scratch, control: &str) -> std::path::PathBuf {
    manifest(
        dir,
        &format!(
            "{control}\nprocesses:\n  - {{ name: a, path: CHILD, args: [--name, a, --tick, 50] }}\n  - {{ name: b, path: CHILD, args: [--name, b], dependencies: [a] }}\n"
        ),
    )
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn every_endpoint_answers_over_the_socket() {
    let dir = Scratch::new("ctl-api");
    let manifest = two(&dir, "");
    let c = Controlled::start(&dir, &manifest, &[]);
    let api = c.unix();
    let (a, b) = (c.wait_pid("a"), c.wait_pid("b"));

    let list = json(&api, "GET", "/v1/processes", None, 200);
    assert_eq!(list[0]["name"], "a");
    assert_eq!(list[1]["dependencies"], serde_json::json!(["a"]));
    assert_eq!(list[0]["ready"], true);
    let one = json(&api, "GET", "/v1/processes/b", None, 200);
    assert_eq!(one["pid"], b);
    assert_eq!(one["spec"]["executable"], pilot_child().display().to_string());
    let unknown = json(&api, "GET", "/v1/processes/zz", None, 404);
    assert_eq!(unknown["kind"], "unknown_process");

    // Restart answers once the new child runs; unknown names restart nothing.
    let restarted = json(&api, "POST", "/v1/processes/a/restart", None, 200);
    let a2 = restarted["processes"][0]["pid"].as_u64().unwrap() as u32;
    assert_ne!(a2, a);
    assert!(alive(a2) && !alive(a));
    let refused = json(&api, "POST", "/v1/restart", Some(serde_json::json!({"processes": ["b", "nope"]})), 404);
    assert!(refused["error"].as_str().unwrap().contains("`nope`"), "{refused}");
    assert_eq!(c.pid("b"), Some(b), "nothing restarted");
    let both = json(&api, "POST", "/v1/restart?wait=ready", Some(serde_json::json!({"processes": ["b"]})), 200);
    assert_eq!(both["processes"][0]["ready"], true);

    // Stop answers once the group is gone; start spawns again.
    let b2 = c.pid("b").unwrap();
    let stopped = json(&api, "POST", "/v1/processes/b/stop", None, 200);
    assert_eq!(stopped["processes"][0]["state"], "stopped");
    assert!(!alive(b2), "the stopped child is gone when stop answers");
    let started = json(&api, "POST", "/v1/processes/b/start?wait=ready", None, 200);
    assert!(started["processes"][0]["pid"].as_u64().is_some());
    // A start while its dependency is down is refused with 409.
    json(&api, "POST", "/v1/processes/a/stop", None, 200);
    json(&api, "POST", "/v1/processes/b/stop", None, 200);
    let refused = json(&api, "POST", "/v1/processes/b/start", None, 409);
    assert_eq!(refused["kind"], "dependency_down");
    json(&api, "POST", "/v1/processes/a/start", None, 200);

    let logs = json(&api, "GET", "/v1/processes/a/logs?tail=2", None, 200);
    wait_until("`a` prints ticks", SOON, || {
        json(&api, "GET", "/v1/processes/a/logs?tail=2", None, 200)["lines"].as_array().unwrap().len() == 2
    });
    assert!(logs["lines"].as_array().unwrap().len() <= 2);
    let manifest_json = json(&api, "GET", "/v1/manifest", None, 200);
    assert_eq!(manifest_json["processes"][1]["dependencies"], serde_json::json!(["a"]));
    assert_eq!(json(&api, "GET", "/v1/plugins", None, 200), serde_json::json!([]));
    assert_eq!(json(&api, "POST", "/v1/reload", None, 501)["kind"], "unsupported");

    let (status, metrics) = call(&api, "GET", "/metrics", None);
    assert_eq!(status, 200);
    let a_now = c.pid("a").unwrap();
    assert!(metrics.contains("pilot_process_up{process=\"a\"} 1\n"), "{metrics}");
    assert!(metrics.contains("# TYPE pilot_process_restarts_total counter\n"), "{metrics}");
    assert!(metrics.contains("pilot_process_restarts_total{process=\"a\"} 1\n"), "{metrics}");
    assert!(metrics.contains("pilot_process_resident_memory_bytes{process=\"a\"} "), "{metrics}");
    assert!(metrics.contains("# TYPE pilot_plugin_calls_total counter\n"), "{metrics}");
    let _ = a_now;

    // Shutdown stops everything in order, and the socket goes with pilot-host.
    let mut c = c;
    assert_eq!(json(&api, "POST", "/v1/shutdown", None, 202)["status"], "shutting down");
    assert!(c.pilot.wait_exit(SOON).success());
    assert!(!c.socket.exists(), "the socket is removed at exit");
}

#[test]
fn the_event_and_log_streams_deliver_what_happens() {
    let dir = Scratch::new("ctl-sse");
    let manifest = two(&dir, "");
    let c = Controlled::start(&dir, &manifest, &[]);
    let api = c.unix();
    let old = c.wait_pid("b");
    let restarter = c.unix();
    let events = sse_until(
        &api,
        "/v1/events",
        SOON,
        move || {
            call(&restarter, "POST", "/v1/processes/b/restart", None);
        },
        |data| data.contains("\"type\":\"spawned\""),
    );
    let spawned: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(spawned["process"], "b");
    assert_ne!(spawned["pid"], old);
    assert!(spawned["seq"].as_u64().unwrap() > 0);
    assert!(events.iter().any(|e| e.contains("\"type\":\"exited\"") && e.contains(&old.to_string())), "{events:?}");

    // `follow` sends the kept tail, then lines as they are printed.
    let lines = sse_until(&api, "/v1/processes/a/logs?tail=1&follow=true", SOON, || {}, |_| false);
    let _ = lines;
    let mut ticks = Vec::new();
    sse_until(&api, "/v1/processes/a/logs?tail=1&follow=true", SOON, || {}, |data| {
        ticks.push(data.to_string());
        ticks.len() == 3
    });
    assert_eq!(ticks.len(), 3, "{ticks:?}");
    let numbers: Vec<u64> = ticks
        .iter()
        .map(|t| {
            let line: serde_json::Value = serde_json::from_str(t).unwrap();
            line["text"].as_str().unwrap().rsplit(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "consecutive ticks: {numbers:?}");
}

#[test]
fn the_socket_its_folder_and_the_token_are_private_and_tcp_needs_the_token() {
    let dir = Scratch::new("ctl-tcp");
    let manifest = two(&dir, "control_server: { listen: \"127.0.0.1:0\" }");
    let c = Controlled::start_env(&dir, &manifest, &[], &[("PILOT_HOST_TOKEN", "")]);
    assert_eq!(mode(&c.socket), 0o600, "socket");
    assert_eq!(mode(c.socket.parent().unwrap()), 0o700, "folder");
    assert!(c.socket.starts_with(c.runtime.join("pilot-host")));
    let token_file = c.token_file();
    assert_eq!(mode(&token_file), 0o600, "token file");
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    assert_eq!(token.len(), 64);
    let pid = c.wait_pid("a");

    for (who, client) in [("no token", c.tcp("")), ("a wrong token", c.tcp("wrong"))] {
        for (method, path) in [
            ("GET", "/v1/processes"),
            ("GET", "/v1/processes/a"),
            ("POST", "/v1/processes/a/restart"),
            ("POST", "/v1/processes/a/stop"),
            ("POST", "/v1/processes/a/start"),
            ("GET", "/v1/processes/a/logs"),
            ("GET", "/v1/events"),
            ("GET", "/v1/manifest"),
            ("GET", "/v1/plugins"),
            ("POST", "/v1/reload"),
            ("POST", "/v1/shutdown"),
            ("GET", "/metrics"),
        ] {
            let body = (path == "/v1/restart").then(|| serde_json::json!({"processes": ["a"]}));
            let (status, text) = call(&client, method, path, body);
            assert_eq!(status, 401, "{who}: {method} {path}: {text}");
            assert!(text.contains("\"kind\":\"unauthorized\""), "{text}");
        }
        let (status, _) = call(&client, "POST", "/v1/restart", Some(serde_json::json!({"processes": ["a"]})));
        assert_eq!(status, 401);
    }
    assert_eq!(c.pid("a"), Some(pid), "nothing changed without the token");
    assert!(c.pilot.logs_with("shutting down").is_empty());

    let tcp = c.tcp(&token);
    assert_eq!(json(&tcp, "GET", "/v1/processes", None, 200)[0]["pid"], pid);
    let restarted = json(&tcp, "POST", "/v1/processes/a/restart", None, 200);
    assert_ne!(restarted["processes"][0]["pid"], pid);
    let (status, metrics) = call(&tcp, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(metrics.contains("pilot_process_up{process=\"b\"} 1"));
    // The dashboard's page holds no data and needs no token; its data does.
    let (status, page) = call(&c.tcp(""), "GET", "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("<title>pilot-host</title>"));

    let socket = c.socket.clone();
    drop(c);
    let _ = socket;
}

#[test]
fn a_token_comes_from_the_token_file_or_the_environment() {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = Scratch::new("ctl-token");
    let file = dir.join("secret.token");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).mode(0o600).open(&file).unwrap();
    f.write_all(b"from-the-file\n").unwrap();
    let manifest = two(&dir, &format!("control_server: {{ listen: \"127.0.0.1:0\", token_file: {} }}", file.display()));
    let c = Controlled::start(&dir, &manifest, &[]);
    assert_eq!(c.token_file(), file);
    json(&c.tcp("from-the-file"), "GET", "/v1/processes", None, 200);
    assert_eq!(call(&c.tcp("from-the-environment"), "GET", "/v1/processes", None).0, 401);
    drop(c);

    let dir = Scratch::new("ctl-token-env");
    let manifest = two(&dir, "control_server: { listen: \"127.0.0.1:0\" }");
    let c = Controlled::start_env(&dir, &manifest, &[], &[("PILOT_HOST_TOKEN", "from-the-environment")]);
    c.pilot.wait_log("bearer token from PILOT_HOST_TOKEN", SOON);
    json(&c.tcp("from-the-environment"), "GET", "/v1/processes", None, 200);
    assert!(std::fs::read_dir(c.socket.parent().unwrap()).unwrap().all(|e| {
        e.unwrap().path().extension().is_none_or(|x| x != "token")
    }), "no token file is written");
}

#[test]
fn a_second_run_of_the_same_manifest_is_refused_and_a_stale_socket_replaced() {
    let dir = Scratch::new("ctl-twice");
    let manifest = two(&dir, "");
    let first = Controlled::start(&dir, &manifest, &[]);
    let a = first.wait_pid("a");
    let mut second = Pilot::start_env(
        &["run".as_ref(), manifest.as_os_str()],
        &[("XDG_RUNTIME_DIR", first.runtime.as_os_str())],
    );
    let status = second.wait_exit(SOON);
    assert_eq!(status.code(), Some(1));
    let err = second.stderr_text();
    assert!(
        err.contains(&format!("another pilot-host runs this manifest, pid {}", first.pilot.pid())),
        "{err}"
    );
    assert!(second.logs_with(": started, pid").is_empty(), "the second run started nothing");
    assert_eq!(first.pid("a"), Some(a));

    // SIGKILL leaves the socket behind; the next run replaces it.
    let Controlled { pilot, socket, runtime } = first;
    pilot.signal(libc::SIGKILL);
    let mut pilot = pilot;
    pilot.wait_exit(SOON);
    assert!(socket.exists(), "a killed run leaves its socket");
    wait_until("the killed run's children are gone", SOON, || !alive(a));
    let third = Pilot::start_env(&["run".as_ref(), manifest.as_os_str()], &[("XDG_RUNTIME_DIR", runtime.as_os_str())]);
    third.wait_log("removing the stale control socket", SOON);
    third.wait_log("control socket: ", SOON);
    third.wait_log("b: started, pid", SOON);
}

#[test]
fn an_unsafe_socket_folder_is_refused_and_nothing_starts() {
    let dir = Scratch::new("ctl-unsafe");
    let manifest = two(&dir, "");
    let runtime = crate::controlkit::runtime_dir(&dir);
    let folder = runtime.join("pilot-host");
    std::fs::create_dir(&folder).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut pilot = Pilot::start_env(&["run".as_ref(), manifest.as_os_str()], &[("XDG_RUNTIME_DIR", runtime.as_os_str())]);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(1));
    let err = pilot.stderr_text();
    assert!(err.contains(&format!("control socket folder `{}` can be written by others (mode 777)", folder.display())), "{err}");
    assert!(pilot.logs_with(": started, pid").is_empty());

    // `--no-control` runs without any socket.
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700)).unwrap();
    let pilot = Pilot::start_env(
        &["run".as_ref(), manifest.as_os_str(), "--no-control".as_ref()],
        &[("XDG_RUNTIME_DIR", runtime.as_os_str())],
    );
    pilot.wait_log("b: started, pid", SOON);
    assert!(pilot.logs_with("control socket").is_empty());
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
}

/// Sends one request in Process Pilot's protocol and returns the answer.
fn process_pilot(addr: &str, request: &[u8]) -> serde_json::Value {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(SOON)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"))
}

#[test]
fn process_pilots_tcp_protocol_restarts_starts_stops_and_reports() {
    let dir = Scratch::new("ctl-pp");
    let manifest = two(&dir, "control_server: { process_pilot: \"127.0.0.1:0\" }");
    let c = Controlled::start(&dir, &manifest, &[]);
    let line = c.pilot.wait_log("Process Pilot control protocol on ", SOON);
    assert!(line.contains("unauthenticated"), "{line}");
    let addr = crate::controlkit::after(&line, "protocol on ").split(':').take(2).collect::<Vec<_>>().join(":");
    let addr = addr.trim_end_matches(|c: char| !c.is_ascii_digit()).to_string();
    let old = c.wait_pid("a");

    // Process Pilot's exact request.
    let answer = process_pilot(&addr, br#"{"action": "restart", "processes": ["a"]}"#);
    assert_eq!(answer, serde_json::json!({"status": "success"}));
    let new = c.pid("a").unwrap();
    assert_ne!(new, old);
    let answer = process_pilot(&addr, br#"{"action": "restart", "processes": ["a", "ghost"]}"#);
    assert_eq!(answer["status"], "error");
    assert!(answer["message"].as_str().unwrap().contains("`ghost`"), "{answer}");
    assert_eq!(c.pid("a"), Some(new), "nothing restarted");

    assert_eq!(process_pilot(&addr, br#"{"action": "stop", "processes": ["b"]}"#)["status"], "success");
    assert_eq!(c.pid("b"), None);
    assert_eq!(process_pilot(&addr, br#"{"action": "start", "processes": ["b"]}"#)["status"], "success");
    let status = process_pilot(&addr, br#"{"action": "status"}"#);
    assert_eq!(status["status"], "success");
    assert_eq!(status["processes"][1]["name"], "b");
    assert!(status["processes"][1]["pid"].as_u64().is_some());
    let bad = process_pilot(&addr, b"{\"action\": ");
    assert_eq!(bad["status"], "error");
    let bad = process_pilot(&addr, br#"{"action": "explode", "processes": ["a"]}"#);
    assert!(bad["message"].as_str().unwrap().contains("unknown action `explode`"), "{bad}");
}

#[test]
fn control_server_tcp_means_process_pilots_address() {
    let dir = Scratch::new("ctl-pp-default");
    let manifest = two(&dir, "control_server: tcp");
    let loaded = pilot_host::manifest::load(&manifest, &Default::default()).unwrap();
    let settings = pilot_host::control::Settings::for_run(&manifest, loaded.manifest.control_server.as_ref(), None, true);
    assert_eq!(settings.process_pilot, Some("127.0.0.1:9999".parse().unwrap()));
    assert_eq!(settings.listen, None);
    let manifest = two(&dir, "control_server: http");
    let loaded = pilot_host::manifest::load(&manifest, &Default::default()).unwrap();
    let settings = pilot_host::control::Settings::for_run(&manifest, loaded.manifest.control_server.as_ref(), None, false);
    assert_eq!(settings, pilot_host::control::Settings::default(), "--no-control turns all off");
    let _ = Duration::ZERO;
}
