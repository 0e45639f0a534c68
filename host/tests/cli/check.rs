//! `pilot-host plugin check` as a CI gate: real calls from spec files, profiles and budgets, the
//! output formats and exit codes (what a plugin may reach and how it names itself: `check_trust.rs`).

use std::path::PathBuf;

use serde_json::Value;

use crate::harness::{plugin, plugin_cache, Scratch};
use crate::support::{self, crate_dir, Run};

/// Runs `pilot-host plugin check ARGS` with the tests' compile cache.
pub(crate) fn check<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let mut cmd = support::pilot_host();
    cmd.args(["plugin", "check"])
        .args(args)
        .env("PILOT_HOST_CACHE_DIR", plugin_cache())
        .env("RUST_LOG", "info");
    support::run(&mut cmd)
}

pub(crate) fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout, run.stderr))
}

pub(crate) fn example_spec(name: &str) -> PathBuf {
    crate_dir()
        .join("../example-plugins")
        .join(name)
        .join("plugin-check.yaml")
}

pub(crate) fn findings(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub(crate) fn has_finding(report: &Value, rule: &str, needle: &str) -> bool {
    findings(report)
        .iter()
        .any(|(r, m)| r == rule && m.contains(needle))
}

#[test]
fn the_examples_pass_their_specs_with_a_profile_of_every_call() {
    let mut args: Vec<PathBuf> = vec!["--json".into()];
    for name in ["http-ready", "file-ready", "mem-guard", "event-log"] {
        args.extend(["--spec".into(), example_spec(name)]);
    }
    for name in ["http-ready", "file-ready", "mem-guard", "event-log"] {
        args.push(plugin("examples", name));
    }
    let run = check(&args);
    run.expect_code(0);
    let doc = json(&run);
    assert_eq!(doc["schema"], "pilot-host/plugin-check");
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["findings_total"], 0);
    let reports = doc["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 4);
    for r in reports {
        let t = &r["timings"];
        for key in ["compile_ms", "cache_load_ms", "fresh_instance_ms"] {
            assert!(t[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {t}");
        }
        assert!(r["size_bytes"].as_u64().unwrap() > 10_000);
        let spec_calls: Vec<&Value> = r["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["source"] == "spec")
            .collect();
        assert!(spec_calls.len() >= 2, "{}", r["name"]);
        for c in &spec_calls {
            assert_eq!(c["ok"], true, "{c}");
            let p = &c["profile"];
            assert!(p["fuel"].as_u64().unwrap() > 0, "{c}");
            assert!(p["peak_memory"].as_u64().unwrap() > 0, "{c}");
            assert!(p["ms"].as_f64().unwrap() > 0.0, "{c}");
        }
    }
    let mem_guard = reports.iter().find(|r| r["name"] == "mem-guard").unwrap();
    let results: Vec<&str> = mem_guard["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source"] == "spec")
        .map(|c| c["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        ["no actions", "actions [restart `leaky`]", "no actions"],
        "the spec's calls run in order on one instance"
    );
}

#[test]
fn a_configuration_init_refuses_is_a_finding_not_a_pass() {
    let run = check(&[
        "--json".as_ref(),
        plugin("examples", "mem-guard").as_os_str(),
    ]);
    run.expect_code(1);
    let doc = json(&run);
    assert!(
        has_finding(
            &doc["reports"][0],
            "init",
            "`config.max_rss_mib` is required"
        ),
        "{}",
        run.stdout
    );
    // With a configuration, the same plugin passes.
    let run = check(&[
        "--config".as_ref(),
        r#"{"max_rss_mib": 100}"#.as_ref(),
        plugin("examples", "mem-guard").as_os_str(),
    ]);
    run.expect_code(0);
}

#[test]
fn each_hostile_export_fails_with_its_own_kind_of_error() {
    let hostile = plugin("hostile", "hostile");
    let run = check(&[
        "--json".as_ref(),
        "--timeout-ms".as_ref(),
        "300".as_ref(),
        hostile.as_os_str(),
    ]);
    run.expect_code(1);
    let doc = json(&run);
    let calls = doc["reports"][0]["calls"].as_array().unwrap().clone();
    let call = |name: &str| {
        calls
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no call {name}"))
            .clone()
    };
    let spin = call("spin")["result"].as_str().unwrap().to_string();
    assert!(
        spin.contains("ran past its 300 ms deadline") || spin.contains("ran out of fuel"),
        "{spin}"
    );
    for (name, want) in [
        ("sleep", "did not return within its 300 ms limit"),
        ("panic", "panicked"),
        ("huge", "passed more than 1024 KiB"),
        ("recurse", "accessed memory out of bounds"),
    ] {
        let c = call(name);
        assert_eq!(c["ok"], false, "{name}");
        assert!(c["result"].as_str().unwrap().contains(want), "{name}: {c}");
        assert!(
            has_finding(
                &doc["reports"][0],
                "call-failed",
                &format!("`{name}` {want}")
            ),
            "{name}: {}",
            run.stdout
        );
    }
    // Filling 64 MiB may outlast the deadline on a busy machine: the cap or the deadline stops it.
    let membomb = call("membomb")["result"].as_str().unwrap().to_string();
    assert!(
        membomb.contains("hit its memory cap of 64 MiB") || membomb.contains("deadline"),
        "{membomb}"
    );
    for name in ["spin", "sleep"] {
        let ms = call(name)["profile"]["ms"].as_f64().unwrap();
        assert!(ms < 350.0, "{name} stopped {ms} ms into a 300 ms deadline");
    }
    // The peak shows the growth: past 16 MiB when the cap stopped it; a starved run may meet its
    // deadline sooner, having grown less.
    let peak = call("membomb")["profile"]["peak_memory"].as_u64().unwrap();
    let want = if membomb.contains("memory cap") {
        16 << 20
    } else {
        1 << 20
    };
    assert!(peak > want, "membomb peak {peak} bytes ({membomb})");
    assert_eq!(call("ok")["result"], "ready");
    // Its log lines carry its own name, not the command's.
    assert!(run.stderr.contains("plugin `hostile`: "), "{}", run.stderr);
    assert!(!run.stderr.contains("plugin `check`"), "{}", run.stderr);
}

/// Writes `yaml` as a spec file in `dir`; returns its path.
pub(crate) fn spec(dir: &Scratch, yaml: &str) -> PathBuf {
    dir.write("plugin-check.yaml", yaml)
}

#[test]
fn a_spec_call_answering_otherwise_is_a_finding_naming_the_call() {
    let dir = Scratch::new("check-spec-mismatch");
    let s = spec(
        &dir,
        "plugin: mem-guard\nconfig: { max_rss_mib: 1, samples: 2 }\ncalls:\n  - { stat_handler: mem-guard, samples: [{ name: a, rss_bytes: 9000000 }], expect: { actions: [{ restart: a }] } }\n  - { ready_check: nope, expect: ready }\n",
    );
    let run = check(&[
        "--json".as_ref(),
        "--spec".as_ref(),
        s.as_os_str(),
        plugin("examples", "mem-guard").as_os_str(),
    ]);
    run.expect_code(1);
    let report = &json(&run)["reports"][0];
    assert!(
        has_finding(
            report,
            "expectation",
            "stat-handler `mem-guard` answered no actions; "
        ),
        "{report}"
    );
    assert!(
        has_finding(
            report,
            "expectation",
            "calls[0] expects actions [restart `a`]"
        ),
        "{report}"
    );
    assert!(
        has_finding(
            report,
            "spec",
            "calls[1] calls ready-strategy `nope`, which the plugin does not provide"
        ),
        "{report}"
    );
}

#[test]
fn a_spec_beside_the_plugin_is_found_without_being_named() {
    let dir = Scratch::new("check-spec-beside");
    let wasm = dir.join("mem-guard.wasm");
    std::fs::copy(plugin("examples", "mem-guard"), &wasm).unwrap();
    spec(
        &dir,
        "config: { max_rss_mib: 1, samples: 1 }\ncalls:\n  - { stat_handler: mem-guard, samples: [{ name: a, rss_bytes: 9000000 }], expect: { actions: [{ stop: a }] } }\n",
    );
    let run = check(&["--json".as_ref(), wasm.as_os_str()]);
    run.expect_code(1);
    assert!(
        has_finding(
            &json(&run)["reports"][0],
            "expectation",
            "expects actions [stop `a`]"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn budgets_turn_overruns_into_findings() {
    let args = |extra: &[&str]| {
        let mut a: Vec<std::ffi::OsString> = vec!["--json".into(), "--spec".into()];
        a.push(example_spec("mem-guard").into());
        a.extend(extra.iter().map(Into::into));
        a.push(plugin("examples", "mem-guard").into());
        a
    };
    let run = check(&args(&[
        "--max-fuel",
        "1000",
        "--max-memory-mib",
        "1",
        "--max-size-mib",
        "0.1",
        "--max-ms",
        "0.001",
    ]));
    run.expect_code(1);
    let report = &json(&run)["reports"][0];
    for want in [
        "fuel, over the budget of 1000 (`--max-fuel`)",
        "MiB of linear memory, over the budget of 1 (`--max-memory-mib`)",
        "over the budget of 0.1 MiB (`--max-size-mib`)",
        "ms, over the budget of 0.001 (`--max-ms`)",
    ] {
        assert!(has_finding(report, "budget", want), "{want}: {report}");
    }
    check(&args(&[
        "--max-fuel",
        "1000000000",
        "--max-memory-mib",
        "64",
    ]))
    .expect_code(0);
}

#[test]
fn sarif_lists_every_finding_under_its_rule() {
    // Under production limits every hostile export fails the same way each time (with a short
    // deadline, the log flood finishes or not depending on the machine's load).
    let hostile = plugin("hostile", "hostile");
    let args = |format: &str| check(&["--format".as_ref(), format.as_ref(), hostile.as_os_str()]);
    // The two formats come from two runs: on a loaded machine a hostile call can end at its
    // deadline in one run and at its own failure in the other, so take a pair that saw the same.
    let (sarif, doc) = (0..3)
        .map(|_| {
            (
                json(args("sarif").expect_code(1)),
                json(args("json").expect_code(1)),
            )
        })
        .find(|(sarif, doc)| {
            sarif["runs"][0]["results"].as_array().map(Vec::len)
                == doc["findings_total"].as_u64().map(|n| n as usize)
        })
        .unwrap_or_else(|| {
            (
                json(args("sarif").expect_code(1)),
                json(args("json").expect_code(1)),
            )
        });
    assert_eq!(sarif["version"], "2.1.0");
    assert!(sarif["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "pilot-host plugin check");
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let results = run["results"].as_array().unwrap();
    assert_eq!(
        results.len() as u64,
        doc["findings_total"].as_u64().unwrap()
    );
    for r in results {
        let rule = r["ruleId"].as_str().unwrap();
        assert_eq!(rules[r["ruleIndex"].as_u64().unwrap() as usize], rule);
        assert_eq!(r["level"], "error");
        assert!(r["message"]["text"]
            .as_str()
            .unwrap()
            .starts_with("plugin `hostile` 0.1.0: "));
        let uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .unwrap();
        assert!(
            uri.ends_with("/hostile.wasm") && uri.starts_with("file:///"),
            "{uri}"
        );
    }
    assert_eq!(
        run["artifacts"][0]["length"],
        doc["reports"][0]["size_bytes"]
    );
}

#[test]
fn unreadable_inputs_exit_2_and_check_nothing() {
    let dir = Scratch::new("check-unreadable");
    let mem_guard = plugin("examples", "mem-guard");
    check(&[dir.join("missing.wasm")])
        .expect_code(2)
        .stderr_has("missing.wasm");
    check(&[dir.path()])
        .expect_code(2)
        .stderr_has("is not a file");
    check(&["--config".as_ref(), "{".as_ref(), mem_guard.as_os_str()])
        .expect_code(2)
        .stderr_has("`--config` is not JSON");
    let bad = dir.write("bad.yaml", "calls: [{ ready_check: r, expect: soon }]\n");
    check(&["--spec".as_ref(), bad.as_os_str(), mem_guard.as_os_str()])
        .expect_code(2)
        .stderr_has("`calls[0]`: `expect` is `\"soon\"`");
    let other = dir.write("other.yaml", "plugin: nobody\ncalls: []\n");
    check(&["--spec".as_ref(), other.as_os_str(), mem_guard.as_os_str()])
        .expect_code(2)
        .stderr_has(
            "is for plugin `nobody`, and none of the files checked is (they are: mem-guard)",
        );
}

#[test]
fn a_file_that_is_not_a_component_is_a_finding() {
    let dir = Scratch::new("check-not-component");
    let file = dir.write("x.wasm", "not wasm at all");
    let run = check(&["--json".as_ref(), file.as_os_str()]);
    run.expect_code(1);
    assert!(has_finding(
        &json(&run)["reports"][0],
        "unreadable",
        "is not a WebAssembly component"
    ));
}

/// Asserts that `got` has the keys of `want` (objects, recursively; arrays by their first item).
fn same_shape(want: &Value, got: &Value, at: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            let (wk, gk): (Vec<&String>, Vec<&String>) = (w.keys().collect(), g.keys().collect());
            assert_eq!(wk, gk, "the keys at `{at}` differ from the documented ones");
            for (k, v) in w {
                same_shape(v, &g[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(w), Value::Array(g)) if !w.is_empty() && !g.is_empty() => {
            same_shape(&w[0], &g[0], &format!("{at}[0]"))
        }
        _ => {}
    }
}

#[test]
fn the_json_output_has_the_documented_shape() {
    let doc = std::fs::read_to_string(crate_dir().join("../docs/plugin-check.md")).unwrap();
    let example = doc
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a JSON example in docs/plugin-check.md");
    let example: Value = serde_json::from_str(&example.replace('…', "")).unwrap();
    let run = check(&["--json".as_ref(), plugin("hostile", "hostile").as_os_str()]);
    run.expect_code(1);
    same_shape(&example, &json(&run), "");
}
