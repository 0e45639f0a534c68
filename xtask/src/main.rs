//! Project automation, run as `cargo xtask <command>`:
//!
//! - `demo`: builds pilot-host, validates and draws `demo/manifest.yaml`, then runs it.
//! - `test`: installs what the tests need (Graphviz), then runs every test.
//! - `bench`: builds release binaries and measures start, readiness, restart, idle and stop costs.

mod bench;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|bench> [args...]");
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
    if has("dot") {
        return Ok(());
    }
    if !has("apt-get") {
        return Err("Graphviz's `dot` is missing; install Graphviz (e.g. `brew install graphviz`) and run again".into());
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
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "graphviz"])
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
    run(Command::new("cargo").args(["build", "--release", "--bin", "pilot-host"]))?;
    let bin = root().join("target/release/pilot-host");
    run(Command::new(&bin)
        .args(["validate", "demo/manifest.yaml"])
        .args(extra))?;
    run(Command::new(&bin).args([
        "graph",
        "demo/manifest.yaml",
        "--format",
        "svg",
        "--detailed",
        "--output-dir",
        "target/demo",
    ]))
}

fn test(extra: &[String]) -> Result<(), String> {
    ensure_graphviz()?;
    run(Command::new("cargo")
        .args(["test", "--workspace"])
        .args(extra))
}
