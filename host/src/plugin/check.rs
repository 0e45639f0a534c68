//! `pilot-host plugin check FILE...`: the CI gate for plugins nobody here wrote.
//!
//! For each file: is it a component for `pilot:plugin@0.1.x`; what it imports, as capabilities; does it
//! import anything outside what pilot-host offers; does it instantiate and describe itself under
//! production limits; and does every strategy, hook and handler it declares return (a value or its own
//! error) within those limits when smoke-tested. Any finding makes the exit status non-zero.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::bindings::{self as b, PilotPluginPre};
use super::{check_description, PluginHost, Sandbox};
use crate::manifest::PluginSettings;

/// Import prefixes pilot-host offers; anything else is a finding.
const ALLOWED: [(&str, &str); 8] = [
    ("pilot:plugin/", "the pilot-host plugin interface"),
    (
        "wasi:cli/environment",
        "environment variables (granted with `allow_env`)",
    ),
    ("wasi:cli/", "standard streams (to the host log)"),
    ("wasi:clocks/", "clocks"),
    ("wasi:io/", "streams and polling"),
    ("wasi:random/", "randomness"),
    (
        "wasi:filesystem/",
        "files (granted with `allow_read` / `allow_write`)",
    ),
    ("wasi:sockets/", "network (granted with `allow_tcp`)"),
];

/// The outcome of one smoke test.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// `ready-strategy`, `lifecycle-hook` or `stat-handler`.
    pub kind: &'static str,
    /// The name tested (with the event, for hooks).
    pub name: String,
    /// Whether it returned within the limits (a plugin error counts as returning).
    pub ok: bool,
    /// What it answered, or how it failed.
    pub result: String,
    /// How long it took, in milliseconds.
    pub ms: f64,
}

/// The report on one file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The file checked.
    pub file: PathBuf,
    /// The plugin's name, if it described itself.
    pub name: Option<String>,
    /// The plugin's version, if it described itself.
    pub version: Option<String>,
    /// Every import, as `name` → capability.
    pub imports: Vec<(String, String)>,
    /// The distinct capabilities the imports ask for.
    pub capabilities: Vec<String>,
    /// The smoke tests.
    pub probes: Vec<Probe>,
    /// What is wrong; empty for a plugin that passes.
    pub findings: Vec<String>,
}

impl Report {
    fn new(file: &Path) -> Report {
        Report {
            file: file.to_owned(),
            name: None,
            version: None,
            imports: Vec::new(),
            capabilities: Vec::new(),
            probes: Vec::new(),
            findings: Vec::new(),
        }
    }

    /// Prints the report for people.
    pub fn print(&self) {
        let who = match (&self.name, &self.version) {
            (Some(n), Some(v)) => format!("plugin `{n}` {v}"),
            _ => "plugin".to_string(),
        };
        let verdict = match self.findings.len() {
            0 => "passes".to_string(),
            1 => "1 finding".to_string(),
            n => format!("{n} findings"),
        };
        println!("{who} ({}): {verdict}", self.file.display());
        if !self.capabilities.is_empty() {
            println!("  capabilities: {}", self.capabilities.join("; "));
        }
        if !self.imports.is_empty() {
            let names: Vec<&str> = self.imports.iter().map(|(n, _)| n.as_str()).collect();
            println!("  imports: {}", names.join(", "));
        }
        for p in &self.probes {
            let mark = if p.ok { "ok  " } else { "FAIL" };
            println!(
                "  {mark} {} `{}`: {} ({:.1} ms)",
                p.kind, p.name, p.result, p.ms
            );
        }
        for f in &self.findings {
            println!("  finding: {f}");
        }
    }
}

fn is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[6..8] == [0x01, 0x00]
}

/// Checks one file under production limits (or those of `settings`).
pub async fn check_file(host: &PluginHost, file: &Path, settings: &PluginSettings) -> Report {
    let mut report = Report::new(file);
    let wasm = match std::fs::read(file) {
        Ok(w) => w,
        Err(e) => {
            report.findings.push(format!("cannot read the file: {e}"));
            return report;
        }
    };
    if !is_component(&wasm) {
        report.findings.push("is not a WebAssembly component (a core module or not wasm at all); build it for `wasm32-wasip2` or wrap it with `wasm-tools component new`".into());
        return report;
    }
    let component = match host.engine.compile(&wasm) {
        Ok((c, _)) => c,
        Err(e) => {
            report.findings.push(format!("does not compile: {e:#}"));
            return report;
        }
    };
    let ty = component.component_type();
    for (name, _) in ty.imports(&host.engine.engine) {
        match ALLOWED.iter().find(|(prefix, _)| name.starts_with(prefix)) {
            Some((_, what)) => {
                report.imports.push((name.to_string(), what.to_string()));
                if !report.capabilities.iter().any(|c| c == what) {
                    report.capabilities.push(what.to_string());
                }
            }
            None => report.findings.push(format!(
                "imports `{name}`, which pilot-host does not offer to plugins"
            )),
        }
    }
    let exports: Vec<String> = ty
        .exports(&host.engine.engine)
        .map(|(n, _)| n.to_string())
        .collect();
    if !exports
        .iter()
        .any(|n| n.starts_with("pilot:plugin/plugin@0.1."))
    {
        report.findings.push(format!(
            "does not export `pilot:plugin/plugin@0.1.x` (exports: {}); build it against pilot-host's `wit/`",
            if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
        ));
    }
    if !report.findings.is_empty() {
        return report;
    }
    let pre = match host
        .linker
        .instantiate_pre(&component)
        .and_then(PilotPluginPre::new)
    {
        Ok(pre) => pre,
        Err(e) => {
            report.findings.push(format!("cannot be linked: {e:#}"));
            return report;
        }
    };
    let sandbox = || {
        Sandbox::new(
            host.engine.clone(),
            pre.clone(),
            "check",
            "?",
            settings.clone(),
        )
    };
    let description = match sandbox().describe().await {
        Ok(d) => d,
        Err(e) => {
            report.findings.push(format!("`describe` {e}"));
            return report;
        }
    };
    if let Err(e) = check_description(&description) {
        report.findings.push(e);
    }
    report.name = Some(description.name.clone());
    report.version = Some(description.version.clone());
    smoke_tests(&mut report, &description, sandbox).await;
    report
}

