//! What `plugin check` found, as data (the `--json` schema, version 1, described in
//! `docs/plugin-check.md`) and as text for people. Everything a plugin supplies is shown with its
//! control characters escaped.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use super::world::Use;
use crate::sandbox::CallProfile;
use crate::watch::Attempt;
use pilot_core::manifest::escape_controls;

/// The name of the JSON document's schema.
pub const SCHEMA: &str = "pilot-host/plugin-check";
/// The version of the JSON document's schema; raised when a field changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 1;

/// The kinds of finding, each with a readable name and a description; each is a SARIF rule.
pub const RULES: [(&str, &str, &str); 12] = [
    (
        "unreadable",
        "UnusableComponent",
        "The plugin file is not a usable WebAssembly component.",
    ),
    (
        "wit-version",
        "WitVersionMismatch",
        "The plugin was built against another major or minor version of pilot:plugin.",
    ),
    (
        "interface",
        "InterfaceMismatch",
        "The plugin imports what pilot-host does not offer, or lacks the pilot:plugin exports.",
    ),
    (
        "describe",
        "DescribeFailed",
        "The plugin's describe call failed.",
    ),
    (
        "init",
        "InitRefused",
        "The plugin's init refused the configuration given, so its exports were not exercised.",
    ),
    (
        "name",
        "BadName",
        "A name or version the plugin describes itself with breaks the naming rule.",
    ),
    (
        "capability",
        "CapabilityOutsidePolicy",
        "The plugin imports a capability outside the policy.",
    ),
    (
        "call-failed",
        "CallFailed",
        "A call trapped or outlived its limits under production limits.",
    ),
    (
        "expectation",
        "UnmetExpectation",
        "A call of the spec file answered other than expected.",
    ),
    (
        "budget",
        "OverBudget",
        "A call, or the component, went over a budget given to the check.",
    ),
    (
        "ungranted-access",
        "UngrantedAccess",
        "The plugin tried to reach a file, socket, host name or variable it was not granted.",
    ),
    (
        "spec",
        "SpecMismatch",
        "The spec file names something the plugin does not provide.",
    ),
];

/// One thing wrong with a plugin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Its kind, one of [`RULES`].
    pub rule: &'static str,
    /// What is wrong, and the fix when there is one.
    pub message: String,
}

/// One call made during the check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    /// `ready-strategy`, `lifecycle-hook` or `stat-handler`.
    pub kind: &'static str,
    /// The name called (with the event, for hooks).
    pub name: String,
    /// `smoke` (every declared export, on a fresh instance) or `spec` (a call of the spec file).
    pub source: &'static str,
    /// Whether it returned within its limits (a plugin's own error counts as returning).
    pub ok: bool,
    /// What it answered, or how it failed.
    pub result: String,
    /// What the spec file expected, if it did.
    pub expected: Option<String>,
    /// Wall time, fuel and peak linear memory.
    pub profile: CallProfile,
}

/// Times that do not belong to one call, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Compiling the component with Cranelift.
    pub compile_ms: Option<f64>,
    /// Loading the compiled component from the cache.
    pub cache_load_ms: Option<f64>,
    /// Making a fresh instance (store, WASI context, instantiate, `init`), median of five.
    pub fresh_instance_ms: Option<f64>,
}

/// An import and the capability it asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Import {
    /// The import's name, e.g. `wasi:sockets/tcp@0.2.0`.
    pub name: String,
    /// The capability, e.g. `network`.
    pub capability: String,
}

