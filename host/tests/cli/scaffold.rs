//! `pilot-host plugin new`: projects in every language, made outside this repository, built with the
//! toolchains `cargo xtask plugins` installs, passing `plugin check`, and running their manifest; bad
//! input writes nothing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{Pilot, Scratch, SOON};
use crate::support::{pilot_host, run, Run};

/// How long one build may take on a busy 2-core machine (Rust and JavaScript take the longest).
const BUILD: Duration = Duration::from_secs(600);

fn target() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pilot-host"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf()
}

/// The toolchains folder, which `cargo xtask plugins` fills.
fn toolchains() -> PathBuf {
    let dir = target().join("toolchains");
    assert!(
        dir.join("python/bin/componentize-py").exists() && dir.join("bin/wit-bindgen").exists(),
        "the guest toolchains in {} are missing: run `cargo xtask plugins` (or `cargo xtask test`)",
        dir.display()
    );
    dir
}

fn new_plugin(args: &[&str], cwd: &Path) -> Run {
    let mut cmd = pilot_host();
    cmd.current_dir(cwd).args(["plugin", "new"]).args(args);
    run(&mut cmd)
}

/// Runs `sh build.sh` in `project` with the installed toolchains on PATH, within [`BUILD`].
fn build(project: &Path) -> Run {
    let tools = toolchains();
    let mut path = OsString::from(tools.join("bin"));
    path.push(":");
    path.push(tools.join("python/bin"));
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let mut cmd = Command::new("sh");
    cmd.arg("build.sh")
        .current_dir(project)
        .env("PATH", path)
        .env("PILOT_JS_TOOLCHAIN", tools.join("js"))
        // Rust projects share one target folder, so the SDK's dependencies build once.
        .env("CARGO_TARGET_DIR", target().join("scaffold-rust"));
    run_within(&mut cmd, BUILD)
}

/// Like [`run`], with a longer deadline.
fn run_within(cmd: &mut Command, deadline: Duration) -> Run {
    let command = format!("{cmd:?}");
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(output) = rx.recv_timeout(deadline) else {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        panic!("`{command}` did not finish within {deadline:?}");
    };
    let output = output.unwrap();
    Run {
        command,
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Scaffolds `name` in `lang` and `kind` into a fresh folder outside the repository, builds it, checks
/// it with `plugin check` and validates its manifest; returns the project.
fn scaffold_build_check(dir: &Scratch, name: &str, lang: &str, kind: &str) -> PathBuf {
    new_plugin(&[name, "--lang", lang, "--kind", kind], dir.path())
        .expect_code(0)
        .stdout_has(&format!("plugin `{name}` in `{name}`"));
    let project = dir.join(name);
    build(&project).expect_code(0);
    // The command README.md gives: in the project folder, which reads `plugin-check.yaml` beside
    // the `.wasm` (every ready and control project but JavaScript's ready one has one).
    let wasm = format!("{name}.wasm");
    let check = run_within(
        pilot_host()
            .current_dir(&project)
            .args(["plugin", "check", "--json", &wasm]),
        Duration::from_secs(300),
    );
    let report: serde_json::Value = serde_json::from_str(&check.stdout)
        .unwrap_or_else(|e| panic!("{lang} {kind}: not JSON ({e}): {check:?}"));
    assert_eq!(
        (check.code, &report["findings_total"]),
        (0, &serde_json::json!(0)),
        "{lang} {kind}: {}\n{}",
        check.stdout,
        check.stderr
    );
    let calls = report["reports"][0]["calls"].as_array().unwrap();
    let spec_calls = calls.iter().filter(|c| c["source"] == "spec").count();
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("pilot-host plugin check {wasm} ")),
        "{readme}"
    );
    if kind == "control" || (kind == "ready" && lang != "js") {
        assert!(
            spec_calls >= 2,
            "{lang} {kind}: plugin-check.yaml was not run: {calls:?}"
        );
    } else {
        assert_eq!(spec_calls, 0, "{lang} {kind}: {calls:?}");
    }
    let manifest = project.join("manifest.yaml");
    let mut validate = Pilot::start(&[
        "validate".as_ref(),
        manifest.as_os_str(),
        "--plugins".as_ref(),
        project.as_os_str(),
    ]);
    assert_eq!(
        validate.wait_exit(Duration::from_secs(300)).code(),
        Some(0),
        "{lang} {kind}: {}",
        validate.stderr_text()
    );
    project
}

