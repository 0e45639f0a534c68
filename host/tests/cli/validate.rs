//! `pilot-host validate`: start order on success, every problem and exit 2 on bad input.

use crate::support::{fixture, normalize, pilot_host, run, Scratch};

#[test]
fn valid_manifest_exits_0_and_prints_start_order_by_level() {
    let out = run(pilot_host().args(["validate", "tests/fixtures/valid/everything.yaml"]));
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        "manifest `tests/fixtures/valid/everything.yaml` is valid: 4 processes in 3 start levels\n\
         \x20 level 1: db, queue\n\
         \x20 level 2: api\n\
         \x20 level 3: web\n"
    );
}

#[test]
fn levels_group_processes_whose_dependencies_are_all_in_earlier_levels() {
    let dir = Scratch::new("diamond");
    let server = fixture("bin/server");
    let manifest = dir.write(
        "diamond.yaml",
        &format!(
            "processes:\n\
             \x20 - {{ name: web, path: {s}, dependencies: [api, worker] }}\n\
             \x20 - {{ name: api, path: {s}, dependencies: [db, cache] }}\n\
             \x20 - {{ name: worker, path: {s}, dependencies: [db] }}\n\
             \x20 - {{ name: db, path: {s} }}\n\
             \x20 - {{ name: cache, path: {s} }}\n",
            s = server.display()
        ),
    );
    let out = run(pilot_host().arg("validate").arg(&manifest));
    out.expect_code(0)
        .stdout_has("is valid: 5 processes in 3 start levels\n")
        .stdout_has("  level 1: db, cache\n  level 2: api, worker\n  level 3: web\n");
}

#[test]
fn invalid_manifest_exits_2_and_lists_every_problem() {
    for name in [
        "many-errors-mixed.yaml",
        "many-errors-processes.json",
        "many-errors-cross.yml",
    ] {
        let relative = format!("tests/fixtures/invalid/{name}");
        let out = run(pilot_host().args(["validate", &relative]));
        out.expect_code(2);
        let golden = std::fs::read_to_string(fixture(&format!("invalid/{name}.err"))).unwrap();
        assert_eq!(normalize(&out.stderr), format!("error: {golden}"), "{name}");
        assert_eq!(out.stdout, "", "{name}: nothing on stdout");
    }
}

#[test]
fn every_invalid_fixture_exits_2_with_an_error() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixture("invalid")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "err") {
            continue;
        }
        let out = run(pilot_host().arg("validate").arg(&path));
        out.expect_code(2).stderr_has("error: ");
        checked += 1;
    }
    assert!(
        checked >= 36,
        "want at least 36 invalid fixtures, got {checked}"
    );
}

#[test]
fn missing_manifest_exits_2() {
    let dir = Scratch::new("missing");
    let missing = dir.join("nowhere.yaml");
    let out = run(pilot_host().arg("validate").arg(&missing));
    out.expect_code(2)
        .stderr_has(&format!("cannot read manifest `{}`", missing.display()));
}

/// Runs `validate` and `run` on `path`: both must exit 2 with `message` printed once, starting nothing.
fn unreadable(path: &std::path::Path, message: &str) {
    for command in ["validate", "run"] {
        let out = run(pilot_host().arg(command).arg(path));
        out.expect_code(2).stderr_has(message);
        assert_eq!(
            out.stderr.matches(message).count(),
            1,
            "`{command}` printed it more than once:\n{}",
            out.stderr
        );
        assert!(!out.stderr.contains("started, pid"), "{}", out.stderr);
    }
}

#[test]
fn a_folder_a_fifo_non_utf8_text_and_a_huge_file_are_refused_with_exit_2() {
    let dir = Scratch::new("unreadable");
    let folder = dir.join("x.yaml");
    std::fs::create_dir(&folder).unwrap();
    unreadable(
        &folder,
        &format!(
            "manifest `{}` is a folder, not a regular file; give the path of the manifest file",
            folder.display()
        ),
    );

    // A FIFO is refused at once, not read forever (nothing ever writes to this one).
    let fifo = dir.join("fifo.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    unreadable(
        &fifo,
        &format!(
            "manifest `{}` is a FIFO, not a regular file",
            fifo.display()
        ),
    );

    let latin1 = dir.write(
        "latin1.yaml",
        "processes:\n  - { name: caf\u{e9}, path: /bin/true }\n",
    );
    std::fs::write(
        &latin1,
        b"processes:\n  - { name: caf\xe9, path: /bin/true }\n",
    )
    .unwrap();
    unreadable(
        &latin1,
        &format!(
            "manifest `{}` is not UTF-8 text (line 2, column 16 holds an invalid byte); save it as UTF-8",
            latin1.display()
        ),
    );

    let huge = dir.join("huge.yaml");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(pilot_host::manifest::MAX_MANIFEST_BYTES + 1)
        .unwrap();
    unreadable(
        &huge,
        &format!(
            "manifest `{}` is 4194305 bytes, above the limit of 4194304 bytes",
            huge.display()
        ),
    );
}

