//! `pilot-host plugin check` as a CI gate: real calls from spec files, profiles and budgets, the
//! capabilities policy, attempts beyond the grants, the naming rule, WIT versions, the output formats
//! and exit codes.

use std::path::PathBuf;

use serde_json::Value;

use crate::harness::{free_port, plugin, plugin_cache, Scratch};
use crate::support::{self, crate_dir, Run};

/// Runs `pilot-host plugin check ARGS` with the tests' compile cache.
fn check<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let mut cmd = support::pilot_host();
    cmd.args(["plugin", "check"])
        .args(args)
        .env("PILOT_HOST_CACHE_DIR", plugin_cache())
        .env("RUST_LOG", "info");
    support::run(&mut cmd)
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout, run.stderr))
}

fn example_spec(name: &str) -> PathBuf {
    crate_dir()
        .join("../example-plugins")
        .join(name)
        .join("plugin-check.yaml")
}

fn findings(report: &Value) -> Vec<(String, String)> {
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

fn has_finding(report: &Value, rule: &str, needle: &str) -> bool {
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
    assert!(call("membomb")["profile"]["peak_memory"].as_u64().unwrap() > 16 << 20);
    assert_eq!(call("ok")["result"], "ready");
    // Its log lines carry its own name, not the command's.
    assert!(run.stderr.contains("plugin `hostile`: "), "{}", run.stderr);
    assert!(!run.stderr.contains("plugin `check`"), "{}", run.stderr);
}

/// Writes `yaml` as a spec file in `dir`; returns its path.
fn spec(dir: &Scratch, yaml: &str) -> PathBuf {
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
fn imports_outside_the_capabilities_policy_are_findings() {
    let http = plugin("examples", "http-ready");
    let spec_file = example_spec("http-ready");
    let base = |extra: &[&str]| {
        let mut a: Vec<std::ffi::OsString> =
            vec!["--json".into(), "--spec".into(), spec_file.clone().into()];
        a.extend(extra.iter().map(Into::into));
        a.push(http.clone().into());
        check(&a)
    };
    let run = base(&["--deny", "network"]);
    run.expect_code(1);
    let report = &json(&run)["reports"][0];
    assert!(
        has_finding(report, "capability", "imports `wasi:sockets/"),
        "{report}"
    );
    assert!(
        !has_finding(report, "capability", "wasi:filesystem"),
        "{report}"
    );
    // `--allow` lists what is allowed; the host interface and io always are.
    let run = base(&[
        "--allow", "clocks", "--allow", "network", "--allow", "stdio",
    ]);
    let report = &json(&run)["reports"][0];
    assert!(
        has_finding(report, "capability", "wasi:filesystem/"),
        "{report}"
    );
    assert!(
        has_finding(report, "capability", "wasi:cli/environment"),
        "{report}"
    );
    assert!(
        !has_finding(report, "capability", "wasi:sockets/"),
        "{report}"
    );
    assert!(
        !has_finding(report, "capability", "pilot:plugin"),
        "{report}"
    );
    // The same from a policy file.
    let dir = Scratch::new("check-policy");
    let policy = dir.write("policy.yaml", "deny: [files]\n");
    let run = base(&["--policy", policy.to_str().unwrap()]);
    assert!(has_finding(
        &json(&run)["reports"][0],
        "capability",
        "wasi:filesystem/"
    ));
    let bad = dir.write("bad.yaml", "deny: [disk]\n");
    base(&["--policy", bad.to_str().unwrap()])
        .expect_code(2)
        .stderr_has("policy file `")
        .stderr_has(
            "capabilities: host, io, stdio, exit, environment, clocks, random, files, network",
        );
    base(&["--allow", "disk"]).expect_code(2);
}

#[test]
fn every_access_beyond_the_grants_is_a_finding_naming_what_was_tried() {
    let dir = Scratch::new("check-escape");
    let port = free_port();
    std::fs::create_dir(dir.join("granted")).unwrap();
    std::fs::write(dir.join("granted/data"), "ok").unwrap();
    let s = spec(
        &dir,
        &format!(
            "plugin: probe\ngrants: {{ allow_read: [granted] }}\ncalls:\n  - {{ ready_check: escape, params: {{ port: {port} }}, expect: {{ not_yet: nothing got through }} }}\n  - {{ ready_check: read, params: {{ path: {}/granted/data }}, expect: {{ not_yet: 2 bytes }} }}\n  - {{ ready_check: write, params: {{ path: {}/granted/new }}, expect: {{ error: unavailable }} }}\n",
            dir.path().display(),
            dir.path().display()
        ),
    );
    let run = check(&[
        "--json".as_ref(),
        "--spec".as_ref(),
        s.as_os_str(),
        plugin("hostile", "probe").as_os_str(),
    ]);
    run.expect_code(1);
    let report = &json(&run)["reports"][0];
    for want in [
        "tried to open `/etc/passwd`: not granted",
        "tried to open `/proc/self/environ`: not granted",
        "tried to open `/`: not granted",
        "tried to read its environment: not granted",
        &format!("tried to connect to `127.0.0.1:{port}`: not granted"),
        "tried to use UDP with `",
        "tried to look up the host name `example.com`: never granted",
        &format!(
            "tried to change `{}/granted/new`: not granted for writing",
            dir.path().display()
        ),
    ] {
        assert!(
            has_finding(report, "ungranted-access", want),
            "{want}:\n{}",
            serde_json::to_string_pretty(&report["findings"]).unwrap()
        );
    }
    // What was granted is no finding, and nothing got through.
    assert!(
        !has_finding(report, "ungranted-access", "granted/data"),
        "{report}"
    );
    assert!(!has_finding(report, "expectation", ""), "{report}");
    assert!(!dir.join("granted/new").exists());
}

fn no_escapes(text: &str) {
    assert!(
        !text.contains('\x1b') && !text.contains('\x07'),
        "raw control characters printed:\n{}",
        text.escape_debug()
    );
}

#[test]
fn names_breaking_the_rule_are_refused_alike_by_check_run_and_validate() {
    let bad = plugin("hostile", "bad-names");
    let run = check(&[bad.as_os_str()]);
    run.expect_code(1);
    no_escapes(&run.stdout);
    no_escapes(&run.stderr);
    let expected = [
        "ready strategy `tcp` shadows the built-in one; rename it",
        "ready strategy `` is empty",
        "ready strategy `../etc` holds the path separator `/`",
        "lifecycle hook `two words` holds whitespace",
        "stat handler `red\\u{1b}[31m` holds the control character `\\u{1b}`",
        "the version `1.0\\u{1b}[0m`",
    ];
    for want in expected {
        assert!(run.stdout.contains(want), "{want}:\n{}", run.stdout);
    }
    let dir = Scratch::new("bad-names");
    let plugins = crate::harness::plugin_dir(&dir, &[bad]);
    let m = crate::harness::manifest(&dir, "processes:\n  - { name: a, path: CHILD }\n");
    for command in ["run", "validate"] {
        let mut cmd = support::pilot_host();
        cmd.args([
            command.as_ref(),
            m.as_os_str(),
            "--plugins".as_ref(),
            plugins.as_os_str(),
        ])
        .env("PILOT_HOST_CACHE_DIR", plugin_cache());
        let out = support::run(&mut cmd);
        out.expect_code(2);
        no_escapes(&out.stdout);
        no_escapes(&out.stderr);
        for want in expected {
            out.stderr_has(want);
        }
    }
}

#[test]
fn another_minor_version_of_the_wit_is_refused_naming_both_and_a_patch_version_loads() {
    let minor = plugin("wit", "wit-next-minor");
    let run = check(&["--json".as_ref(), minor.as_os_str()]);
    run.expect_code(1);
    let report = &json(&run)["reports"][0];
    let f = findings(report);
    assert_eq!(f.len(), 1, "one clear error: {f:?}");
    assert_eq!(f[0].0, "wit-version");
    assert!(
        f[0].1.contains("was built against `pilot:plugin@0.2.0`, but this pilot-host implements `pilot:plugin@0.1.0`"),
        "{}",
        f[0].1
    );
    check(&[plugin("wit", "wit-next-patch")]).expect_code(0);

    let dir = Scratch::new("wit-versions");
    let plugins = crate::harness::plugin_dir(&dir, &[minor]);
    let m = crate::harness::manifest(&dir, "processes:\n  - { name: a, path: CHILD }\n");
    let mut cmd = support::pilot_host();
    cmd.args([
        "validate".as_ref(),
        m.as_os_str(),
        "--plugins".as_ref(),
        plugins.as_os_str(),
    ])
    .env("PILOT_HOST_CACHE_DIR", plugin_cache());
    support::run(&mut cmd)
        .expect_code(2)
        .stderr_has("wit-next-minor.wasm` was built against `pilot:plugin@0.2.0`, but this pilot-host implements `pilot:plugin@0.1.0`");

    // A plugin built against 0.1.1 runs: its ready strategy makes a process ready.
    let dir = Scratch::new("wit-patch");
    let plugins = crate::harness::plugin_dir(&dir, &[plugin("wit", "wit-next-patch")]);
    let m = crate::harness::manifest(
        &dir,
        "processes:\n  - { name: a, path: CHILD, ready_strategy: wit-next-patch }\n  - { name: b, path: CHILD, dependencies: [a] }\n",
    );
    let pilot = crate::harness::Pilot::run_with_plugins(&m, &plugins);
    pilot.wait_log("a: ready after", crate::harness::SOON);
    pilot.wait_log("b: started", crate::harness::SOON);
}

#[test]
fn sarif_lists_every_finding_under_its_rule() {
    // Under production limits every hostile export fails the same way each time (with a short
    // deadline, the log flood finishes or not depending on the machine's load).
    let hostile = plugin("hostile", "hostile");
    let args = |format: &str| check(&["--format".as_ref(), format.as_ref(), hostile.as_os_str()]);
    let sarif = json(args("sarif").expect_code(1));
    let doc = json(args("json").expect_code(1));
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

/// The CI recipe's Rust job, run as its steps say (the `uses:` steps are the CI service's own).
#[test]
fn the_ci_recipe_gates_a_rust_plugin() {
    let recipe = crate_dir().join("../docs/ci/plugin-check.yml");
    let text = std::fs::read_to_string(&recipe).unwrap();
    let workflow: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let steps = workflow["jobs"]["rust"]["steps"].as_sequence().unwrap();
    let scripts: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    assert!(scripts.len() >= 3, "{scripts:?}");
    let root = crate_dir().parent().unwrap();
    let out = Scratch::new("ci-recipe");
    for script in scripts {
        let mut cmd = std::process::Command::new("bash");
        cmd.args(["-euo", "pipefail", "-c", script])
            .current_dir(root)
            .env("PLUGIN", "file-ready")
            .env("PLUGIN_DIR", "example-plugins/file-ready")
            .env("PILOT_HOST", env!("CARGO_BIN_EXE_pilot-host"))
            .env("PILOT_HOST_CACHE_DIR", plugin_cache())
            .env("REPORT_DIR", out.path());
        support::run(&mut cmd).expect_code(0);
    }
    let sarif: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plugin-check.sarif")).unwrap())
            .unwrap();
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 0);
    for lang in ["c", "python", "js"] {
        assert!(
            workflow["jobs"][lang].is_mapping() || text.contains(&format!("# {lang}:")),
            "the recipe keeps a place for `{lang}`"
        );
    }
}