/// Runs the ready-kind project's manifest until its `demo` process is ready by the plugin.
fn runs_ready(project: &Path) {
    let pilot = Pilot::run_with_plugins(&project.join("manifest.yaml"), project);
    pilot.wait_log("demo: ready after", SOON);
    pilot.wait_log("after-demo: started", SOON);
}

/// Runs the control-kind project's manifest and asks its plugin's `path` over the socket until the
/// answer holds `want`; returns that answer.
fn runs_control(dir: &Scratch, project: &Path, name: &str, path: &str, want: &str) -> String {
    let runtime = crate::controlkit::runtime_dir(dir);
    let manifest = project.join("manifest.yaml");
    let pilot = Pilot::start_env(
        &[
            "run".as_ref(),
            manifest.as_os_str(),
            "--plugins".as_ref(),
            project.as_os_str(),
        ],
        &[("XDG_RUNTIME_DIR", runtime.as_os_str())],
    );
    pilot.wait_log("demo: started", SOON);
    // `demo` runs a second at a time: ask until an answer finds it as wanted.
    let mut last = String::new();
    crate::harness::wait_until(&format!("the plugin's {path} answers {want}"), SOON, || {
        let out = run(pilot_host()
            .env("XDG_RUNTIME_DIR", &runtime)
            .args(["ctl", "--manifest"])
            .arg(&manifest)
            .args(["plugin", name, path]));
        last = format!("{}{}", out.stdout, out.stderr);
        out.code == 0 && out.stdout.contains(want)
    });
    assert!(last.contains(want), "{last}");
    last
}

fn every_kind(lang: &str, kinds: &[&str]) {
    let dir = Scratch::new(&format!("new-{lang}"));
    for kind in kinds {
        let name = format!("my-{lang}-{kind}");
        let project = scaffold_build_check(&dir, &name, lang, kind);
        match *kind {
            "ready" => runs_ready(&project),
            "control" => {
                runs_control(&dir, &project, &name, "/health", "all up");
            }
            _ => {}
        }
    }
}

#[test]
fn a_new_rust_plugin_builds_and_passes_the_check() {
    every_kind("rust", &["ready", "hook", "stats", "control"]);
}

#[test]
fn a_new_c_plugin_builds_and_passes_the_check() {
    every_kind("c", &["ready", "hook", "stats"]);
}

/// C and JavaScript control projects: built, passing `plugin check` with their `plugin-check.yaml`
/// (which grants `read`), and serving `GET /` (the processes as JSON)
/// through `pilot-host run` and `ctl plugin`.
#[test]
fn a_new_c_and_javascript_control_plugin_serves_its_processes() {
    let dir = Scratch::new("new-control");
    for lang in ["c", "js"] {
        let name = format!("my-{lang}-ctl");
        let project = scaffold_build_check(&dir, &name, lang, "control");
        let answer = runs_control(&dir, &project, &name, "/", r#""demo""#);
        let value: serde_json::Value = serde_json::from_str(answer.trim())
            .unwrap_or_else(|e| panic!("{lang}: `GET /` is not JSON ({e}): {answer}"));
        let demo = &value["processes"][0];
        assert_eq!(demo["name"], "demo", "{answer}");
        assert!(
            demo["phase"].is_string() && demo["up"].is_boolean(),
            "{answer}"
        );
    }
}

#[test]
fn a_new_python_plugin_builds_and_passes_the_check() {
    every_kind("python", &["ready", "hook", "stats", "control"]);
}

#[test]
fn a_new_javascript_plugin_builds_and_passes_the_check() {
    every_kind("js", &["ready", "hook", "stats"]);
}

/// Lists everything under `dir`, for comparing before and after.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        all.push(entry.path());
        if entry.path().is_dir() {
            all.extend(listing(&entry.path()));
        }
    }
    all.sort();
    all
}

