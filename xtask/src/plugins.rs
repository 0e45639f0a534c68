//! `cargo xtask plugins`: builds the guest crates (example and test plugins) for `wasm32-wasip2`,
//! then the C, Python and JavaScript guests ([`crate::guests`]), and collects the components in
//! `target/plugins/{examples,hostile,hostile-set,wit}/`.

use std::path::PathBuf;
use std::process::Command;

use crate::{run, target_dir};

/// The Rust target plugins are built for.
const TARGET: &str = "wasm32-wasip2";

/// Each guest crate (package name) and the folder under `target/plugins/` its component goes to.
const GUESTS: &[(&str, &str)] = &[
    ("http-ready", "examples"),
    ("file-ready", "examples"),
    ("mem-guard", "examples"),
    ("event-log", "examples"),
    ("webhook-notify", "examples"),
    ("hostile", "hostile"),
    ("describe-trap", "hostile"),
    ("probe", "hostile"),
    ("bad-names", "hostile"),
    ("control-probe", "control"),
    ("wit-next-minor", "wit"),
    ("wit-next-patch", "wit"),
    ("wit-prev-patch", "wit"),
];

/// The crate whose examples are the nine plugins of the hostile load scenario, and those examples;
/// they go to `target/plugins/hostile-set/`.
const HOSTILE_SET: (&str, &[&str]) = (
    "hostile-set",
    &[
        "h-spin",
        "h-sleep",
        "h-socket",
        "h-membomb",
        "h-recurse",
        "h-trap",
        "h-huge",
        "h-flood",
        "h-escape",
    ],
);

/// Builds every guest crate in release mode and copies the components into place; returns their paths.
pub fn plugins(extra: &[String]) -> Result<Vec<PathBuf>, String> {
    ensure_target()?;
    let mut build = Command::new("cargo");
    build.args(["build", "--release", "--target", TARGET]);
    for (package, _) in GUESTS {
        build.args(["-p", package]);
    }
    run(build.args(extra))?;

    let target_dir = target_dir();
    let built = target_dir.join(TARGET).join("release");
    let mut copied = Vec::new();
    for (package, folder) in GUESTS {
        let from = built.join(format!("{}.wasm", package.replace('-', "_")));
        copied.push(copy(
            &from,
            &target_dir.join("plugins").join(folder),
            package,
        )?);
    }
    let (package, examples) = HOSTILE_SET;
    run(Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "-p",
            package,
            "--examples",
            "--features",
            "component",
        ])
        .args(extra))?;
    for example in examples {
        let from = built
            .join("examples")
            .join(format!("{}.wasm", example.replace('-', "_")));
        copied.push(copy(
            &from,
            &target_dir.join("plugins").join(package),
            example,
        )?);
    }
    copied.extend(crate::guests::build_all(&target_dir.join("plugins"))?);
    Ok(copied)
}

/// Copies the component `from` to `dir/NAME.wasm`; returns the new path.
fn copy(from: &std::path::Path, dir: &std::path::Path, name: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let to = dir.join(format!("{name}.wasm"));
    std::fs::copy(from, &to).map_err(|e| {
        format!(
            "cannot copy `{}` to `{}`: {e}",
            from.display(),
            to.display()
        )
    })?;
    println!("{}", to.display());
    Ok(to)
}

/// Adds the `wasm32-wasip2` target with rustup when the toolchain lacks it.
fn ensure_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| {
            format!(
                "cannot run rustup ({e}); install the `{TARGET}` target for your Rust toolchain"
            )
        })?;
    if !installed.status.success() {
        return Err(format!(
            "`rustup target list --installed` failed: {}",
            String::from_utf8_lossy(&installed.stderr).trim()
        ));
    }
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t.trim() == TARGET)
    {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", TARGET]))
}
