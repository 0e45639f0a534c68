//! Builds the plugins written in C, Python and JavaScript (examples, hostile and control test plugins)
//! into `target/plugins/{examples,hostile,control}/`, with the toolchains of [`crate::toolchains`]. A component
//! newer than every file it is built from (its folder, its language's SDK, the WIT) is left alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::SystemTime;

use crate::root;
use crate::toolchains::Toolchains;

/// A guest language other than Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// C, through wit-bindgen, clang and wasm-tools.
    C,
    /// Python, through componentize-py.
    Python,
    /// JavaScript, through componentize-js.
    Js,
}

impl Lang {
    fn sdk(self) -> &'static str {
        match self {
            Lang::C => "guest-sdk/c",
            Lang::Python => "guest-sdk/python",
            Lang::Js => "guest-sdk/js",
        }
    }
}

/// One guest: its language, source folder, entry file, and where its component goes.
struct Guest {
    lang: Lang,
    dir: &'static str,
    entry: &'static str,
    name: &'static str,
    group: &'static str,
    /// The WIT world: `pilot-plugin`, or `pilot-control` for control plugins.
    world: &'static str,
}

const GUESTS: [Guest; 9] = [
    Guest {
        lang: Lang::C,
        dir: "example-plugins/pidfile-ready",
        entry: "pidfile_ready.c",
        name: "pidfile-ready",
        group: "examples",
        world: "pilot-plugin",
    },
    Guest {
        lang: Lang::Python,
        dir: "example-plugins/file-contains",
        entry: "app",
        name: "file-contains",
        group: "examples",
        world: "pilot-plugin",
    },
    Guest {
        lang: Lang::Python,
        dir: "example-plugins/ops-endpoints",
        entry: "app",
        name: "ops-endpoints",
        group: "examples",
        world: "pilot-control",
    },
    Guest {
        lang: Lang::Js,
        dir: "example-plugins/cpu-guard",
        entry: "plugin.js",
        name: "cpu-guard",
        group: "examples",
        world: "pilot-plugin",
    },
    Guest {
        lang: Lang::C,
        dir: "tests/plugins/hostile-c",
        entry: "hostile_c.c",
        name: "hostile-c",
        group: "hostile",
        world: "pilot-plugin",
    },
    Guest {
        lang: Lang::Python,
        dir: "tests/plugins/hostile-py",
        entry: "app",
        name: "hostile-py",
        group: "hostile",
        world: "pilot-plugin",
    },
    Guest {
        lang: Lang::Js,
        dir: "tests/plugins/hostile-js",
        entry: "plugin.js",
        name: "hostile-js",
        group: "hostile",
        world: "pilot-plugin",
    },
    Guest {
        lang: Lang::C,
        dir: "tests/plugins/control-c",
        entry: "control_c.c",
        name: "control-c",
        group: "control",
        world: "pilot-control",
    },
    Guest {
        lang: Lang::Js,
        dir: "tests/plugins/control-js",
        entry: "plugin.js",
        name: "control-js",
        group: "control",
        world: "pilot-control",
    },
];

/// Installs the toolchains, then builds every guest that is out of date; returns the components.
pub fn build_all(plugins_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let tools = Toolchains::at_target();
    tools.ensure_c()?;
    tools.ensure_python()?;
    tools.ensure_js()?;
    let mut running: Vec<(PathBuf, Child)> = Vec::new();
    let mut built = Vec::new();
    for guest in &GUESTS {
        let out_dir = plugins_dir.join(guest.group);
        std::fs::create_dir_all(&out_dir)
            .map_err(|e| format!("cannot create `{}`: {e}", out_dir.display()))?;
        let out = out_dir.join(format!("{}.wasm", guest.name));
        built.push(out.clone());
        if up_to_date(&out, guest) {
            continue;
        }
        let mut cmd = build_command(&tools, guest, &out);
        eprintln!("xtask: building {} ({:?})", guest.name, guest.lang);
        // C builds take a second; Python and JavaScript ones tens of seconds each, mostly on one
        // core: run them side by side.
        let child = cmd
            .current_dir(root().join(guest.dir))
            .spawn()
            .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        running.push((out, child));
    }
    let mut failed = Vec::new();
    for (out, mut child) in running {
        match child.wait() {
            Ok(status) if status.success() => {}
            other => {
                let _ = std::fs::remove_file(&out);
                failed.push(format!("{} ({other:?})", out.display()));
            }
        }
    }
    if !failed.is_empty() {
        return Err(format!(
            "building these plugins failed: {}",
            failed.join(", ")
        ));
    }
    for out in &built {
        println!("{}", out.display());
    }
    Ok(built)
}

fn build_command(tools: &Toolchains, guest: &Guest, out: &Path) -> Command {
    let wit = root().join("wit");
    let sdk = root().join(guest.lang.sdk());
    match guest.lang {
        Lang::C => {
            let mut cmd = Command::new("sh");
            cmd.arg(sdk.join("build.sh"))
                .arg(out)
                .arg(guest.entry)
                .env("WIT_BINDGEN", tools.wit_bindgen())
                .env("WASM_TOOLS", tools.wasm_tools())
                .env("PILOT_WIT", &wit)
                .env("PILOT_WORLD", guest.world)
                .env("PILOT_ADAPTER", tools.adapter());
            cmd
        }
        Lang::Python => {
            let mut cmd = Command::new(tools.componentize_py());
            cmd.arg("-d")
                .arg(&wit)
                .args(["-w", guest.world, "componentize", "-p", "."])
                .arg("-p")
                .arg(&sdk)
                .arg(guest.entry)
                .arg("-o")
                .arg(out);
            cmd
        }
        Lang::Js => {
            let mut cmd = Command::new("node");
            cmd.arg(sdk.join("build.mjs"))
                .args(["--world", guest.world])
                .arg("--wit")
                .arg(&wit)
                .arg("--out")
                .arg(out)
                .arg(guest.entry)
                .env("PILOT_JS_TOOLCHAIN", tools.js());
            cmd
        }
    }
}

/// Returns whether `out` is newer than every file of the guest's folder, its SDK and the WIT.
fn up_to_date(out: &Path, guest: &Guest) -> bool {
    let Ok(built) = out.metadata().and_then(|m| m.modified()) else {
        return false;
    };
    [guest.dir, guest.lang.sdk(), "wit"]
        .iter()
        .all(|dir| newest(&root().join(dir)).is_some_and(|t| t <= built))
}

/// Returns the newest modification time of the files directly in `dir`.
fn newest(dir: &Path) -> Option<SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
        .max()
}
