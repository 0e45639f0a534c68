//! Control plugins, run by the real `pilot-host`: Process Pilot's `control_server: NAME`, requests
//! under `/plugins/NAME/` over the socket and HTTP, events and ticks, grants, and hostile plugins
//! (denied calls, spinning handlers, huge answers, ungranted hosts, a restart storm).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::controlkit::{call, json, sse_until, Controlled};
use crate::harness::*;
use crate::hookserver::Hook;
use crate::support::{pilot_host, run};

fn webhook() -> PathBuf {
    plugin("examples", "webhook-notify")
}

fn probe() -> PathBuf {
    plugin("control", "control-probe")
}

/// Sends one request and returns the status, the headers and the body.
fn request(
    client: &pilot_host::ctl::Client,
    method: &str,
    path: &str,
) -> (u16, hyper::HeaderMap, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            client.send(method.parse().unwrap(), path, None),
        )
        .await
        .expect("an answer within 30 s")
        .expect("a connection");
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        let body = http_body_util::BodyExt::collect(answer.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    })
}

#[test]
fn the_seeds_control_server_name_runs_a_control_plugin_that_posts_crashes_and_timeouts() {
    let dir = Scratch::new("cp-webhook");
    let hook = Hook::start();
    let slow_port = free_port();
    let manifest = manifest(
        &dir,
        &format!(
            r#"control_server: webhook-notify
processes:
  - name: web
    path: CHILD
    args: [--name, web, --tick, 1000]
  - name: crashy
    path: CHILD
    args: [--name, crashy, --exit-after, 100, 3]
    restart: {{ max_restarts: 1, window_sec: 60, initial_delay_sec: 0.05 }}
  - name: slow
    path: CHILD
    args: [--name, slow]
    ready_strategy: tcp
    ready_params: {{ port: {slow_port} }}
    ready_timeout_sec: 0.3
    shutdown_strategy: do_not_restart
plugins:
  webhook-notify:
    grants: {{ http: ["{addr}"] }}
    config: {{ url: "{url}", burst: 10, interval_ms: 1000 }}
"#,
            addr = hook.addr,
            url = hook.url("/hook")
        ),
    );
    let plugins = plugin_dir(&dir, &[webhook()]);
    let c = Controlled::start(&dir, &manifest, &["--plugins", plugins.to_str().unwrap()]);
    let kinds = |got: &[crate::hookserver::Received]| -> Vec<String> {
        got.iter()
            .map(|r| r.json()["kind"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let got = hook.wait("a crash, a give-up and a readiness timeout", SOON, |got| {
        let k = kinds(got);
        ["crash", "gave_up", "ready_timeout"]
            .iter()
            .all(|want| k.iter().any(|have| have == want))
    });
    let crash = got.iter().find(|r| r.json()["kind"] == "crash").unwrap();
    let crash = crash.json();
    assert_eq!(crash["process"], "crashy");
    assert_eq!(crash["event"]["type"], "exited");
    assert_eq!(crash["event"]["code"], 3);
    assert!(
        crash["text"]
            .as_str()
            .unwrap()
            .starts_with("pilot-host: `crashy` crashed: it exited with status 3"),
        "{crash}"
    );
    let timeout = got
        .iter()
        .map(|r| r.json())
        .find(|j| j["kind"] == "ready_timeout")
        .unwrap();
    assert_eq!(timeout["process"], "slow");
    assert!(got.iter().all(|r| r.method == "POST" && r.path == "/hook"));
    // `web` keeps running and was never reported.
    assert!(!kinds(&got).is_empty());
    assert!(got.iter().all(|r| r.json()["process"] != "web"));

    assert!(c
        .pilot
        .stdout_text()
        .contains("control plugin `webhook-notify` 0.1.0 (webhook-notify.wasm"));
    // Its HTTP endpoint, through `ctl plugin`.
    let out = run(pilot_host()
        .env("XDG_RUNTIME_DIR", &c.runtime)
        .args(["ctl", "--socket"])
        .arg(&c.socket)
        .args(["plugin", "webhook-notify", "/"]));
    out.expect_code(0);
    let shown: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(shown["url"], hook.url("/hook"));
    let before = hook.received().len();
    let out = run(pilot_host()
        .env("XDG_RUNTIME_DIR", &c.runtime)
        .args(["ctl", "--socket"])
        .arg(&c.socket)
        .args(["plugin", "webhook-notify", "/test", "-X", "POST"]));
    out.expect_code(0).stdout_has("\"webhook_status\":200");
    hook.wait("the test message", SOON, |got| got.len() > before);
    let out = run(pilot_host()
        .env("XDG_RUNTIME_DIR", &c.runtime)
        .args(["ctl", "--socket"])
        .arg(&c.socket)
        .args(["plugin", "webhook-notify", "/nope"]));
    out.expect_code(1)
        .stderr_has("control plugin `webhook-notify` answered 404");
}

fn probe_manifest(dir: &Scratch, plugin_settings: &str, extra_top: &str) -> PathBuf {
    manifest(
        dir,
        &format!(
            "{extra_top}\ncontrol_plugins: [control-probe]\nprocesses:\n  - name: web\n    path: CHILD\n    args: [--name, web, --tick, 1000]\nplugins:\n  control-probe: {plugin_settings}\n"
        ),
    )
}

fn start_probe(dir: &Scratch, manifest: &std::path::Path) -> Controlled {
    let plugins = plugin_dir(dir, &[probe()]);
    Controlled::start_env(
        dir,
        manifest,
        &["--plugins", plugins.to_str().unwrap()],
        &[("PILOT_HOST_TOKEN", "")],
    )
}

#[test]
fn requests_reach_a_control_plugin_over_the_socket_and_http_behind_the_token() {
    let dir = Scratch::new("cp-routes");
    let manifest = probe_manifest(
        &dir,
        "{ grants: { control: [read] } }",
        "control_server: { listen: \"127.0.0.1:0\" }",
    );
    let c = start_probe(&dir, &manifest);
    c.wait_pid("web");
    let (status, headers, body) = request(&c.unix(), "GET", "/plugins/control-probe/hello");
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("sandbox"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");

    let token = std::fs::read_to_string(c.token_file()).unwrap();
    let (status, _, body) = request(&c.tcp("wrong"), "GET", "/plugins/control-probe/hello");
    assert_eq!(status, 401, "{body}");
    let (status, headers, body) =
        request(&c.tcp(token.trim()), "GET", "/plugins/control-probe/hello");
    assert_eq!((status, body.as_str()), (200, "hello"));
    let seen = headers["x-seen-headers"].to_str().unwrap();
    assert!(
        !seen.contains("authorization"),
        "the token must not reach the plugin: {seen}"
    );

    // The control call it is granted, and the process list it sees.
    let list = json(
        &c.unix(),
        "GET",
        "/plugins/control-probe/processes",
        None,
        200,
    );
    assert_eq!(list[0]["name"], "web");
    assert_eq!(list[0]["up"], true);

    let (status, text) = call(&c.unix(), "GET", "/plugins/nope/x", None);
    assert_eq!(status, 404);
    assert!(
        text.contains("no control plugin is called `nope` (running: `control-probe`)"),
        "{text}"
    );
    let (status, _) = call(&c.unix(), "GET", "/plugins/control-probe/missing", None);
    assert_eq!(status, 404);

    let plugins = json(&c.unix(), "GET", "/v1/plugins", None, 200);
    let me = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "control-probe")
        .expect("the control plugin is listed");
    assert_eq!(me["quarantined"], false);
    assert!(me["calls_total"].as_u64().unwrap() >= 3, "{me}");
}

#[test]
fn hostile_control_plugins_are_denied_capped_stopped_and_quarantined() {
    let dir = Scratch::new("cp-hostile");
    let other = Hook::start();
    let manifest = probe_manifest(
        &dir,
        "{ grants: { control: [read] }, call_timeout_ms: 2000, memory_mib: 256, fuel: 1000000000000, config: { events: [] } }",
        "",
    );
    let c = start_probe(&dir, &manifest);
    let pid = c.wait_pid("web");

    // A restart without the grant: denied, nothing restarted, reported once as a typed event.
    let events = sse_until(
        &c.unix(),
        "/v1/events",
        SOON,
        {
            let client = c.unix();
            move || {
                for _ in 0..2 {
                    let (status, text) = call(
                        &client,
                        "POST",
                        "/plugins/control-probe/restart?p=web",
                        None,
                    );
                    assert_eq!(status, 403, "{text}");
                    assert!(text.contains("Denied"), "{text}");
                    assert!(
                        text.contains("add `restart` to `plugins.control-probe.grants.control`"),
                        "{text}"
                    );
                }
            }
        },
        |data| data.contains("\"kind\":\"denied\""),
    );
    let denied: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter(|e| e["kind"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{events:?}");
    assert_eq!(denied[0]["plugin"], "control-probe");
    assert_eq!(c.pid("web"), Some(pid), "nothing was restarted");

    // An outgoing request to a host it was not granted.
    let path = format!("/plugins/control-probe/fetch?url={}", other.url("/"));
    let (status, text) = call(&c.unix(), "GET", &path, None);
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("denied"), "{text}");
    assert!(other.received().is_empty());

    // A 64 MiB answer: dropped at the cap.
    let (status, text) = call(&c.unix(), "GET", "/plugins/control-probe/big", None);
    let text: String = text.chars().take(300).collect();
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("\"kind\":\"answer_too_large\""), "{text}");

    // A spinning handler: 503 at its deadline; three in a row quarantine the plugin. (A success
    // first: on a starved machine the huge answer may itself have run out of time, a failure.)
    let (status, text) = call(&c.unix(), "GET", "/plugins/control-probe/hello", None);
    assert_eq!(status, 200, "{text}");
    for _ in 0..3 {
        let started = Instant::now();
        let (status, text) = call(&c.unix(), "GET", "/plugins/control-probe/spin", None);
        assert_eq!(status, 503, "{text}");
        assert!(text.contains("\"kind\":\"timeout\""), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
    }
    let (status, text) = call(&c.unix(), "GET", "/plugins/control-probe/hello", None);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("\"kind\":\"quarantined\""), "{text}");
    let metrics = call(&c.unix(), "GET", "/metrics", None).1;
    assert!(
        metrics.contains("pilot_plugin_quarantined{plugin=\"control-probe\"} 1"),
        "{metrics}"
    );
    let out = run(pilot_host()
        .env("XDG_RUNTIME_DIR", &c.runtime)
        .args(["ctl", "--socket"])
        .arg(&c.socket)
        .args(["plugin", "control-probe", "/hello"]));
    out.expect_code(1).stderr_has("is quarantined");
    let out = run(pilot_host()
        .env("XDG_RUNTIME_DIR", &c.runtime)
        .args(["ctl", "--socket"])
        .arg(&c.socket)
        .arg("status"));
    out.expect_code(0)
        .stdout_has("plugin control-probe: QUARANTINED, ");
    // Supervision went on untouched.
    assert_eq!(c.pid("web"), Some(pid));
}

#[test]
fn a_handler_parked_in_a_host_call_is_stopped_at_its_deadline() {
    let dir = Scratch::new("cp-sleep");
    let manifest = probe_manifest(&dir, "{ call_timeout_ms: 200, config: { events: [] } }", "");
    let c = start_probe(&dir, &manifest);
    c.wait_pid("web");
    let started = Instant::now();
    let (status, text) = call(&c.unix(), "GET", "/plugins/control-probe/sleep", None);
    assert_eq!(status, 503, "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // A trap is one failure, not a hang; the next request gets a fresh instance.
    let (status, text) = call(&c.unix(), "GET", "/plugins/control-probe/trap", None);
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("panicked"), "{text}");
    let (status, _) = call(&c.unix(), "GET", "/plugins/control-probe/hello", None);
    assert_eq!(status, 200);
}

#[test]
fn events_and_ticks_reach_a_control_plugin_in_order_until_after_the_last_process_stopped() {
    let dir = Scratch::new("cp-events");
    let hook = Hook::start();
    let manifest = probe_manifest(
        &dir,
        &format!(
            "{{ grants: {{ http: [\"{}\"] }}, config: {{ forward: \"{}\", events: [spawned, exited, shutting-down], tick_ms: 100 }} }}",
            hook.addr,
            hook.url("/events")
        ),
        "",
    );
    let mut c = start_probe(&dir, &manifest);
    let pid = c.wait_pid("web");
    hook.wait("two ticks and the spawn", SOON, |got| {
        let ticks = got.iter().filter(|r| r.json()["type"] == "tick").count();
        let spawned = got.iter().any(|r| r.json()["type"] == "spawned");
        ticks >= 2 && spawned
    });
    json(&c.unix(), "POST", "/v1/shutdown", None, 202);
    c.pilot.wait_exit(SOON);
    // The exit of the final stop reached the plugin before pilot-host ended.
    let got = hook.received();
    let events: Vec<Value> = got
        .iter()
        .map(|r| r.json())
        .filter(|j| j["type"] != "tick")
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["spawned", "shutting_down", "exited"], "{events:?}");
    assert_eq!(events[2]["pid"], pid);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
}

#[test]
fn a_restart_storm_from_a_plugins_events_is_bounded_by_its_rate_limit() {
    let dir = Scratch::new("cp-storm");
    let manifest = probe_manifest(
        &dir,
        "{ grants: { control: [restart] }, config: { storm: true, events: [spawned] } }",
        "",
    );
    let c = start_probe(&dir, &manifest);
    c.wait_pid("web");
    // Every spawn restarts `web`: a burst of changes, then the rate limit, reported once.
    c.pilot.wait_log(
        "changes faster than its rate limit allows",
        Duration::from_secs(20),
    );
    let restarts = |c: &Controlled| -> u64 {
        let list = json(&c.unix(), "GET", "/v1/processes", None, 200);
        list[0]["restarts"].as_u64().unwrap()
    };
    let first = restarts(&c);
    assert!(first <= 12, "the burst is 10 changes, got {first} restarts");
    let window = Duration::from_secs(3);
    let start = Instant::now();
    std::thread::sleep(window);
    let later = restarts(&c);
    let allowed = start.elapsed().as_secs() + 2;
    assert!(
        later - first <= allowed,
        "{} restarts in {:?}, at most one a second expected",
        later - first,
        start.elapsed()
    );
    assert_eq!(
        c.pilot
            .logs_with("changes faster than its rate limit allows")
            .len(),
        1,
        "reported once"
    );
}

#[test]
fn a_control_plugin_that_cannot_start_stops_the_run_before_anything_starts() {
    let dir = Scratch::new("cp-init");
    let marker = dir.join("started");
    let manifest = manifest(
        &dir,
        &format!(
            "control_server: control-probe\nprocesses:\n  - name: web\n    path: CHILD\n    args: [--touch-after, 0, {}]\nplugins:\n  control-probe: {{ config: {{ fail_init: true }} }}\n",
            marker.display()
        ),
    );
    let plugins = plugin_dir(&dir, &[probe()]);
    run(pilot_host()
        .arg("run")
        .arg(&manifest)
        .arg("--plugins")
        .arg(&plugins)
        .arg("--no-control"))
    .expect_code(2)
    .stderr_has("control plugins cannot start; nothing was started")
    .stderr_has("told to fail by `fail_init`");
    assert!(!marker.exists(), "no process started");
}

#[test]
fn control_plugin_names_and_grants_are_validated() {
    let dir = Scratch::new("cp-validate");
    let plugins = plugin_dir(&dir, &[probe(), plugin("examples", "event-log")]);
    let m = manifest(
        &dir,
        "control_server: control-prob\ncontrol_plugins: [event-log]\nprocesses:\n  - { name: web, path: CHILD }\nplugins:\n  control-probe:\n    grants: { control: [read, restrat], http: [\"http://hooks.example.com/x\", \"h:99999\"] }\n",
    );
    let out = run(pilot_host()
        .arg("validate")
        .arg(&m)
        .arg("--plugins")
        .arg(&plugins));
    out.expect_code(2)
        .stderr_has("control_server")
        .stderr_has("no loaded plugin is called `control-prob` (loaded control plugins: `control-probe`); did you mean `control-probe`?")
        .stderr_has("plugin `event-log` is not a control plugin")
        .stderr_has("`restrat` is not a control grant (known: `read`, `start`, `stop`, `restart`, `reload`); did you mean `restart`?")
        .stderr_has("`http://hooks.example.com/x` is a URL; grant the host and port only")
        .stderr_has("`h:99999` has port `99999`, which is not from 1 to 65535");
    // Without a plugin folder, the name needs one.
    let m = manifest(
        &dir,
        "control_server: my_server\nprocesses:\n  - { name: web, path: CHILD }\n",
    );
    run(pilot_host().arg("validate").arg(&m))
        .expect_code(2)
        .stderr_has("`my_server` is not a control server pilot-host provides (`http`, `tcp`), so it must be a control plugin, and no plugins are loaded; pass `--plugins DIR`");
    // The built-in names keep their meaning.
    let m = manifest(
        &dir,
        "control_server: tcp\nprocesses:\n  - { name: web, path: CHILD }\n",
    );
    run(pilot_host().arg("validate").arg(&m)).expect_code(0);
}

#[test]
fn a_python_control_plugin_answers_health_and_restarts_a_group() {
    let dir = Scratch::new("cp-ops");
    let manifest = manifest(
        &dir,
        "control_server: ops-endpoints\nprocesses:\n  - { name: web-1, path: CHILD, args: [--name, web-1] }\n  - { name: web-2, path: CHILD, args: [--name, web-2] }\n  - { name: db, path: CHILD, args: [--name, db] }\nplugins:\n  ops-endpoints: { grants: { control: [read, restart] } }\n",
    );
    let plugins = plugin_dir(&dir, &[plugin("examples", "ops-endpoints")]);
    // A Python component compiles for seconds the first time: `validate` fills the compile cache.
    let mut validate = Pilot::start(&[
        "validate".as_ref(),
        manifest.as_os_str(),
        "--plugins".as_ref(),
        plugins.as_os_str(),
    ]);
    assert_eq!(validate.wait_exit(Duration::from_secs(120)).code(), Some(0));
    let c = Controlled::start(&dir, &manifest, &["--plugins", plugins.to_str().unwrap()]);
    let (db, web1, web2) = (c.wait_pid("db"), c.wait_pid("web-1"), c.wait_pid("web-2"));
    let health = json(&c.unix(), "GET", "/plugins/ops-endpoints/health", None, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["processes"]["db"], "running");

    let restarted = json(
        &c.unix(),
        "POST",
        "/plugins/ops-endpoints/restart-group",
        Some(serde_json::json!({"prefix": "web-"})),
        200,
    );
    assert_eq!(
        restarted["restarted"],
        serde_json::json!(["web-1", "web-2"])
    );
    wait_until("both web processes run anew", SOON, || {
        c.pid("web-1").is_some_and(|p| p != web1) && c.pid("web-2").is_some_and(|p| p != web2)
    });
    assert_eq!(c.pid("db"), Some(db), "only the group restarted");
    let (status, text) = call(
        &c.unix(),
        "POST",
        "/plugins/ops-endpoints/restart-group?prefix=zz",
        None,
    );
    assert_eq!(status, 404, "{text}");

    json(&c.unix(), "POST", "/v1/processes/db/stop", None, 200);
    let health = json(&c.unix(), "GET", "/plugins/ops-endpoints/health", None, 503);
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["processes"]["db"], "stopped");
}