/// The report on one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The file checked.
    pub file: PathBuf,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// The plugin's name, if it described itself.
    pub name: Option<String>,
    /// The plugin's version, if it described itself.
    pub version: Option<String>,
    /// Every import.
    pub imports: Vec<Import>,
    /// The distinct capabilities the imports ask for.
    pub capabilities: Vec<String>,
    /// Compile, cache-load and fresh-instance times.
    pub timings: Timings,
    /// The calls made.
    pub calls: Vec<CallRecord>,
    /// What the plugin tried beyond its grants.
    pub attempts: Vec<Attempt>,
    /// The control calls and outgoing HTTP requests a control plugin made within its grants,
    /// answered by the check's stand-in and never carried out.
    pub granted: Vec<Use>,
    /// What is wrong; empty for a plugin that passes.
    pub findings: Vec<Finding>,
    /// Spec files that do not fit the plugin's kind: bad input (exit 2), not findings.
    #[serde(skip)]
    pub spec_errors: Vec<String>,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct Document<'a> {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// pilot-host's version.
    pub pilot_host_version: &'static str,
    /// The `pilot:plugin` version it implements.
    pub wit_version: &'static str,
    /// The findings of all reports together.
    pub findings_total: usize,
    /// One report per file, in command-line order.
    pub reports: &'a [Report],
}

impl<'a> Document<'a> {
    /// Wraps `reports`.
    pub fn new(reports: &'a [Report]) -> Document<'a> {
        Document {
            schema: SCHEMA,
            schema_version: SCHEMA_VERSION,
            pilot_host_version: env!("CARGO_PKG_VERSION"),
            wit_version: crate::WIT_VERSION,
            findings_total: reports.iter().map(|r| r.findings.len()).sum(),
            reports,
        }
    }
}

impl Report {
    /// An empty report on `file`.
    pub fn new(file: PathBuf) -> Report {
        Report {
            file,
            size_bytes: 0,
            name: None,
            version: None,
            imports: Vec::new(),
            capabilities: Vec::new(),
            timings: Timings::default(),
            calls: Vec::new(),
            attempts: Vec::new(),
            granted: Vec::new(),
            findings: Vec::new(),
            spec_errors: Vec::new(),
        }
    }

    /// Adds a finding.
    pub fn finding(&mut self, rule: &'static str, message: impl Into<String>) {
        self.findings.push(Finding {
            rule,
            message: message.into(),
        });
    }

    /// Returns `plugin `name` version`, or `plugin` before it described itself.
    pub fn who(&self) -> String {
        match (&self.name, &self.version) {
            (Some(n), Some(v)) => format!("plugin `{}` {}", escape_controls(n), escape_controls(v)),
            _ => "plugin".to_string(),
        }
    }

    /// Writes the report for people.
    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        let verdict = match self.findings.len() {
            0 => "passes".to_string(),
            1 => "1 finding".to_string(),
            n => format!("{n} findings"),
        };
        writeln!(out, "{} ({}): {verdict}", self.who(), self.file.display())?;
        let t = &self.timings;
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
        writeln!(
            out,
            "  size {:.1} KiB; compile {}; cache load {}; fresh instance {}",
            self.size_bytes as f64 / 1024.0,
            ms(t.compile_ms),
            ms(t.cache_load_ms),
            ms(t.fresh_instance_ms)
        )?;
        if !self.capabilities.is_empty() {
            writeln!(out, "  capabilities: {}", self.capabilities.join(", "))?;
        }
        for c in &self.calls {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            let p = &c.profile;
            writeln!(
                out,
                "  {mark} {} {} `{}`: {} ({:.2} ms, fuel {}, memory {:.1} MiB)",
                c.source,
                c.kind,
                escape_controls(&c.name),
                escape_controls(&c.result),
                p.ms,
                p.fuel,
                p.peak_memory as f64 / (1 << 20) as f64
            )?;
        }
        for u in &self.granted {
            writeln!(out, "  granted: {u}")?;
        }
        for f in &self.findings {
            writeln!(
                out,
                "  finding [{}]: {}",
                f.rule,
                escape_controls(&f.message)
            )?;
        }
        if self.attempts.iter().any(|a| a.kind == "environment") {
            writeln!(
                out,
                "  note: it read its environment, which is empty without `allow_env` (language runtimes read it as they start; no finding)"
            )?;
        }
        Ok(())
    }
}
