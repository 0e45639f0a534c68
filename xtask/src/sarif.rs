//! The SARIF 2.1.0 JSON schema that the tests validate `plugin check --format sarif` against. It is
//! one of the files of the npm package of Microsoft's SARIF multitool; `cargo xtask test` takes it from
//! there, on demand, into `target/sarif/`.

use std::path::PathBuf;
use std::process::Command;

use crate::{root, run};

/// The npm package holding the schema, pinned.
const PACKAGE: &str = "@microsoft/sarif-multitool-linux@5.7.0";

/// Makes sure `target/sarif/sarif-2.1.0.json` exists; returns its path.
pub fn ensure_schema() -> Result<PathBuf, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let dir = target.join("sarif");
    let schema = dir.join("sarif-2.1.0.json");
    if schema.is_file() {
        return Ok(schema);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    ensure_npm()?;
    run(Command::new("npm")
        .args(["pack", "--silent", PACKAGE, "--pack-destination"])
        .arg(&dir))
    .map_err(|e| format!("{e} (the tests need npm to fetch the SARIF schema)"))?;
    let tarball = dir.join("microsoft-sarif-multitool-linux-5.7.0.tgz");
    run(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&dir)
        .arg("package/sarif-2.1.0.json"))?;
    std::fs::rename(dir.join("package/sarif-2.1.0.json"), &schema)
        .map_err(|e| format!("cannot move the SARIF schema into place: {e}"))?;
    let _ = std::fs::remove_file(&tarball);
    let _ = std::fs::remove_dir_all(dir.join("package"));
    Ok(schema)
}

/// Installs npm with apt-get when it is missing and we may.
fn ensure_npm() -> Result<(), String> {
    if crate::has("npm") {
        return Ok(());
    }
    if !crate::has("apt-get") {
        return Err("npm is missing; install Node.js and npm, and run again".into());
    }
    let sudo: &[&str] = if crate::is_root() { &[] } else { &["sudo"] };
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "npm"][..]] {
        let mut all: Vec<&str> = sudo.to_vec();
        all.push("apt-get");
        all.extend_from_slice(args);
        let mut cmd = Command::new(all[0]);
        cmd.args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)?;
    }
    Ok(())
}
