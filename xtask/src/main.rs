//! Project automation, run as `cargo xtask <command>`:
//!
//! - `demo`: builds the plugins and pilot-host, validates and draws `demo/manifest.yaml`, then runs it.
//! - `test`: installs what the tests need (Graphviz, tmux, Chromium and playwright-core, the
//!   `wasm32-wasip2` target, the SARIF schema), builds the plugins, then runs every test.
//! - `plugins`: installs the guest toolchains (C, Python, JavaScript) into `target/toolchains/` when
//!   missing and builds the example and hostile plugins of every language into
//!   `target/plugins/`.
//! - `bench`: builds release binaries and measures the supervisor (start, readiness, restart, idle,
//!   stop) and the plugin runtime (calls, instances, compile cache, deadlines).

mod bench;
mod guests;
mod plugins;
mod sarif;
mod toolchains;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("plugins") => plugins::plugins(&args[1..]).map(drop),
        Some("bench") => bench::bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|plugins|bench> [args...]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

fn has(program: &str) -> bool {
    Command::new(program).arg("-V").output().is_ok()
}

/// Installs Graphviz with apt-get when `dot` is missing and we may.
fn ensure_graphviz() -> Result<(), String> {
    ensure_apt(&[("dot", "graphviz")], false)
}

/// Installs, with one apt-get run, the Debian packages whose program is missing (with their
/// recommended packages when `recommends`: Chromium needs its fonts).
fn ensure_apt(needs: &[(&str, &str)], recommends: bool) -> Result<(), String> {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|(program, _)| {
            if program.starts_with('/') {
                !Path::new(program).exists()
            } else {
                !has(program)
            }
        })
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt(&missing, recommends).map_err(|e| {
        format!(
            "{e}\nmissing: {}; install them with your package manager and run again",
            missing.join(", ")
        )
    })
}

/// Installs Debian `packages` (without their recommended packages) with apt-get, through sudo
/// unless root, after one `apt-get update` per xtask run.
pub fn apt_install(packages: &[&str]) -> Result<(), String> {
    apt(packages, false)
}

fn apt(packages: &[&str], recommends: bool) -> Result<(), String> {
    if !has("apt-get") {
        return Err(format!(
            "cannot install {} without apt-get",
            packages.join(", ")
        ));
    }
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| {
        let mut all: Vec<&str> = sudo.to_vec();
        all.push("apt-get");
        all.extend_from_slice(args);
        let mut cmd = Command::new(all[0]);
        cmd.args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)
    };
    static UPDATED: std::sync::Once = std::sync::Once::new();
    let mut updated = Ok(());
    UPDATED.call_once(|| updated = apt(&["update", "-qq"]));
    updated?;
    let mut args = vec!["install", "-y", "-qq"];
    if !recommends {
        args.push("--no-install-recommends");
    }
    args.extend_from_slice(packages);
    apt(&args)
}

/// Returns the cargo target folder (`CARGO_TARGET_DIR` or `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The version of npm's `playwright-core` the dashboard test drives Chromium with.
const PLAYWRIGHT_CORE: &str = "1.65.1";

/// Installs what the dashboard, terminal and security tests need: tmux, strace (which holds a
/// system call to show what pilot-host does meanwhile), Debian's Chromium, Node.js, and
/// `playwright-core` into `target/browser/` (it downloads no browser of its own).
fn ensure_browser() -> Result<(), String> {
    ensure_apt(
        &[
            ("tmux", "tmux"),
            ("strace", "strace"),
            ("/usr/bin/chromium", "chromium"),
            ("node", "nodejs"),
            ("npm", "npm"),
        ],
        true,
    )?;
    let prefix = root().join("target/browser");
    let installed =
        std::fs::read_to_string(prefix.join("node_modules/playwright-core/package.json"))
            .is_ok_and(|p| p.contains(&format!("\"version\": \"{PLAYWRIGHT_CORE}\"")));
    if installed {
        return Ok(());
    }
    std::fs::create_dir_all(&prefix)
        .map_err(|e| format!("cannot create {}: {e}", prefix.display()))?;
    run(Command::new("npm")
        .args([
            "install",
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--prefix",
        ])
        .arg(&prefix)
        .arg(format!("playwright-core@{PLAYWRIGHT_CORE}")))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn demo(extra: &[String]) -> Result<(), String> {
    ensure_graphviz()?;
    plugins::plugins(&[])?;
    run(Command::new("cargo").args([
        "build",
        "--release",
        "--bin",
        "pilot-host",
        "--bin",
        "pilot-child",
    ]))?;
    let bin = root().join("target/release/pilot-host");
    let out = PathBuf::from("/tmp/pilot-host-demo");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create `{}`: {e}", out.display()))?;
    let _ = std::fs::remove_file(out.join("events.jsonl"));
    let with_plugins = ["demo/manifest.yaml", "--plugins", "target/plugins/examples"];
    run(Command::new(&bin).arg("validate").args(with_plugins))?;
    run(Command::new(&bin).args([
        "graph",
        "demo/manifest.yaml",
        "--format",
        "svg",
        "--detailed",
        "--output-dir",
        "target/demo",
    ]))?;
    let socket = root().join("target/demo/control.sock");
    let mut pilot = Command::new(&bin)
        .arg("run")
        .args(with_plugins)
        .arg("--control-socket")
        .arg(&socket)
        .args(extra)
        .current_dir(root())
        .spawn()
        .map_err(|e| format!("cannot run pilot-host: {e}"))?;
    // Mid-run, what `pilot-host ctl status` shows.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    println!("\n$ pilot-host ctl --socket {} status", socket.display());
    let _ = run(Command::new(&bin)
        .args(["ctl", "--socket"])
        .arg(&socket)
        .arg("status"));
    // And what the control plugins answer.
    println!(
        "\n$ pilot-host ctl --socket {} plugin ops-endpoints /health",
        socket.display()
    );
    let _ = Command::new(&bin)
        .args(["ctl", "--socket"])
        .arg(&socket)
        .args(["plugin", "ops-endpoints", "/health"])
        .current_dir(root())
        .status();
    println!();
    let status = pilot
        .wait()
        .map_err(|e| format!("cannot wait for pilot-host: {e}"))?;
    if !status.success() {
        return Err(format!("pilot-host run failed with {status}"));
    }
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap_or_default();
    println!(
        "\nThe event-log plugin wrote {} events to {}; the first ones:",
        events.lines().count(),
        out.join("events.jsonl").display()
    );
    for line in events.lines().take(5) {
        println!("  {line}");
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<(), String> {
    ensure_graphviz()?;
    ensure_browser()?;
    plugins::plugins(&[])?;
    sarif::ensure_schema()?;
    // The integration tests run `pilot-child`, a binary of another package: `cargo test` alone
    // builds only the binaries of the package under test.
    run(Command::new("cargo").args(["build", "-p", "testkit", "--bin", "pilot-child"]))?;
    run(Command::new("cargo")
        .args(["test", "--workspace"])
        .args(extra))
}
