//! Who may use the control plane: the socket's folder and files are private, TCP needs the token, a
//! second run of one manifest is refused and a stale socket replaced.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;

use crate::controlkit::{call, json, Controlled};
use crate::harness::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_socket_its_folder_and_the_token_are_private_and_tcp_needs_the_token() {
    let dir = Scratch::new("ctl-tcp");
    let manifest = crate::control::two(&dir, "control_server: { listen: \"127.0.0.1:0\" }");
    let c = Controlled::start_env(&dir, &manifest, &[], &[("PILOT_HOST_TOKEN", "")]);
    assert_eq!(mode(&c.socket), 0o600, "socket");
    assert_eq!(mode(c.socket.parent().unwrap()), 0o700, "folder");
    assert!(c.socket.starts_with(c.runtime.join("pilot-host")));
    let token_file = c.token_file();
    assert_eq!(mode(&token_file), 0o600, "token file");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(token.len(), 64);
    let pid = c.wait_pid("a");

    // A wrong token counts toward the back-off; past it, even the right one has to wait (429).
    let mut wrong = 0;
    for (who, client) in [("no token", c.tcp("")), ("a wrong token", c.tcp("wrong"))] {
        for (method, path) in [
            ("GET", "/v1/processes"),
            ("GET", "/v1/processes/a"),
            ("POST", "/v1/processes/a/restart"),
            ("POST", "/v1/processes/a/stop"),
            ("POST", "/v1/processes/a/start"),
            ("GET", "/v1/processes/a/logs"),
            ("GET", "/v1/events"),
            ("GET", "/v1/manifest"),
            ("GET", "/v1/plugins"),
            ("POST", "/v1/reload"),
            ("POST", "/v1/shutdown"),
            ("GET", "/metrics"),
        ] {
            let body = (path == "/v1/restart").then(|| serde_json::json!({"processes": ["a"]}));
            let (status, text) = call(&client, method, path, body);
            let (want, kind) =
                if who == "no token" || wrong < pilot_host::control::FREE_WRONG_TOKENS {
                    (401, "unauthorized")
                } else {
                    (429, "too_many_failures")
                };
            wrong += u32::from(who != "no token");
            assert_eq!(status, want, "{who}: {method} {path}: {text}");
            assert!(text.contains(&format!("\"kind\":\"{kind}\"")), "{text}");
        }
        let (status, _) = call(
            &client,
            "POST",
            "/v1/restart",
            Some(serde_json::json!({"processes": ["a"]})),
        );
        assert!(status == 401 || status == 429, "{status}");
    }
    // Past the wait, the right token works (and resets the count).
    crate::harness::wait_until("the wait is over", SOON, || {
        call(&c.tcp(&token), "GET", "/v1/processes", None).0 == 200
    });
    assert_eq!(c.pid("a"), Some(pid), "nothing changed without the token");
    assert!(c.pilot.logs_with("shutting down").is_empty());

    let tcp = c.tcp(&token);
    assert_eq!(json(&tcp, "GET", "/v1/processes", None, 200)[0]["pid"], pid);
    let restarted = json(&tcp, "POST", "/v1/processes/a/restart", None, 200);
    assert_ne!(restarted["processes"][0]["pid"], pid);
    let (status, metrics) = call(&tcp, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(metrics.contains("pilot_process_up{process=\"b\"} 1"));
    // The dashboard's page holds no data and needs no token; its data does.
    let (status, page) = call(&c.tcp(""), "GET", "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("<title>pilot-host</title>"));

    let socket = c.socket.clone();
    drop(c);
    let _ = socket;
}

#[test]
fn a_token_comes_from_the_token_file_or_the_environment() {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = Scratch::new("ctl-token");
    let file = dir.join("secret.token");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .unwrap();
    f.write_all(b"from-the-file\n").unwrap();
    let manifest = crate::control::two(
        &dir,
        &format!(
            "control_server: {{ listen: \"127.0.0.1:0\", token_file: {} }}",
            file.display()
        ),
    );
    let c = Controlled::start(&dir, &manifest, &[]);
    assert_eq!(c.token_file(), file);
    json(&c.tcp("from-the-file"), "GET", "/v1/processes", None, 200);
    assert_eq!(
        call(&c.tcp("from-the-environment"), "GET", "/v1/processes", None).0,
        401
    );
    drop(c);

    let dir = Scratch::new("ctl-token-env");
    let manifest = crate::control::two(&dir, "control_server: { listen: \"127.0.0.1:0\" }");
    let c = Controlled::start_env(
        &dir,
        &manifest,
        &[],
        &[("PILOT_HOST_TOKEN", "from-the-environment")],
    );
    c.pilot.wait_log("bearer token from PILOT_HOST_TOKEN", SOON);
    json(
        &c.tcp("from-the-environment"),
        "GET",
        "/v1/processes",
        None,
        200,
    );
    assert!(
        std::fs::read_dir(c.socket.parent().unwrap())
            .unwrap()
            .all(|e| { e.unwrap().path().extension().is_none_or(|x| x != "token") }),
        "no token file is written"
    );
}

#[test]
fn a_second_run_of_the_same_manifest_is_refused_and_a_stale_socket_replaced() {
    let dir = Scratch::new("ctl-twice");
    let manifest = crate::control::two(&dir, "");
    let first = Controlled::start(&dir, &manifest, &[]);
    let a = first.wait_pid("a");
    let mut second = Pilot::start_env(
        &["run".as_ref(), manifest.as_os_str()],
        &[("XDG_RUNTIME_DIR", first.runtime.as_os_str())],
    );
    let status = second.wait_exit(SOON);
    assert_eq!(status.code(), Some(1));
    let err = second.stderr_text();
    assert!(
        err.contains(&format!(
            "another pilot-host runs this manifest, pid {}",
            first.pilot.pid()
        )),
        "{err}"
    );
    assert!(
        second.logs_with(": started, pid").is_empty(),
        "the second run started nothing"
    );
    assert_eq!(first.pid("a"), Some(a));

    // SIGKILL leaves the socket behind; the next run replaces it.
    let Controlled {
        pilot,
        socket,
        runtime,
    } = first;
    pilot.signal(libc::SIGKILL);
    let mut pilot = pilot;
    pilot.wait_exit(SOON);
    assert!(socket.exists(), "a killed run leaves its socket");
    wait_until("the killed run's children are gone", SOON, || !alive(a));
    let third = Pilot::start_env(
        &["run".as_ref(), manifest.as_os_str()],
        &[("XDG_RUNTIME_DIR", runtime.as_os_str())],
    );
    third.wait_log("removing the stale control socket", SOON);
    third.wait_log("control socket: ", SOON);
    third.wait_log("b: started, pid", SOON);
}

#[test]
fn an_unsafe_socket_folder_is_refused_and_nothing_starts() {
    let dir = Scratch::new("ctl-unsafe");
    let manifest = crate::control::two(&dir, "");
    let runtime = crate::controlkit::runtime_dir(&dir);
    let folder = runtime.join("pilot-host");
    std::fs::create_dir(&folder).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut pilot = Pilot::start_env(
        &["run".as_ref(), manifest.as_os_str()],
        &[("XDG_RUNTIME_DIR", runtime.as_os_str())],
    );
    assert_eq!(
        pilot.wait_exit(SOON).code(),
        Some(2),
        "bad input, not a failure"
    );
    let err = pilot.stderr_text();
    assert!(
        err.contains(&format!(
            "control socket folder `{}` can be written by others (mode 777)",
            folder.display()
        )),
        "{err}"
    );
    assert!(pilot.logs_with(": started, pid").is_empty());

    // `--no-control` runs without any socket.
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700)).unwrap();
    let pilot = Pilot::start_env(
        &[
            "run".as_ref(),
            manifest.as_os_str(),
            "--no-control".as_ref(),
        ],
        &[("XDG_RUNTIME_DIR", runtime.as_os_str())],
    );
    pilot.wait_log("b: started, pid", SOON);
    assert!(pilot.logs_with("control socket").is_empty());
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
}
