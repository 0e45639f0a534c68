//! The dashboard in a real browser: headless Chromium (Debian's) driven by playwright-core loads the
//! page over TCP with the token, clicks Restart on a process and sees the new pid in the table, all
//! under its Content-Security-Policy (no violation, and an injected inline script does not run); the
//! screenshot is kept in `target/screens/dashboard.png`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::controlkit::Controlled;
use crate::harness::*;

fn target() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pilot-host"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

fn need(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{} is missing: {what} (`cargo xtask test` installs it)",
        path.display()
    );
}

#[test]
fn the_dashboard_restarts_a_process_and_shows_its_new_pid() {
    let chromium = PathBuf::from("/usr/bin/chromium");
    need(&chromium, "Debian's `chromium` package");
    let driver = target().join("browser/node_modules/playwright-core");
    need(&driver, "npm's `playwright-core`");
    let dir = Scratch::new("dashboard");
    let manifest = manifest(
        &dir,
        "control_server: { listen: \"127.0.0.1:0\" }\nstats_interval_sec: 0.2\nprocesses:\n  - { name: db, path: CHILD, args: [--name, db, --tick, 200] }\n  - { name: api, path: CHILD, args: [--name, api, --tick, 300], dependencies: [db] }\n  - { name: web, path: CHILD, args: [--name, web], dependencies: [api] }\n",
    );
    let c = Controlled::start_env(&dir, &manifest, &[], &[("PILOT_HOST_TOKEN", "")]);
    let old = c.wait_pid("api");
    c.wait_pid("web");
    let token = std::fs::read_to_string(c.token_file()).unwrap();
    let screens = target().join("screens");
    std::fs::create_dir_all(&screens).unwrap();
    let shot = screens.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.cjs"))
        .env("PLAYWRIGHT_CORE", &driver)
        .env("CHROMIUM", &chromium)
        .env(
            "URL",
            format!("http://{}/#token={}", c.http_addr(), token.trim()),
        )
        .env("PROCESS", "api")
        .env("SCREENSHOT", &shot)
        .output()
        .expect("node runs (`cargo xtask test` needs Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["old"], old, "the table showed the running pid first");
    let new = c.pid("api").unwrap();
    assert_ne!(new, old);
    assert_eq!(seen["new"], new, "the table shows the new pid");
    assert_eq!(seen["rows"], 3);
    assert!(seen["events"].as_u64().unwrap() >= 1);
    assert_eq!(seen["csp"], pilot_host::control::CSP, "the page's policy");
    assert_eq!(seen["frame"], "DENY");
    assert_eq!(
        seen["violations"],
        serde_json::json!([]),
        "the page works within its policy"
    );
    assert_eq!(seen["inline_ran"], false, "the browser enforces the policy");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot was saved"
    );
}
