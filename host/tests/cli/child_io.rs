//! What a child sees and prints, through the real `pilot-host run`: its environment, folder and
//! affinity; prefixed output; a flood or a huge line blocking nothing.

use crate::harness::*;

#[test]
fn env_working_directory_and_affinity_are_seen_by_the_child() {
    let dir = Scratch::new("env");
    std::fs::create_dir(dir.join("wd")).unwrap();
    let manifest = manifest(
        &dir,
        r#"
processes:
  - name: probe
    path: CHILD
    args: [--print-env, GREETING, --print-env, HOME, --print-cwd, --print-affinity]
    env: { GREETING: hello, NUMBER: 7 }
    working_directory: DIR/wd
    affinity: [0]
  - name: default-dir
    path: CHILD
    args: [--print-cwd]
"#,
    );
    let pilot = Pilot::run(&manifest);
    pilot.wait_out("probe       | GREETING=hello", SOON);
    pilot.wait_out(
        &format!(
            "probe       | HOME={}",
            std::env::var("HOME").unwrap_or_else(|_| "<unset>".into())
        ),
        SOON,
    );
    pilot.wait_out(
        &format!("probe       | cwd={}", dir.join("wd").display()),
        SOON,
    );
    pilot.wait_out("probe       | affinity=0", SOON);
    let child_dir = pilot_child().parent().unwrap().to_path_buf();
    pilot.wait_out(&format!("default-dir | cwd={}", child_dir.display()), SOON);
    // pilot-host raises its own open-file limit; the child gets the limit pilot-host was started with.
    let open_files = |pid: &str| {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        let fields: Vec<String> = line
            .split_whitespace()
            .skip(3)
            .take(2)
            .map(String::from)
            .collect();
        (fields[0].clone(), fields[1].clone())
    };
    // The child can print before pilot-host's "started" line reaches us.
    pilot.wait_log("probe: started, pid ", SOON);
    let (mine, hard) = open_files("self");
    assert_eq!(
        open_files(&pilot.pid_of("probe").to_string()).0,
        mine,
        "the child's soft limit"
    );
    assert_eq!(
        open_files(&pilot.pid().to_string()).0,
        hard,
        "pilot-host's own soft limit is raised"
    );
}

#[test]
fn output_is_prefixed_and_a_flood_or_a_huge_line_blocks_nothing() {
    let dir = Scratch::new("flood");
    let manifest = manifest(
        &dir,
        r#"
processes:
  - { name: flood, path: CHILD, args: [--print, 50000, --long-line, 1000000, --touch-after, 0, DIR/flooded] }
  - { name: calm, path: CHILD, args: [--name, calm, --tick, 20] }
"#,
    );
    let pilot = Pilot::run(&manifest);
    // Lines printed while the flood fills the printer's queue may be dropped from the printout (never
    // from the buffer); the calm process's ticks must go on being printed all the same.
    wait_until("calm ticks on through the flood", SOON, || {
        pilot.stdout_text().lines().any(|l| {
            l.strip_prefix("calm  | calm tick ")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 3)
        })
    });
    wait_until("the flooding child got past its output", SOON, || {
        dir.join("flooded").exists()
    });
    // The child is past its output; pilot-host's printer and our reader may still be behind.
    wait_until("a prefixed line of the flood is printed", SOON, || {
        let out = pilot.stdout_text();
        out.contains("flood | out 0\n") || out.contains("flood | err 0\n")
    });
    wait_until("the long line is printed, cut", SOON, || {
        pilot
            .stdout_text()
            .lines()
            .any(|l| l.starts_with("flood | xxxx") && l.ends_with("…[line cut at 16 KiB]"))
    });
}

#[test]
fn a_calm_process_is_printed_all_through_a_flood() {
    let dir = Scratch::new("flood-interleave");
    let path = manifest(
        &dir,
        r#"
processes:
  - { name: flood, path: CHILD, args: [--flood, 1500] }
  - { name: calm, path: CHILD, args: [--name, calm, --tick, 20] }
"#,
    );
    let pilot = Pilot::run(&path);
    // The flood lasts 1.5 s; 40 ticks take 0.8 s, so they come while it runs unless they are held.
    wait_until("40 calm ticks are printed", SOON, || {
        pilot
            .stdout_text()
            .lines()
            .filter(|l| l.starts_with("calm  | calm tick "))
            .count()
            >= 40
    });
    // Calm ticks must appear between flood lines, not only before or after the flood.
    let out = pilot.stdout_text();
    let lines: Vec<&str> = out.lines().collect();
    let first_flood = lines.iter().position(|l| l.starts_with("flood | "));
    let last_flood = lines.iter().rposition(|l| l.starts_with("flood | "));
    let (Some(first), Some(last)) = (first_flood, last_flood) else {
        panic!("no flood line printed");
    };
    let between = lines[first..last]
        .iter()
        .filter(|l| l.starts_with("calm  | calm tick "))
        .count();
    assert!(
        between >= 10,
        "only {between} calm ticks were printed among the flood's lines"
    );
}
