//! `pilot-host plugin check` of control plugins: spec-file HTTP calls and events against the real
//! examples and the test plugin `control-probe`, the stand-in world their control calls and requests
//! reach (recorded, never carried out or sent), what is ungranted as findings in JSON and SARIF, and
//! spec files that do not fit the plugin.

use serde_json::Value;

use crate::check::{check, example_spec, has_finding, json};
use crate::harness::{plugin, Scratch};
use crate::hookserver::Hook;

fn probe() -> std::path::PathBuf {
    plugin("control", "control-probe")
}

/// Returns the `detail`s of the report's `granted` entries of `kind`.
fn granted(report: &Value, kind: &str) -> Vec<String> {
    report["granted"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["kind"] == kind)
        .map(|g| g["detail"].as_str().unwrap().to_string())
        .collect()
}

/// Returns the results of `rule` in a SARIF log, as (level, text).
fn sarif_results(sarif: &Value, rule: &str) -> Vec<(String, String)> {
    sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ruleId"] == rule)
        .map(|r| {
            (
                r["level"].as_str().unwrap().to_string(),
                r["message"]["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_control_examples_pass_their_specs_and_what_they_changed_is_only_recorded() {
    let mut args: Vec<std::path::PathBuf> = vec!["--json".into()];
    for name in ["webhook-notify", "ops-endpoints"] {
        args.extend(["--spec".into(), example_spec(name)]);
    }
    args.extend([
        plugin("examples", "webhook-notify"),
        plugin("examples", "ops-endpoints"),
    ]);
    let run = check(&args);
    run.expect_code(0);
    let doc = json(&run);
    assert_eq!(doc["findings_total"], 0, "{}", run.stdout);
    let (webhook, ops) = (&doc["reports"][0], &doc["reports"][1]);
    let spec_calls = |r: &Value| -> Vec<(String, String)> {
        r["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["source"] == "spec")
            .map(|c| {
                assert_eq!(c["ok"], true, "{c}");
                assert!(c["profile"]["fuel"].as_u64().unwrap() > 0, "{c}");
                let result = c["result"].as_str().unwrap().to_string();
                (c["name"].as_str().unwrap().to_string(), result)
            })
            .collect()
    };
    let ops_calls = spec_calls(ops);
    assert_eq!(ops_calls[0].0, "GET /health");
    assert!(
        ops_calls[0].1.starts_with("HTTP 503")
            && ops_calls[0].1.contains(r#""worker": "backing-off""#),
        "the stand-in's processes reach the handler: {ops_calls:?}"
    );
    assert_eq!(
        ops_calls[1].1,
        r#"HTTP 200: {"restarted": ["web", "web-admin"]}"#
    );
    assert_eq!(
        granted(ops, "control"),
        [
            "processes: answered",
            "restart [`web`, `web-admin`]: recorded, not carried out"
        ]
    );
    let names: Vec<String> = spec_calls(webhook).into_iter().map(|c| c.0).collect();
    assert_eq!(
        names,
        [
            "GET /",
            "POST /test",
            "on-event `exited`",
            "on-event `state-changed`",
            "on-event `exited`",
            "on-event `gave-up`",
            "GET /nowhere"
        ]
    );
    assert_eq!(
        granted(webhook, "http"),
        ["POST http://127.0.0.1:9000/hook: answered 200 by the check, not sent"]
    );
}

#[test]
fn granted_requests_never_leave_the_machine() {
    let dir = Scratch::new("check-control-not-sent");
    let hook = Hook::start();
    let spec = dir.write(
        "spec.yaml",
        &format!(
            "plugin: control-probe\nconfig: {{ forward: \"{}\", events: [exited] }}\ngrants: {{ http: [\"{}\"] }}\ncalls:\n  - event: {{ type: exited, process: web, code: 1 }}\n    expect: ok\n  - http: {{ path: \"/fetch?url={}\" }}\n    expect: {{ status: 200 }}\n",
            hook.url("/events"),
            hook.addr,
            hook.url("/page")
        ),
    );
    let run = check(&[
        "--json".as_ref(),
        "--spec".as_ref(),
        spec.as_os_str(),
        probe().as_os_str(),
    ]);
    run.expect_code(0);
    let report = &json(&run)["reports"][0];
    let sent = granted(report, "http");
    assert!(
        sent.contains(&format!(
            "POST {}: answered 200 by the check, not sent",
            hook.url("/events")
        )) && sent.contains(&format!(
            "GET {}: answered 200 by the check, not sent",
            hook.url("/page")
        )),
        "{sent:?}"
    );
    assert!(
        hook.received().is_empty(),
        "the check sent {:?}",
        hook.received().len()
    );
}

#[test]
fn unmet_expectations_and_events_the_plugin_never_gets_are_findings() {
    let dir = Scratch::new("check-control-unmet");
    let spec = dir.write(
        "spec.yaml",
        "config: { events: [exited] }\ncalls:\n  - http: { path: /hello }\n    expect: { status: [201, 202], body_contains: [bye] }\n  - http: { path: /hello }\n    expect: { status: 2xx, body_contains: hello }\n  - event: { type: spawned, process: web }\n  - tick: {}\n",
    );
    let run = check(&[
        "--json".as_ref(),
        "--spec".as_ref(),
        spec.as_os_str(),
        probe().as_os_str(),
    ]);
    run.expect_code(1);
    let report = &json(&run)["reports"][0];
    assert!(
        has_finding(
            report,
            "expectation",
            "control-plugin `GET /hello` answered HTTP 200: hello;"
        ) && has_finding(
            report,
            "expectation",
            "calls[0] expects status one of 201, 202, a body containing `bye`"
        ),
        "{report}"
    );
    assert!(
        has_finding(
            report,
            "spec",
            "calls[2] feeds a `spawned` event, and the plugin's `init` subscribed to [exited] only"
        ),
        "{report}"
    );
    assert!(
        has_finding(report, "spec", "calls[3] asks for a tick"),
        "{report}"
    );
    assert_eq!(report["findings"].as_array().unwrap().len(), 3, "{report}");
}

#[test]
fn ungranted_control_calls_and_hosts_are_findings_in_json_and_sarif_granted_ones_are_listed() {
    let dir = Scratch::new("check-control-grants");
    let calls = "calls:\n  - http: { method: POST, path: /restart?p=web }\n    expect: { status: STATUS_R }\n  - http: { path: \"/fetch?url=http://hooks.example.com/x\" }\n    expect: { status: STATUS_F }\n";
    let bare = dir.write(
        "bare.yaml",
        &calls.replace("STATUS_R", "403").replace("STATUS_F", "502"),
    );
    let granted_spec = dir.write(
        "granted.yaml",
        &format!(
            "grants: {{ control: [restart], http: [hooks.example.com] }}\n{}",
            calls.replace("STATUS_R", "200").replace("STATUS_F", "200")
        ),
    );
    let args = |spec: &std::path::Path, format: &str| {
        check(&[
            "--format".as_ref(),
            format.as_ref(),
            "--spec".as_ref(),
            spec.as_os_str(),
            probe().as_os_str(),
        ])
    };
    let run = args(&bare, "json");
    run.expect_code(1);
    let report = &json(&run)["reports"][0];
    let restart = "tried the control call `restart`: not granted (grant it in `grants.control`)";
    let host = "tried an HTTP request to `hooks.example.com:80`: not granted";
    assert!(has_finding(report, "ungranted-access", restart), "{report}");
    assert!(has_finding(report, "ungranted-access", host), "{report}");
    assert_eq!(report["findings"].as_array().unwrap().len(), 2, "{report}");
    let sarif = json(args(&bare, "sarif").expect_code(1));
    let found = sarif_results(&sarif, "ungranted-access");
    assert_eq!(found.len(), 2);
    for (level, text) in &found {
        assert_eq!(level, "error");
        assert!(
            text.starts_with("plugin `control-probe` 0.1.0: tried "),
            "{text}"
        );
    }
    // The same calls, granted: no finding, and what they did is listed, in SARIF as information.
    let run = args(&granted_spec, "json");
    run.expect_code(0);
    let report = &json(&run)["reports"][0];
    assert_eq!(
        granted(report, "control"),
        ["restart [`web`]: recorded, not carried out"]
    );
    assert_eq!(
        granted(report, "http"),
        ["GET http://hooks.example.com/x: answered 200 by the check, not sent"]
    );
    let sarif = json(args(&granted_spec, "sarif").expect_code(0));
    assert!(sarif_results(&sarif, "ungranted-access").is_empty());
    let info = sarif_results(&sarif, "granted-access");
    assert_eq!(info.len(), 2, "{sarif}");
    assert!(info.iter().all(|(level, _)| level == "none"));
    assert!(info[0]
        .1
        .ends_with("control call restart [`web`]: recorded, not carried out"));
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    let index = sarif["runs"][0]["results"][0]["ruleIndex"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(rules[index]["id"], "granted-access");
}

#[test]
fn spec_files_that_do_not_fit_the_plugin_exit_2() {
    let dir = Scratch::new("check-control-misfit");
    let control = dir.write("control.yaml", "calls:\n  - tick: {}\n");
    check(&["--spec".as_ref(), control.as_os_str(), plugin("examples", "mem-guard").as_os_str()])
        .expect_code(2)
        .stderr_has("makes `http`, `event` or `tick` calls, which only control plugins take, and `mem-guard` is not one");
    let ready = dir.write(
        "ready.yaml",
        "calls:\n  - { ready_check: r, expect: ready }\n",
    );
    check(&["--spec".as_ref(), ready.as_os_str(), probe().as_os_str()])
        .expect_code(2)
        .stderr_has(
            "and `control-probe` is a control plugin; give it `http`, `event` and `tick` calls",
        );
    for (yaml, want) in [
        (
            "grants: { control: [restrat] }\n",
            "`grants.control`: `restrat` is not a control grant (known: ",
        ),
        (
            "grants: { http: [\"https://hooks.example.com\"] }\n",
            "`grants.http`: `https://hooks.example.com` is a URL; grant the host and port only",
        ),
        (
            "calls:\n  - event: { type: crashed, process: web }\n",
            "`calls[0]`: `event`: unknown variant `crashed`",
        ),
        (
            "calls:\n  - http: { path: /x, verb: GET }\n    expect: { status: 200 }\n",
            "unknown field `verb`",
        ),
        (
            "calls:\n  - tick: {}\n  - { stat_handler: s, expect: ok }\n",
            "`calls[1]`: this call is for another kind of plugin than the calls before it",
        ),
    ] {
        let spec = dir.write("bad.yaml", yaml);
        check(&["--spec".as_ref(), spec.as_os_str(), probe().as_os_str()])
            .expect_code(2)
            .stderr_has(want);
    }
}