#[test]
fn plugins_folder_that_does_not_exist_exits_2() {
    let dir = Scratch::new("no-plugins");
    let plugins = dir.join("plugins");
    let out = run(pilot_host()
        .args(["validate", "tests/fixtures/valid/minimal.json", "--plugins"])
        .arg(&plugins));
    out.expect_code(2).stderr_has(&format!(
        "plugin folder `{}` does not exist; pass an existing folder to `--plugins`",
        plugins.display()
    ));
}

#[test]
fn plugins_folder_that_exists_is_read_and_its_plugins_count() {
    // The manifest names the ready strategy of the plugin in the folder: it validates only because
    // the folder was read and the plugin loaded.
    let dir = Scratch::new("plugins");
    let plugins =
        crate::harness::plugin_dir(&dir, &[crate::harness::plugin("examples", "file-ready")]);
    let manifest = dir.write(
        "m.yaml",
        &format!(
            "processes:\n  - {{ name: solo, path: {}, ready_strategy: file-ready, ready_params: {{ path: /tmp/x }} }}\n",
            fixture("bin/server").display()
        ),
    );
    let out = run(pilot_host()
        .arg("validate")
        .arg(&manifest)
        .arg("--plugins")
        .arg(&plugins));
    out.expect_code(0).stdout_has("level 1: solo\n");
    let without = run(pilot_host().arg("validate").arg(&manifest));
    without.expect_code(2).stderr_has("file-ready");
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run(pilot_host()
        .arg("validate")
        .arg(&manifest)
        .arg("--plugins")
        .arg(&empty));
    out.expect_code(2).stderr_has("file-ready");
}

#[test]
fn warnings_are_printed_and_do_not_fail_validation() {
    let dir = Scratch::new("warnings");
    let manifest = dir.write(
        "warn.yaml",
        &format!(
            "processes:\n\
             \x20 - {{ name: db, path: {s} }}\n\
             \x20 - {{ name: api, path: {s}, dependencies: [db, db], affinity: [0, 0] }}\n",
            s = fixture("bin/server").display()
        ),
    );
    let out = run(pilot_host().arg("validate").arg(&manifest));
    out.expect_code(0)
        .stderr_has("warning: process `api`, `dependencies`: `db` is listed twice\n")
        .stderr_has("warning: process `api`, `affinity`: lists a CPU more than once\n")
        .stdout_has("level 2: api\n");
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let out = run(pilot_host().args(["validate", "tests/fixtures/invalid/yaml-syntax-error.yaml"]));
    out.expect_code(2)
        .stderr_has("yaml-syntax-error.yaml:6:12: invalid YAML: did not find expected ',' or ']'");
    let out = run(pilot_host().args([
        "validate",
        "tests/fixtures/invalid/json-error-after-comment.json",
    ]));
    out.expect_code(2)
        .stderr_has("json-error-after-comment.json:7:3: invalid JSON: trailing comma");
}

#[test]
fn unsupported_extension_exits_2() {
    let out = run(pilot_host().args([
        "validate",
        "tests/fixtures/invalid/unsupported-extension.toml",
    ]));
    out.expect_code(2)
        .stderr_has("has an unsupported extension; name it `.yaml`, `.yml` or `.json`");
}

#[test]
fn an_invalid_manifest_starts_nothing_and_exits_2() {
    let dir = Scratch::new("invalid-run");
    let manifest = crate::harness::manifest(&dir, "processes:\n  - { name: a, path: CHILD, args: [--pid-file, DIR/pid], dependencies: [ghost] }\n");
    let mut pilot = crate::harness::Pilot::run(&manifest);
    assert_eq!(pilot.wait_exit(crate::harness::SOON).code(), Some(2));
    assert!(pilot.stderr_text().contains("`ghost` is not defined"));
    assert!(!dir.join("pid").exists());
}