#[test]
fn bad_input_is_refused_with_exit_2_and_nothing_written() {
    let dir = Scratch::new("new-bad");
    dir.write("taken/notes.txt", "mine");
    let before = listing(dir.path());
    let cases: [(&[&str], &str); 6] = [
        (
            &["ok", "--kind", "dashboard"],
            "invalid value 'dashboard' for '--kind <KIND>'",
        ),
        (
            &["taken", "--lang", "c"],
            "folder `taken` already exists and is not empty; choose another with `--dir`",
        ),
        (
            &["x", "--lang", "c", "--dir", "taken"],
            "folder `taken` already exists and is not empty",
        ),
        (
            &["My Plugin", "--lang", "rust"],
            "plugin name `My Plugin` is invalid: it must start with a lowercase letter",
        ),
        (
            &["tcp", "--lang", "js"],
            "name of a built-in ready strategy",
        ),
        (
            &["ok", "--lang", "go"],
            "invalid value 'go' for '--lang <LANG>'",
        ),
    ];
    for (args, want) in cases {
        new_plugin(args, dir.path()).expect_code(2).stderr_has(want);
        assert_eq!(listing(dir.path()), before, "{args:?} wrote something");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("taken/notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn an_empty_folder_is_used_and_the_project_is_complete() {
    let dir = Scratch::new("new-empty");
    std::fs::create_dir(dir.join("here")).unwrap();
    new_plugin(&["disk-ready", "--lang", "c", "--dir", "here"], dir.path()).expect_code(0);
    for file in [
        "disk_ready.c",
        "build.sh",
        "manifest.yaml",
        "README.md",
        "sdk/pilot_plugin_sdk.h",
        "sdk/wit/plugin.wit",
        "sdk/wasi_snapshot_preview1.reactor.wasm",
    ] {
        assert!(dir.join("here").join(file).is_file(), "{file} is missing");
    }
    let source = std::fs::read_to_string(dir.join("here/disk_ready.c")).unwrap();
    assert!(
        source.contains(r#"STRATEGIES[] = {"disk-ready", NULL}"#),
        "{source}"
    );
}

#[test]
fn a_missing_toolchain_is_named_with_the_fix_and_exit_2() {
    let dir = Scratch::new("new-notools");
    new_plugin(&["c-ctl", "--lang", "c", "--kind", "control"], dir.path()).expect_code(0);
    new_plugin(&["js-ctl", "--lang", "js", "--kind", "control"], dir.path()).expect_code(0);
    // No wit-bindgen on PATH (only the system's folders).
    let mut c = Command::new("sh");
    c.arg("build.sh")
        .current_dir(dir.join("c-ctl"))
        .env("PATH", "/usr/bin:/bin");
    run_within(&mut c, Duration::from_secs(60))
        .expect_code(2)
        .stderr_has("`wit-bindgen` is missing; install it (see README.md");
    // No componentize-js anywhere it is looked for.
    let empty = dir.join("no-toolchain");
    std::fs::create_dir(&empty).unwrap();
    let mut js = Command::new("sh");
    js.arg("build.sh")
        .current_dir(dir.join("js-ctl"))
        .env("PILOT_JS_TOOLCHAIN", &empty);
    run_within(&mut js, Duration::from_secs(60))
        .expect_code(2)
        .stderr_has("@bytecodealliance/componentize-js is not installed")
        .stderr_has("run `npm install` in this folder");
    assert!(!dir.join("c-ctl/c-ctl.wasm").exists() && !dir.join("js-ctl/js-ctl.wasm").exists());
}
