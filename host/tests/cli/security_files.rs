//! Files written in shared folders: `plugin new` and `plugin check` use folders nobody can plant in
//! advance, never follow a link, and never delete what they did not make; `plugin check` reports a
//! plugin that lists or inspects the root it is shown.

use std::path::Path;

use crate::attack::{plant_at_start, Plant};
use crate::check::{check, has_finding, json, spec};
use crate::harness::{plugin, Scratch};
use crate::support::{pilot_host, run};

#[test]
fn plugin_new_ignores_a_staging_folder_planted_under_its_old_predictable_name() {
    let shared = Scratch::new("new-planted");
    let victim = shared.write("victim/notes.txt", "mine\n");
    let victim_dir = shared.join("victim");
    // What an attacker plants at `PARENT/.pilot-plugin-new-NAME-PID` the moment the command starts:
    // a folder whose README.md leads to the victim's file (then, below, a link to the victim's folder).
    let mut cmd = pilot_host();
    cmd.current_dir(shared.path())
        .args(["plugin", "new", "disk-ready", "--lang", "c"]);
    plant_at_start(
        &mut cmd,
        vec![
            Plant::Folder(shared.join(".pilot-plugin-new-disk-ready-"), ""),
            Plant::Link(
                shared.join(".pilot-plugin-new-disk-ready-"),
                "/README.md",
                victim.clone(),
            ),
        ],
    );
    run(&mut cmd).expect_code(0);
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "mine\n",
        "the victim's file is untouched"
    );
    let project = shared.join("disk-ready");
    let meta = std::fs::symlink_metadata(&project).unwrap();
    assert!(meta.is_dir(), "the project is a real folder, not a link");
    assert!(std::fs::read_to_string(project.join("README.md"))
        .unwrap()
        .contains("disk-ready"));
    assert_eq!(
        std::fs::read_dir(&victim_dir).unwrap().count(),
        1,
        "nothing was written into the victim's folder"
    );

    let mut cmd = pilot_host();
    cmd.current_dir(shared.path())
        .args(["plugin", "new", "other-ready", "--lang", "python"]);
    plant_at_start(
        &mut cmd,
        vec![Plant::Link(
            shared.join(".pilot-plugin-new-other-ready-"),
            "",
            victim_dir.clone(),
        )],
    );
    run(&mut cmd).expect_code(0);
    assert!(std::fs::symlink_metadata(shared.join("other-ready"))
        .unwrap()
        .is_dir());
    assert_eq!(std::fs::read_dir(&victim_dir).unwrap().count(), 1);
    // No staging folder is left behind.
    let left: Vec<_> = std::fs::read_dir(shared.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".pilot-plugin-new-") && !n.contains("-ready-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn plugin_new_into_a_link_exits_2_with_one_message() {
    let dir = Scratch::new("new-link");
    std::fs::create_dir(dir.join("real")).unwrap();
    std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).unwrap();
    let out = run(pilot_host().current_dir(dir.path()).args([
        "plugin",
        "new",
        "disk-ready",
        "--lang",
        "rust",
        "--dir",
        "link",
    ]));
    out.expect_code(2)
        .stderr_has("`link` is a symbolic link, and `plugin new` writes only into a real folder");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert_eq!(std::fs::read_dir(dir.join("real")).unwrap().count(), 0);
}

fn probe_check(tmp: &Path, spec_file: &Path) -> crate::support::Run {
    let mut cmd = pilot_host();
    cmd.args(["plugin", "check", "--json", "--spec"])
        .arg(spec_file)
        .arg(plugin("hostile", "probe"))
        .env("PILOT_HOST_CACHE_DIR", crate::harness::plugin_cache())
        .env("TMPDIR", tmp);
    // Planted where the check used to make its root: `$TMPDIR/pilot-host-check-PID-0`.
    plant_at_start(
        &mut cmd,
        vec![
            Plant::Folder(tmp.join("pilot-host-check-"), "-0"),
            Plant::File(tmp.join("pilot-host-check-"), "-0/precious", b"keep me\n"),
        ],
    );
    run(&mut cmd)
}

#[test]
fn plugin_check_never_takes_a_planted_folder_for_the_root_nor_deletes_it() {
    let dir = Scratch::new("check-planted");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let s = spec(
        &dir,
        "plugin: probe\ncalls:\n  - { ready_check: list, params: { path: / }, expect: { error: unavailable } }\n",
    );
    let out = probe_check(&tmp, &s);
    let planted: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        planted.len(),
        1,
        "the check's own root is gone: {planted:?}"
    );
    assert_eq!(
        std::fs::read_to_string(planted[0].join("precious")).unwrap(),
        "keep me\n",
        "the planted folder and its file are left alone"
    );
    let report = &json(&out)["reports"][0];
    assert!(
        has_finding(report, "ungranted-access", "tried to open `/`"),
        "{report}"
    );
}

#[test]
fn plugin_check_reports_and_refuses_listing_or_inspecting_its_root_through_the_descriptor() {
    let dir = Scratch::new("check-root");
    let s = spec(
        &dir,
        "plugin: probe\ncalls:\n  - { ready_check: root, expect: { not_yet: cannot list } }\n",
    );
    let out = check(&[
        "--json".as_ref(),
        "--spec".as_ref(),
        s.as_os_str(),
        plugin("hostile", "probe").as_os_str(),
    ]);
    out.expect_code(1);
    let report = &json(&out)["reports"][0];
    for want in [
        "tried to list `/`: not granted",
        "tried to read the metadata of `/`: not granted",
    ] {
        assert!(
            has_finding(report, "ungranted-access", want),
            "{want}: {report}"
        );
    }
    assert!(
        !has_finding(report, "expectation", ""),
        "the plugin was refused both: {report}"
    );
}
