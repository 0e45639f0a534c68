//! Process Pilot's own TCP protocol (`control_server: tcp`), with its exact request.

use std::io::{Read as _, Write as _};

use crate::controlkit::Controlled;
use crate::harness::*;

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
    let manifest = crate::control::two(&dir, "control_server: { process_pilot: \"127.0.0.1:0\" }");
    let c = Controlled::start(&dir, &manifest, &[]);
    let line = c.pilot.wait_log("Process Pilot control protocol on ", SOON);
    assert!(line.contains("unauthenticated"), "{line}");
    let addr = crate::controlkit::after(&line, "protocol on ")
        .split(':')
        .take(2)
        .collect::<Vec<_>>()
        .join(":");
    let addr = addr
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .to_string();
    let old = c.wait_pid("a");

    // Process Pilot's exact request.
    let answer = process_pilot(&addr, br#"{"action": "restart", "processes": ["a"]}"#);
    assert_eq!(answer, serde_json::json!({"status": "success"}));
    let new = c.pid("a").unwrap();
    assert_ne!(new, old);
    let answer = process_pilot(
        &addr,
        br#"{"action": "restart", "processes": ["a", "ghost"]}"#,
    );
    assert_eq!(answer["status"], "error");
    assert!(
        answer["message"].as_str().unwrap().contains("`ghost`"),
        "{answer}"
    );
    assert_eq!(c.pid("a"), Some(new), "nothing restarted");

    assert_eq!(
        process_pilot(&addr, br#"{"action": "stop", "processes": ["b"]}"#)["status"],
        "success"
    );
    assert_eq!(c.pid("b"), None);
    assert_eq!(
        process_pilot(&addr, br#"{"action": "start", "processes": ["b"]}"#)["status"],
        "success"
    );
    let status = process_pilot(&addr, br#"{"action": "status"}"#);
    assert_eq!(status["status"], "success");
    assert_eq!(status["processes"][1]["name"], "b");
    assert!(status["processes"][1]["pid"].as_u64().is_some());
    let bad = process_pilot(&addr, b"{\"action\": ");
    assert_eq!(bad["status"], "error");
    let bad = process_pilot(&addr, br#"{"action": "explode", "processes": ["a"]}"#);
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("unknown action `explode`"),
        "{bad}"
    );
}

#[test]
fn control_server_tcp_means_process_pilots_address() {
    let dir = Scratch::new("ctl-pp-default");
    let manifest = crate::control::two(&dir, "control_server: tcp");
    let loaded = pilot_host::manifest::load(&manifest, &Default::default()).unwrap();
    let settings = pilot_host::control::Settings::for_run(
        &manifest,
        loaded.manifest.control_server.as_ref(),
        None,
        true,
    );
    assert_eq!(
        settings.process_pilot,
        Some("127.0.0.1:9999".parse().unwrap())
    );
    assert_eq!(settings.listen, None);
    let manifest = crate::control::two(&dir, "control_server: http");
    let loaded = pilot_host::manifest::load(&manifest, &Default::default()).unwrap();
    let settings = pilot_host::control::Settings::for_run(
        &manifest,
        loaded.manifest.control_server.as_ref(),
        None,
        false,
    );
    assert_eq!(
        settings,
        pilot_host::control::Settings::default(),
        "--no-control turns all off"
    );
}
