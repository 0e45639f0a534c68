//! The control plane's API over the unix socket: every endpoint, and the event and log streams.

use crate::controlkit::{call, json, sse_until, Controlled};
use crate::harness::*;

/// Two processes, `b` depending on `a`; `a` prints a line every 50 ms.
pub fn two(dir: &Scratch, control: &str) -> std::path::PathBuf {
    manifest(
        dir,
        &format!(
            "{control}\nprocesses:\n  - {{ name: a, path: CHILD, args: [--name, a, --tick, 50] }}\n  - {{ name: b, path: CHILD, args: [--name, b], dependencies: [a] }}\n"
        ),
    )
}

#[test]
fn every_endpoint_answers_over_the_socket() {
    let dir = Scratch::new("ctl-api");
    let manifest = two(&dir, "");
    // Stays alive while both are stopped below (else pilot-host ends when nothing runs).
    let c = Controlled::start(&dir, &manifest, &["--stay-alive"]);
    let api = c.unix();
    let (a, b) = (c.wait_pid("a"), c.wait_pid("b"));

    let list = json(&api, "GET", "/v1/processes", None, 200);
    assert_eq!(list[0]["name"], "a");
    assert_eq!(list[1]["dependencies"], serde_json::json!(["a"]));
    assert_eq!(list[0]["ready"], true);
    let one = json(&api, "GET", "/v1/processes/b", None, 200);
    assert_eq!(one["pid"], b);
    assert_eq!(
        one["spec"]["executable"],
        pilot_child().display().to_string()
    );
    let unknown = json(&api, "GET", "/v1/processes/zz", None, 404);
    assert_eq!(unknown["kind"], "unknown_process");

    // Restart answers once the new child runs; unknown names restart nothing.
    let restarted = json(&api, "POST", "/v1/processes/a/restart", None, 200);
    let a2 = restarted["processes"][0]["pid"].as_u64().unwrap() as u32;
    assert_ne!(a2, a);
    assert!(alive(a2) && !alive(a));
    let refused = json(
        &api,
        "POST",
        "/v1/restart",
        Some(serde_json::json!({"processes": ["b", "nope"]})),
        404,
    );
    assert!(
        refused["error"].as_str().unwrap().contains("`nope`"),
        "{refused}"
    );
    assert_eq!(c.pid("b"), Some(b), "nothing restarted");
    let both = json(
        &api,
        "POST",
        "/v1/restart?wait=ready",
        Some(serde_json::json!({"processes": ["b"]})),
        200,
    );
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
        json(&api, "GET", "/v1/processes/a/logs?tail=2", None, 200)["lines"]
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    assert!(logs["lines"].as_array().unwrap().len() <= 2);
    let manifest_json = json(&api, "GET", "/v1/manifest", None, 200);
    assert_eq!(
        manifest_json["processes"][1]["dependencies"],
        serde_json::json!(["a"])
    );
    assert_eq!(
        json(&api, "GET", "/v1/plugins", None, 200),
        serde_json::json!([])
    );
    // Reload: unchanged, then an invalid file (nothing changes), then a process added.
    let same = json(&api, "POST", "/v1/reload", None, 200);
    assert_eq!(same["unchanged"], serde_json::json!(["a", "b"]), "{same}");
    let good = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        good.replace("dependencies: [a]", "dependencies: [zz]"),
    )
    .unwrap();
    let bad = json(&api, "POST", "/v1/reload", None, 400);
    assert_eq!(bad["kind"], "invalid_manifest");
    assert!(bad["error"].as_str().unwrap().contains("`zz`"), "{bad}");
    std::fs::write(
        &manifest,
        format!(
            "{good}  - {{ name: c, path: {} }}\n",
            pilot_child().display()
        ),
    )
    .unwrap();
    let added = json(&api, "POST", "/v1/reload", None, 200);
    assert_eq!(added["added"], serde_json::json!(["c"]), "{added}");
    c.wait_pid("c");

    let (status, metrics) = call(&api, "GET", "/metrics", None);
    assert_eq!(status, 200);
    let a_now = c.pid("a").unwrap();
    assert!(
        metrics.contains("pilot_process_up{process=\"a\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE pilot_process_restarts_total counter\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pilot_process_restarts_total{process=\"a\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pilot_process_resident_memory_bytes{process=\"a\"} "),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE pilot_plugin_calls_total counter\n"),
        "{metrics}"
    );
    let _ = a_now;

    // Shutdown stops everything in order, and the socket goes with pilot-host.
    let mut c = c;
    assert_eq!(
        json(&api, "POST", "/v1/shutdown", None, 202)["status"],
        "shutting down"
    );
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
    assert!(
        events
            .iter()
            .any(|e| e.contains("\"type\":\"exited\"") && e.contains(&old.to_string())),
        "{events:?}"
    );

    // `follow` sends the kept tail, then lines as they are printed.
    let lines = sse_until(
        &api,
        "/v1/processes/a/logs?tail=1&follow=true",
        SOON,
        || {},
        |_| false,
    );
    let _ = lines;
    let mut ticks = Vec::new();
    sse_until(
        &api,
        "/v1/processes/a/logs?tail=1&follow=true",
        SOON,
        || {},
        |data| {
            ticks.push(data.to_string());
            ticks.len() == 3
        },
    );
    assert_eq!(ticks.len(), 3, "{ticks:?}");
    let numbers: Vec<u64> = ticks
        .iter()
        .map(|t| {
            let line: serde_json::Value = serde_json::from_str(t).unwrap();
            line["text"]
                .as_str()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive ticks: {numbers:?}"
    );
}
