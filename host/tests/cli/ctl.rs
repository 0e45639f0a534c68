//! `pilot-host ctl`: its commands, how it finds the socket, its exit codes, and its status table as a
//! person sees it in a terminal (tmux).

use std::path::Path;
use std::process::Command;

use crate::controlkit::Controlled;
use crate::harness::*;
use crate::support::run;

fn ctl(c: &Controlled, args: &[&str]) -> crate::support::Run {
    let mut cmd = crate::support::pilot_host();
    cmd.arg("ctl").arg("--socket").arg(&c.socket).args(args);
    run(&mut cmd)
}

fn two(dir: &Scratch) -> std::path::PathBuf {
    manifest(
        dir,
        "processes:\n  - { name: api, path: CHILD, args: [--name, api, --print, 3] }\n  - { name: worker, path: CHILD, args: [--name, worker], dependencies: [api] }\n",
    )
}

#[test]
fn ctl_commands_do_what_they_say_with_exit_codes() {
    let dir = Scratch::new("ctl-cmds");
    let manifest = two(&dir);
    let mut c = Controlled::start(&dir, &manifest, &["--stay-alive"]);
    let api = c.wait_pid("api");
    c.wait_pid("worker");

    let status = ctl(&c, &["status"]);
    status.expect_code(0);
    let lines: Vec<&str> = status.stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATE") && lines[0].ends_with("MEMORY"),
        "{}",
        status.stdout
    );
    assert!(
        lines[1].starts_with("api ")
            && lines[1].contains("running")
            && lines[1].contains(&api.to_string()),
        "{}",
        status.stdout
    );
    assert!(
        !status.stdout.contains('\x1b'),
        "no colour when not on a terminal"
    );
    let as_json: serde_json::Value =
        serde_json::from_str(&ctl(&c, &["status", "--json"]).expect_code(0).stdout).unwrap();
    assert_eq!(as_json[1]["name"], "worker");

    let restarted = ctl(&c, &["restart", "api"]);
    restarted
        .expect_code(0)
        .stdout_has("restarted `api`: running, pid ");
    let new = c.pid("api").unwrap();
    assert_ne!(new, api);
    assert!(
        restarted.stdout.contains(&new.to_string()),
        "{}",
        restarted.stdout
    );
    ctl(&c, &["restart", "api", "ghost"])
        .expect_code(1)
        .stderr_has("no process is called `ghost`");
    assert_eq!(c.pid("api"), Some(new), "nothing restarted");
    ctl(&c, &["stop", "worker"])
        .expect_code(0)
        .stdout_has("stopped `worker`: stopped");
    ctl(&c, &["stop", "api"]).expect_code(0);
    ctl(&c, &["start", "worker"])
        .expect_code(1)
        .stderr_has("its dependency `api` is stopped");
    ctl(&c, &["start", "api", "--wait-ready"])
        .expect_code(0)
        .stdout_has("started `api`: running");
    ctl(&c, &["start", "worker"]).expect_code(0);

    let logs = ctl(&c, &["logs", "api", "-n", "2"]);
    logs.expect_code(0);
    assert_eq!(logs.stdout.lines().count(), 2, "{}", logs.stdout);
    ctl(&c, &["logs", "ghost"])
        .expect_code(1)
        .stderr_has("no process is called `ghost`");
    ctl(&c, &["reload"])
        .expect_code(0)
        .stdout_has("\"unchanged\": [");
    std::fs::write(&manifest, "processes: []\n").unwrap();
    ctl(&c, &["reload"])
        .expect_code(1)
        .stderr_has("the manifest is not valid; nothing was changed");
    ctl(&c, &["bogus"]).expect_code(2);

    ctl(&c, &["shutdown"])
        .expect_code(0)
        .stdout_has("pilot-host is shutting down");
    assert!(c.pilot.wait_exit(SOON).success());
    ctl(&c, &["status"])
        .expect_code(2)
        .stderr_has("cannot connect to the control socket");
}

