//! `plugin check` as a gate on what a plugin may reach and how it names itself: the capabilities
//! policy, attempts beyond the grants, the naming rule shared with `run` and `validate`, the WIT
//! version, and the CI recipe.

use serde_json::Value;

use crate::check::{check, example_spec, findings, has_finding, json, spec};
use crate::harness::{free_port, plugin, plugin_cache, Scratch};
use crate::support::{self, crate_dir};

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
    // Reading the environment is listed among the attempts, but is no finding (runtimes read it as
    // they start; without `allow_env` it is empty).
    assert!(
        report["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "environment"),
        "{report}"
    );
    assert!(
        !has_finding(report, "ungranted-access", "environment"),
        "{report}"
    );
    // What was granted is no finding, and nothing got through.
    assert!(
        !has_finding(report, "ungranted-access", "granted/data"),
        "{report}"
    );
    assert!(!has_finding(report, "expectation", ""), "{report}");
    assert!(!dir.join("granted/new").exists());
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
        "the version `1.0\\u{1b}[0m` is not 1 to 64 characters",
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
        f[0].1.contains("was built against `pilot:plugin@0.2.0`, but this pilot-host implements `pilot:plugin@0.1.1`"),
        "{}",
        f[0].1
    );
    check(&[plugin("wit", "wit-next-patch")]).expect_code(0);
    check(&[plugin("wit", "wit-prev-patch")]).expect_code(0);

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
        .stderr_has("wit-next-minor.wasm` was built against `pilot:plugin@0.2.0`, but this pilot-host implements `pilot:plugin@0.1.1`");

    // A plugin built against 0.1.2 runs: its ready strategy makes a process ready.
    let dir = Scratch::new("wit-patch");
    let plugins = crate::harness::plugin_dir(&dir, &[plugin("wit", "wit-next-patch")]);
    let m = crate::harness::manifest(
        &dir,
        "processes:\n  - { name: a, path: CHILD, ready_strategy: wit-next-patch }\n  - { name: b, path: CHILD, dependencies: [a] }\n",
    );
    let pilot = crate::harness::Pilot::run_with_plugins(&m, &plugins);
    pilot.wait_log("a: ready after", crate::harness::SOON);
    pilot.wait_log("b: started", crate::harness::SOON);
    drop(pilot);

    // One built against 0.1.0, before the control world was added, runs too.
    let dir = Scratch::new("wit-prev-patch");
    let plugins = crate::harness::plugin_dir(&dir, &[plugin("wit", "wit-prev-patch")]);
    let m = crate::harness::manifest(
        &dir,
        "processes:\n  - { name: a, path: CHILD, ready_strategy: wit-prev-patch }\n  - { name: b, path: CHILD, dependencies: [a] }\n",
    );
    let pilot = crate::harness::Pilot::run_with_plugins(&m, &plugins);
    pilot.wait_log("a: ready after", crate::harness::SOON);
    pilot.wait_log("b: started", crate::harness::SOON);
}

fn no_escapes(text: &str) {
    assert!(
        !text.contains('\x1b') && !text.contains('\x07'),
        "raw control characters printed:\n{}",
        text.escape_debug()
    );
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