async fn probe<R>(
    report: &mut Report,
    kind: &'static str,
    name: String,
    mut sandbox: Sandbox,
    call: impl for<'a> FnOnce(
        &'a b::PilotPlugin,
        &'a mut wasmtime::Store<super::sandbox::StoreState>,
    ) -> super::sandbox::Call<'a, Result<R, b::PluginError>>,
    show: impl FnOnce(R) -> String,
) {
    let started = Instant::now();
    let result = sandbox.call(call).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (ok, result) = match result {
        Ok(Ok(value)) => (true, show(value)),
        Ok(Err(e)) => (true, format!("its own error: {}", b::error_text(&e))),
        Err(super::CallError::Plugin(e)) => (true, format!("`init` answered: {e}")),
        Err(e) => (false, e.to_string()),
    };
    if !ok {
        report.findings.push(format!("{kind} `{name}` {result}"));
    }
    report.probes.push(Probe {
        kind,
        name,
        ok,
        result,
        ms,
    });
}

pub(super) fn sample_process() -> b::ProcessInfo {
    b::ProcessInfo {
        name: "sample".into(),
        pid: Some(std::process::id()),
        path: "/bin/true".into(),
        args: Vec::new(),
        working_directory: "/".into(),
        restart_count: 0,
    }
}

async fn smoke_tests(report: &mut Report, d: &b::Description, sandbox: impl Fn() -> Sandbox) {
    for name in &d.ready_strategies {
        let n = name.clone();
        let show = |r: b::ReadyStatus| match r {
            b::ReadyStatus::Ready => "ready".to_string(),
            b::ReadyStatus::NotYet(why) => format!(
                "not yet: {}",
                super::log::sanitize(&why)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        };
        let call = super::sandbox::call_fn(move |p, s| {
            Box::pin(async move {
                p.pilot_plugin_plugin()
                    .call_ready_check(s, &n, &sample_process(), "{}")
                    .await
            })
        });
        probe(
            report,
            "ready-strategy",
            name.clone(),
            sandbox(),
            call,
            show,
        )
        .await;
    }
    let events = [
        (b::LifecycleEvent::PreStart, None, "pre_start"),
        (b::LifecycleEvent::PostStart, None, "post_start"),
        (
            b::LifecycleEvent::OnShutdown,
            Some(b::ExitStatus {
                code: Some(0),
                signal: None,
            }),
            "on_shutdown",
        ),
        (b::LifecycleEvent::OnRestart, None, "on_restart"),
    ];
    for name in &d.lifecycle_hooks {
        for (event, exit, label) in events {
            let n = name.clone();
            let call = super::sandbox::call_fn(move |p, s| {
                Box::pin(async move {
                    p.pilot_plugin_plugin()
                        .call_lifecycle(s, &n, event, &sample_process(), exit)
                        .await
                })
            });
            probe(
                report,
                "lifecycle-hook",
                format!("{name} at {label}"),
                sandbox(),
                call,
                |()| "returned".to_string(),
            )
            .await;
        }
    }
    for name in &d.stat_handlers {
        let n = name.clone();
        let stats = vec![b::ProcessStats {
            name: "sample".into(),
            pid: Some(std::process::id()),
            cpu_percent: 1.0,
            max_cpu_percent: 2.0,
            rss_bytes: 10 << 20,
            max_rss_bytes: 12 << 20,
            restarts: 0,
            uptime_sec: 1.0,
        }];
        let call = super::sandbox::call_fn(move |p, s| {
            Box::pin(async move { p.pilot_plugin_plugin().call_stats(s, &n, &stats).await })
        });
        probe(
            report,
            "stat-handler",
            name.clone(),
            sandbox(),
            call,
            |a: Vec<b::StatAction>| format!("{} actions", a.len()),
        )
        .await;
    }
}