#[test]
fn ctl_finds_the_socket_from_the_manifest_or_the_only_live_one() {
    let dir = Scratch::new("ctl-find");
    let manifest = two(&dir);
    let c = Controlled::start(&dir, &manifest, &[]);
    c.wait_pid("worker");
    let env = [("XDG_RUNTIME_DIR", c.runtime.as_os_str())];
    let by_manifest = run(crate::support::pilot_host()
        .envs(env)
        .args(["ctl", "--manifest"])
        .arg(&manifest)
        .arg("status"));
    by_manifest.expect_code(0).stdout_has("worker");
    let only = run(crate::support::pilot_host()
        .envs(env)
        .args(["ctl", "status"]));
    only.expect_code(0).stdout_has("worker");

    let other = Scratch::new("ctl-find-none");
    let empty = crate::controlkit::runtime_dir(&other);
    run(crate::support::pilot_host()
        .env("XDG_RUNTIME_DIR", &empty)
        .args(["ctl", "status"]))
    .expect_code(2)
    .stderr_has("no pilot-host of yours is running");
    run(crate::support::pilot_host().args(["ctl", "--manifest", "/nonexistent.yaml", "status"]))
        .expect_code(2)
        .stderr_has("does not exist");
}

#[test]
fn ctl_over_http_needs_the_token() {
    let dir = Scratch::new("ctl-http");
    let manifest = manifest(
        &dir,
        "control_server: { listen: \"127.0.0.1:0\" }\nprocesses:\n  - { name: api, path: CHILD }\n",
    );
    let c = Controlled::start_env(&dir, &manifest, &[], &[("PILOT_HOST_TOKEN", "")]);
    c.wait_pid("api");
    let url = format!("http://{}", c.http_addr());
    let token = c.token_file();
    run(crate::support::pilot_host()
        .args(["ctl", "--url", &url, "--token-file"])
        .arg(&token)
        .arg("status"))
    .expect_code(0)
    .stdout_has("api");
    let wrong = dir.write("wrong.token", "nope\n");
    run(crate::support::pilot_host()
        .args(["ctl", "--url", &url, "--token-file"])
        .arg(&wrong)
        .arg("status"))
    .expect_code(2)
    .stderr_has("the bearer token is wrong");
    run(crate::support::pilot_host()
        .env_remove("PILOT_HOST_TOKEN")
        .args(["ctl", "--url", &url, "status"]))
    .expect_code(2)
    .stderr_has("`--url` needs a token");
}

fn tmux(socket: &Path, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("tmux is needed for this test (`cargo xtask test` installs it): {e}")
        });
    assert!(
        out.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ctl_status_reads_as_a_table_in_a_terminal() {
    let dir = Scratch::new("ctl-tmux");
    let manifest = two(&dir);
    let c = Controlled::start(&dir, &manifest, &[]);
    let api = c.wait_pid("api");
    let worker = c.wait_pid("worker");
    let server = dir.join("tmux.sock");
    let command = format!(
        "{} ctl --socket {} status; echo '<done>'; sleep 60",
        env!("CARGO_BIN_EXE_pilot-host"),
        c.socket.display()
    );
    tmux(
        &server,
        &[
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "12",
            "-s",
            "ctl",
            &command,
        ],
    );
    let mut screen = String::new();
    wait_until("ctl status shows in the terminal", SOON, || {
        screen = tmux(&server, &["capture-pane", "-p", "-t", "ctl"]);
        screen.contains("<done>")
    });
    let _ = tmux(&server, &["kill-server"]);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screens");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(shots.join("ctl-status.txt"), &screen).unwrap();
    let lines: Vec<&str> = screen.lines().collect();
    let header = lines[0];
    for column in [
        "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "CPU", "MEMORY",
    ] {
        assert!(header.contains(column), "{screen}");
    }
    // Columns line up: each value ends where its right-aligned header ends.
    let pid_end = header.find("PID").unwrap() + 3;
    for (row, pid) in [(lines[1], api), (lines[2], worker)] {
        let at = row
            .find(&pid.to_string())
            .unwrap_or_else(|| panic!("{screen}"));
        assert_eq!(
            at + pid.to_string().len(),
            pid_end,
            "pid column aligned:\n{screen}"
        );
        assert!(row.contains("running"), "{screen}");
        assert!(
            row.contains("KiB") || row.contains("MiB") || row.trim_end().ends_with('-'),
            "{screen}"
        );
    }
    assert!(lines[3].starts_with("<done>"), "{screen}");
}
